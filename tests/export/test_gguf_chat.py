"""Chat templates and names travel into GGUF: the source's template is in the file,
llama.cpp's `create_chat_completion` uses it (not its llama-2 fallback), general.name/basename
come from the model, and no local path is written into the metadata."""

from __future__ import annotations

import json

import pytest

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.export.gguf_export import export_gguf
from edgeprune.files.gguf_reader import read_metadata
from edgeprune.export.llamacpp_runner import have_llamacpp, llamacpp_chat
from edgeprune.shape.model import build_model
from tests.export.gguf_cases import TEXT, VOCAB, encode, spec_of

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

# SmolLM2-Instruct's template (ChatML with a default system prompt): not one llama-cpp-python
# recognises by name, so it must be rendered from the file's own Jinja text
TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
            "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def chat_tokenizer(out):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT], trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
         "tokenizer_class": "GPT2Tokenizer"}))
    (out / "chat_template.jinja").write_text(TEMPLATE)
    return out


def test_chat_template_and_names_travel_into_gguf(tmp_path):
    import transformers

    tok_dir = chat_tokenizer(tmp_path / "tok")
    model = build_model(spec_of("llama-hetero-tied"), seed=0).eval()
    # a directory named "model" (as `ship` writes dist/model) holding a pruned SmolLM2
    src = save_checkpoint(model, tmp_path / "model", tokenizer_dir=tok_dir,
                          config_extra={"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2},
                          meta={"name": "SmolLM2-135M-Instruct", "source_model": str(tmp_path / "SmolLM2-135M-Instruct"),
                                "pruning": {"method": "adapt", "ratio_removed": 0.25}})
    assert (src / "chat_template.jinja").read_text() == TEMPLATE  # the HF output keeps it too
    ckpt = load_checkpoint(src)
    (art,) = export_gguf(ckpt, tmp_path / "out", ["F32"], encode(tok_dir)[:64], greedy_tokens=0, progress=False)
    md = read_metadata(art.path)
    assert md["tokenizer.chat_template"] == TEMPLATE
    assert md["general.basename"] == "SmolLM2-135M-Instruct"
    assert md["general.name"] == "SmolLM2-135M-Instruct pruned 25% (adapt)"
    strings = [v for v in md.values() if isinstance(v, str)]
    assert not any(str(tmp_path) in v for v in strings), "a local path leaked into the GGUF metadata"

    messages = [{"role": "user", "content": "the cat sat on"}]
    chat = llamacpp_chat(art.path, messages, max_tokens=4)
    assert chat["chat_format"] != "llama-2"
    # the prompt llama.cpp built is exactly the template rendered by transformers
    hf_tok = transformers.AutoTokenizer.from_pretrained(src)
    expected = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    expected = expected["input_ids"] if isinstance(expected, dict) or hasattr(expected, "keys") else expected
    assert chat["prompt_tokens"] == len(expected)
    assert chat["completion_tokens"] >= 1
