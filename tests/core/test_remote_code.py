"""Heterogeneous checkpoints load in plain transformers through remote code, and
every checkpoint's tokenizer loads in AutoTokenizer with output that `generate` accepts.

Runs on the main environment (transformers 4.57) and in .ci/run's transformers 5.x one."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.data.tokens import embedded_tokenizer_dir
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec
from tests.conftest import hetero_spec, tiny_spec

PROMPT = "The river runs past the old mill, and"


def _hetero_attention_free_first(family: str, tie: bool, vocab: int = 256) -> ArchSpec:
    """Layer 0 without attention: the remote model's KV cache must not key on layer 0."""
    return ArchSpec(family=family, vocab_size=vocab, hidden_size=64, head_dim=16,
                    layers=(LayerSpec(0, 0, 64), LayerSpec(4, 2, 96), LayerSpec(6, 3, 0), LayerSpec(2, 2, 32)),
                    tie_word_embeddings=tie, max_position_embeddings=128)


@pytest.mark.parametrize("family,tie,spec_fn", [
    ("llama", True, hetero_spec), ("qwen2", False, hetero_spec), ("llama", False, _hetero_attention_free_first),
])
def test_remote_code_logits_equal_ours(tmp_path, family, tie, spec_fn):
    spec = spec_fn(family, tie=tie)
    model = build_model(spec, seed=4).eval()
    save_checkpoint(model, tmp_path / "h")
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    assert cfg["model_type"] == "edgeprune" and cfg["family"] == family
    assert (tmp_path / "h" / cfg["auto_map"]["AutoModelForCausalLM"].split(".")[0]).with_suffix(".py").is_file()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "h", trust_remote_code=True).eval()
    assert type(hf).__name__ == "EdgepruneForCausalLM"
    assert sum(p.numel() for p in hf.parameters()) == spec.n_params
    ids = torch.randint(0, spec.vocab_size, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding in the second row
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hf(ids, attention_mask=mask).logits[1, 3:],
                                   model(ids, attention_mask=mask).logits[1, 3:], atol=1e-5, rtol=1e-5)
        # incremental decoding through transformers' own cache equals one full forward
        out = hf(ids[:, :5], use_cache=True)
        step = hf(ids[:, 5:], past_key_values=out.past_key_values, use_cache=True)
        torch.testing.assert_close(step.logits, model(ids).logits[:, 5:], atol=1e-5, rtol=1e-5)


def test_loading_without_remote_code_fails_with_transformers_message(tmp_path):
    save_checkpoint(build_model(hetero_spec(), seed=0), tmp_path / "h")
    with pytest.raises(ValueError, match="trust_remote_code"):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "h", trust_remote_code=False)


def _with_tokenizer(tmp_path, spec: ArchSpec, name: str):
    model = build_model(spec, seed=5).eval()
    save_checkpoint(model, tmp_path / name, tokenizer_dir=embedded_tokenizer_dir(),
                    config_extra={"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0})
    return model, tmp_path / name


@pytest.mark.parametrize("hetero", [True, False])
def test_generate_with_the_tokenizers_own_output(tmp_path, hetero):
    spec = (hetero_spec if hetero else tiny_spec)("llama", vocab=4096)
    model, path = _with_tokenizer(tmp_path, spec, "m")
    tok = transformers.AutoTokenizer.from_pretrained(path)  # no remote code for the tokenizer
    enc = tok(PROMPT, return_tensors="pt")
    assert set(enc) == {"input_ids", "attention_mask"}
    hf = transformers.AutoModelForCausalLM.from_pretrained(path, trust_remote_code=hetero).eval()
    gen = hf.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=0, output_logits=True,
                      return_dict_in_generate=True)
    out = gen.sequences
    ours = model.generate(enc["input_ids"], max_new_tokens=6)
    assert torch.equal(out, ours[:, :out.shape[1]])
    # every step's logits (through transformers' KV cache) equal one full forward of ours
    n = enc["input_ids"].shape[1]
    with torch.no_grad():
        full = model(out).logits[0]  # (T, vocab)
    for i, step in enumerate(gen.logits):
        torch.testing.assert_close(step[0], full[n - 1 + i], atol=1e-4, rtol=1e-4)
    assert isinstance(tok.decode(out[0]), str)


def test_stock_lm_eval_hf_model_runs_on_a_heterogeneous_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    from tests.pipeline.test_eval import TASK_YAML
    from edgeprune.pipeline.lm_eval_adapter import local_task_config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    _, path = _with_tokenizer(tmp_path, hetero_spec("llama", vocab=4096), "h")
    lm = HFLM(pretrained=str(path), trust_remote_code=True, batch_size=4, device="cpu")
    assert type(lm.model).__name__ == "EdgepruneForCausalLM"
    out = simple_evaluate(model=lm, tasks=[local_task_config(TASK_YAML)], limit=6, bootstrap_iters=0,
                          log_samples=False, verbosity="WARNING")
    acc = out["results"]["edgeprune_pyqa"]["acc,none"]
    assert 0.0 <= acc <= 1.0
