"""Our outputs load in transformers 4.57 and 5.x whatever tokenizer class the source named.

A source whose tokenizer was saved by transformers 5.x names `TokenizersBackend` (a class 4.57
does not have) and lists its extra special tokens as a list (4.57 expects a dict there): both
failed `AutoTokenizer` on 4.57. Every checkpoint edgeprune writes goes through the same writer
(save_checkpoint / save_derived); its tokenizer_config must load on the transformers version this
runs on (CI runs this file on 4.57 and on 5.x) and tokenize exactly as tokenizer.json does.
"""

from __future__ import annotations

import json

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint, save_derived
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXT = "the cat sat on the mat <|im_start|> the dog"


def tokenizer_5x(out):
    """A byte-level BPE tokenizer with its tokenizer_config.json exactly as transformers 5.24's
    PreTrainedTokenizerFast.save_pretrained writes it (`backend`, `TokenizersBackend`, the extra
    special tokens as a list, the chat template in chat_template.jinja)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the cat sat on the mat. the dog sat on the log."] * 50, trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "backend": "tokenizers", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
        "extra_special_tokens": SPECIALS[1:], "model_max_length": 1000000000000000019884624838656,
        "tokenizer_class": "TokenizersBackend"}, indent=2))
    (out / "chat_template.jinja").write_text("{% for m in messages %}<|im_start|>{{ m['content'] }}<|im_end|>{% endfor %}")
    return out


SPECS = {
    "uniform": ArchSpec.uniform(vocab_size=300, hidden_size=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=48,
                                head_dim=16, max_position_embeddings=64),
    "hetero": ArchSpec(family="llama", vocab_size=300, hidden_size=32, head_dim=16, max_position_embeddings=64,
                       layers=(LayerSpec(2, 1, 48), LayerSpec(0, 0, 32), LayerSpec(2, 2, 0))),
}


@pytest.mark.parametrize("case", list(SPECS))
def test_output_of_a_5x_source_loads_in_this_transformers(tmp_path, case):
    import transformers
    from tokenizers import Tokenizer

    src_tok = tokenizer_5x(tmp_path / "tok")
    src = save_checkpoint(build_model(SPECS[case], seed=0), tmp_path / "teacher", tokenizer_dir=src_tok,
                          config_extra={"bos_token_id": 0, "eos_token_id": 0})
    # a derived model (what prune / train / ship write) keeps the source's tokenizer through the same writer
    out = save_derived(load_checkpoint(src).model, tmp_path / "pruned", load_checkpoint(src))
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert cfg["additional_special_tokens"] == SPECIALS[1:] and "extra_special_tokens" not in cfg

    tok = transformers.AutoTokenizer.from_pretrained(out)
    want = Tokenizer.from_file(str(src_tok / "tokenizer.json")).encode(TEXT).ids
    assert tok(TEXT)["input_ids"] == want  # the saved tokenizer, used as saved
    assert set(SPECIALS) <= set(tok.all_special_tokens)
    assert tok.decode(want, skip_special_tokens=True).count("<|im_start|>") == 0  # special: skipped
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, trust_remote_code=case == "hetero")
    with torch.no_grad():
        gen = model.generate(**tok("the cat", return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert gen.shape[1] == len(tok("the cat")["input_ids"]) + 3


def test_a_class_both_versions_know_is_kept(tmp_path):
    src_tok = tokenizer_5x(tmp_path / "tok")
    cfg = json.loads((src_tok / "tokenizer_config.json").read_text())
    cfg.update(tokenizer_class="GPT2TokenizerFast", extra_special_tokens={"im_start": "<|im_start|>"})
    (src_tok / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = save_checkpoint(build_model(SPECS["uniform"], seed=0), tmp_path / "m", tokenizer_dir=src_tok)
    got = json.loads((out / "tokenizer_config.json").read_text())
    assert got["tokenizer_class"] == "GPT2TokenizerFast"
    assert got["extra_special_tokens"] == {"im_start": "<|im_start|>"}  # the dict form both versions read
