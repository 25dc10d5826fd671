"""A reconstructed depth cut (removed layers merged into the layer before them as a linear map) is
the same architecture as a plain cut: a plain llama GGUF, an HF directory transformers loads
without remote code, an ONNX file, each with logits matching PyTorch's (the exporters' own
fidelity check) and transformers' logits equal to ours."""

from __future__ import annotations

import json

import pytest
import torch

from edgeprune.export.api import export_model
from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.prune import prune_model
from tests.export.gguf_cases import encode, make_tokenizer, random_model, spec_of, train_tiny

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")


@pytest.fixture(scope="module")
def reconstructed(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon")
    tok = make_tokenizer(root / "tok")
    ids = encode(tok)
    model = train_tiny(random_model(spec_of("llama-uniform-tied")), ids)  # trained: a perplexity to compare
    calib = ids[: (len(ids) // 32) * 32].view(-1, 32)[:12]
    one_layer = sum(model.spec.layer_param_counts(0).values())
    res = prune_model(model, method="depth", params=model.spec.n_params - one_layer, calib=calib, progress=False,
                      fill=False)
    assert len(res.log["dropped_layers"]) == 1 and res.spec.n_layers == 2
    merged = [row["merged_layers"] for row in res.log["reconstruction"]["layers"]]
    assert merged in ([[1], []], [[], [2]])  # a removed middle or last layer: merged into the layer before it
    path = save_checkpoint(res.model, root / "m", tokenizer_dir=tok, config_extra={"bos_token_id": 0, "eos_token_id": 0},
                           meta={"pruning": res.summary()})
    return path, ids


def test_every_format_loads_with_matching_logits(tmp_path, reconstructed):
    path, ids = reconstructed
    man = export_model(path, tmp_path / "out", formats=("hf", "gguf", "onnx"), quants=("F32", "fp32"), check_tokens=ids[:64],
                       options={"gguf": {"greedy_tokens": 0}}, progress=False)
    arts = {(a["format"], a["quant"]): a for a in man["artifacts"]}
    assert arts[("gguf", "F32")]["details"]["arch"] == "llama"  # no deci, no new module
    assert {f for f, _ in arts} == {"hf", "gguf", "onnx"}
    import transformers

    hf_dir = tmp_path / "out" / arts[("hf", "fp32")]["path"]
    assert "auto_map" not in json.loads((hf_dir / "config.json").read_text())
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ours = load_checkpoint(path).model.eval()
    x = ids[None, :48]
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, ours(x).logits, rtol=1e-4, atol=1e-4)
