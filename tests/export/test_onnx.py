"""ONNX export: real torch.onnx (dynamo) exports of tiny models, run in real
onnxruntime and compared with our PyTorch model; optimum's loader and exporter as references.

Each model is exported once per module (the dynamo exporter takes ~5-10 s per model).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import onnx
import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.base.errors import ExportError, FidelityError
from edgeprune.export.onnx_export import export_onnx, reference_logits, validate_onnx
from edgeprune.export.onnx_runtime import OnnxLM
from edgeprune.export.onnx_wrapper import kv_layers
from edgeprune.export.registry import get_exporter
from edgeprune.shape.model import build_model
from edgeprune.shape.quant_presets import FP32_REL_TOL, ONNX_PRESETS
from tests.conftest import hetero_spec, tiny_spec

logging.getLogger("onnxruntime").setLevel(logging.WARNING)

CASES = {
    # uniform, tied head: also the optimum loader / exporter reference case and all quant presets
    "llama-uniform-tied": lambda: tiny_spec("llama", tie=True),
    "qwen2-uniform-untied": lambda: tiny_spec("qwen2", tie=False),
    # per-layer heads / KV heads / FFN, attention-free layer 2, MLP-free layers 3 (middle) and 4 (last)
    "llama-hetero-untied": lambda: hetero_spec("llama", tie=False).with_layer(4, ffn_dim=0),
    # heterogeneous with q/k/v biases and a tied head
    "qwen2-hetero-tied": lambda: hetero_spec("qwen2", tie=True),
}
# force the external-data layout (normally only above 1.5 GB) on one case, quantized files included
OPTIONS = {"qwen2-uniform-untied": {"external_data": True}}
QUANTS = {
    "qwen2-uniform-untied": ["int8-avx2", "int4"],
    "llama-uniform-tied": ["int8", "int8-arm64", "int8-avx2", "int8-avx512-vnni", "int4", "int4-b128"],
    "llama-hetero-untied": ["int8", "int4"],
}


def check_tokens(vocab: int, n: int = 48) -> torch.Tensor:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(1234))


@pytest.fixture(scope="module", params=list(CASES))
def exported(request, tmp_path_factory):
    """(case, checkpoint, out_dir, {quant: Artifact}) for one case, exported once."""
    name = request.param
    spec = CASES[name]()
    root = tmp_path_factory.mktemp(name)
    save_checkpoint(build_model(spec, seed=7), root / "hf")
    ckpt = load_checkpoint(root / "hf")
    arts = export_onnx(ckpt, root / "onnx", QUANTS.get(name, []), check_tokens(spec.vocab_size),
                       **OPTIONS.get(name, {}))
    return name, ckpt, root / "onnx", {a.quant: a for a in arts}


@pytest.fixture(scope="module")
def uniform_llama(exported):
    if exported[0] != "llama-uniform-tied":
        pytest.skip("uses the uniform llama export")
    return exported


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_fp32_matches_pytorch(exported):
    name, ckpt, out, arts = exported
    fid = arts["fp32"].fidelity
    assert fid["rel_diff"] <= FP32_REL_TOL and fid["kv_step_rel_diff"] <= FP32_REL_TOL, (name, fid)
    assert fid["top1_agreement"] == 1.0
    # independently of the exporter's own figures: another token sequence, batch of 2
    tokens = check_tokens(ckpt.spec.vocab_size, 20).reshape(2, 10)
    with torch.no_grad():
        ref = ckpt.model(tokens).logits.numpy()
    got, present = OnnxLM(out / "model.onnx").forward(tokens.numpy())
    np.testing.assert_allclose(got, ref, atol=FP32_REL_TOL * np.abs(ref).max(), rtol=0)
    with torch.no_grad():
        cache = ckpt.model(tokens, use_cache=True).past_key_values
    for layer in kv_layers(ckpt.spec):
        np.testing.assert_allclose(present[f"past_key_values.{layer}.key"], cache[layer][0].numpy(), atol=1e-5)
        np.testing.assert_allclose(present[f"past_key_values.{layer}.value"], cache[layer][1].numpy(), atol=1e-5)


def test_kv_cache_greedy_decode_matches_pytorch(exported):
    """Prefill then 15 single-token steps through the exported KV inputs/outputs."""
    name, ckpt, out, _ = exported
    prompt = check_tokens(ckpt.spec.vocab_size, 6)[None]
    ours = ckpt.model.generate(prompt, max_new_tokens=15)
    onnx_seq = OnnxLM(out / "model.onnx").generate(prompt.numpy(), max_new_tokens=15)
    assert onnx_seq.tolist() == ours.tolist(), name


def test_io_names_and_per_layer_kv_shapes(exported):
    name, ckpt, out, arts = exported
    spec = ckpt.spec
    graph = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    layers = kv_layers(spec)
    if spec.is_uniform:
        assert layers == list(range(spec.n_layers))  # optimum's numbering exactly
    else:
        assert 2 not in layers and len(layers) == spec.n_layers - 1  # attention-free layer 2 skipped
    expect_in = ["input_ids", "attention_mask", "position_ids"] + [
        f"past_key_values.{i}.{k}" for i in layers for k in ("key", "value")]
    expect_out = ["logits"] + [f"present.{i}.{k}" for i in layers for k in ("key", "value")]
    assert [v.name for v in graph.input] == expect_in
    assert [v.name for v in graph.output] == expect_out
    ins = {v.name: v for v in graph.input}
    outs = {v.name: v for v in graph.output}
    assert _dims(ins["input_ids"]) == ["batch_size", "sequence_length"]
    assert _dims(ins["attention_mask"]) == ["batch_size", "past_sequence_length + sequence_length"]
    assert _dims(outs["logits"]) == ["batch_size", "sequence_length", spec.vocab_size]
    for i in layers:
        n_kv = spec.layers[i].n_kv_heads
        assert _dims(ins[f"past_key_values.{i}.key"]) == ["batch_size", n_kv, "past_sequence_length", spec.head_dim]
        assert _dims(outs[f"present.{i}.value"]) == ["batch_size", n_kv, "past_sequence_length + sequence_length",
                                                     spec.head_dim]
    assert arts["fp32"].details["kv_layers"] == layers
    assert arts["fp32"].details["exporter"] == "torch.onnx.export(dynamo=True)"


def test_quantized_files_load_and_report_perplexity(exported):
    name, ckpt, out, arts = exported
    if name not in QUANTS:
        pytest.skip("quantization is exercised on two cases")
    fp32 = arts["fp32"]
    for q in QUANTS[name]:
        a = arts[q]
        assert a.path.is_file() and a.bytes < fp32.bytes, (q, a.bytes, fp32.bytes)
        ops = {n.op_type for n in onnx.load(str(a.path)).graph.node}
        if ONNX_PRESETS[q].kind == "int4":
            assert "MatMulNBits" in ops, q
        else:
            assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops, q
        f = a.fidelity
        assert np.isfinite(f["ppl"]) and abs(f["ppl"] / f["ppl_ref"] - 1) < 0.1, (q, f)
        assert 0 < f["rel_diff"] < 0.5 and f["top1_agreement"] > 0.5, (q, f)
        # reload independently and recompute the reported perplexity
        tokens = check_tokens(ckpt.spec.vocab_size)
        from edgeprune.export.fidelity import perplexity_from_logits

        ppl = perplexity_from_logits(OnnxLM(a.path).logits(tokens.numpy()), tokens.numpy())
        assert ppl == pytest.approx(f["ppl"], rel=1e-6)


def test_external_data_layout(exported):
    name, _, out, arts = exported
    if not OPTIONS.get(name, {}).get("external_data"):
        pytest.skip("external data is forced on one case")
    for a in arts.values():
        assert a.details["external_data"] is True
        data = [f for f in a.details["files"] if f != a.path.name]
        assert data and all((out / f).is_file() for f in data), (a.quant, a.details["files"])
        assert a.bytes == sum((out / f).stat().st_size for f in a.details["files"])
        # the graph alone is small: the weights live in the side file
        assert a.path.stat().st_size < a.bytes / 2, (a.quant, a.path.stat().st_size, a.bytes)
    assert not list(out.glob(".onnx.tmp-*"))


def test_ort_model_for_causal_lm_generate_equals_ours(uniform_llama):
    ort_mod = pytest.importorskip("optimum.onnxruntime")
    _, ckpt, out, _ = uniform_llama
    model = ort_mod.ORTModelForCausalLM.from_pretrained(out, use_cache=True)
    assert model.can_use_cache and "position_ids" in model.input_names
    prompt = check_tokens(ckpt.spec.vocab_size, 6)[None]
    theirs = model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=16,
                            min_new_tokens=16, do_sample=False)
    ours = ckpt.model.generate(prompt, max_new_tokens=16)
    assert theirs.tolist() == ours.tolist()


def test_optimum_exporter_reference_agrees(uniform_llama, tmp_path):
    """optimum's own exporter (text-generation-with-past) on the saved HF dir is the reference
    path: same I/O names, and the same logits as our export, prompt pass and KV step."""
    exporters = pytest.importorskip("optimum.exporters.onnx")
    _, ckpt, out, _ = uniform_llama
    exporters.main_export(str(ckpt.path), output=tmp_path, task="text-generation-with-past",
                          do_validation=False, no_post_process=False)
    ref_lm, ours = OnnxLM(tmp_path / "model.onnx"), OnnxLM(out / "model.onnx")
    assert ref_lm.past_names == ours.past_names
    tokens = check_tokens(ckpt.spec.vocab_size, 16).numpy()
    a, b = ref_lm.logits(tokens), ours.logits(tokens)
    assert np.abs(a - b).max() <= FP32_REL_TOL * np.abs(a).max()
    _, past_a = ref_lm.forward(tokens[None, :-1])
    _, past_b = ours.forward(tokens[None, :-1])
    step_a, _ = ref_lm.forward(tokens[None, -1:], past_a)
    step_b, _ = ours.forward(tokens[None, -1:], past_b)
    assert np.abs(step_a - step_b).max() <= FP32_REL_TOL * np.abs(a).max()


def test_fidelity_error_names_file_layers_and_figures(uniform_llama):
    """The fp32 tolerance is live: a model whose weights moved after export is refused."""
    _, ckpt, out, _ = uniform_llama
    moved = build_model(ckpt.spec, seed=7)
    moved.load_state_dict(ckpt.model.state_dict())
    with torch.no_grad():
        moved.model.layers[1].mlp.down_proj.weight.mul_(1.01)
    tokens = check_tokens(ckpt.spec.vocab_size).numpy()
    with pytest.raises(FidelityError, match=r"model\.onnx \(3 layers\).*relative .* > tolerance 0\.0001"):
        validate_onnx(out / "model.onnx", reference_logits(moved, tokens), tokens, 3, FP32_REL_TOL)


def test_corrupt_onnx_gives_export_error(uniform_llama, tmp_path):
    _, _, out, _ = uniform_llama
    data = (out / "model.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model" * 10)
    for bad in (truncated, garbage):
        with pytest.raises(ExportError, match=rf"{bad.name} is not a loadable ONNX model"):
            OnnxLM(bad)
    with pytest.raises(ExportError, match="does not exist"):
        OnnxLM(tmp_path / "missing.onnx")


def test_failed_export_leaves_no_file(tmp_path, monkeypatch):
    """A file that fails validation is never moved into out_dir (no scratch left either)."""
    import edgeprune.export.onnx_export as mod

    spec = tiny_spec("llama")
    save_checkpoint(build_model(spec, seed=0), tmp_path / "hf")
    ckpt = load_checkpoint(tmp_path / "hf")

    def broken_export(model, path, external_data=None):
        path.write_bytes(b"\x08\x07truncated")
        return {"exporter": "test", "kv_layers": kv_layers(spec), "external_data": False}

    monkeypatch.setattr(mod, "export_fp32", broken_export)
    out = tmp_path / "onnx"
    with pytest.raises(ExportError, match="not a loadable ONNX model"):
        export_onnx(ckpt, out, ["int8"], check_tokens(spec.vocab_size))
    assert list(out.iterdir()) == []


def test_registry_and_bad_inputs(tmp_path):
    assert get_exporter("onnx") is export_onnx
    spec = tiny_spec("llama")
    save_checkpoint(build_model(spec, seed=0), tmp_path / "hf")
    ckpt = load_checkpoint(tmp_path / "hf")
    with pytest.raises(ExportError, match="unknown ONNX quant preset 'int3'"):
        export_onnx(ckpt, tmp_path / "o", ["int3"], check_tokens(spec.vocab_size))
    with pytest.raises(ExportError, match="outside vocab 256"):
        export_onnx(ckpt, tmp_path / "o", [], torch.tensor([1, 2, 999]))


def test_config_written_for_optimum(uniform_llama):
    _, ckpt, out, _ = uniform_llama
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["use_cache"] is True and cfg["model_type"] == "llama"
    assert cfg["num_key_value_heads"] == ckpt.spec.layers[0].n_kv_heads


def test_torchscript_fallback_when_dynamo_fails(tmp_path, monkeypatch):
    """If torch.export cannot trace the model, the TorchScript exporter writes the same interface."""
    import edgeprune.export.onnx_export as mod

    def dynamo_fails(*args, **kwargs):
        raise RuntimeError("simulated torch.export failure")

    monkeypatch.setattr(mod, "_export_dynamo", dynamo_fails)
    spec = hetero_spec("llama", tie=False)
    save_checkpoint(build_model(spec, seed=3), tmp_path / "hf")
    ckpt = load_checkpoint(tmp_path / "hf")
    (art,) = export_onnx(ckpt, tmp_path / "onnx", [], check_tokens(spec.vocab_size))
    assert art.details["exporter"].startswith("torch.onnx.export(dynamo=False)")
    assert art.fidelity["rel_diff"] <= FP32_REL_TOL and art.fidelity["kv_step_rel_diff"] <= FP32_REL_TOL
    graph = onnx.load(str(art.path)).graph
    assert [v.name for v in graph.input][3:5] == ["past_key_values.0.key", "past_key_values.0.value"]
    assert _dims(graph.input[1]) == ["batch_size", "past_sequence_length + sequence_length"]


def test_bench_reads_each_exported_file_as_its_preset(exported):
    """The harness tells a file's preset from the exporter's own file naming (one source)."""
    from edgeprune.files.spec_of import quant_of as read_quant

    _, _, _, arts = exported
    for q, a in arts.items():
        assert a.path.name == ONNX_PRESETS[q].file_name
        assert read_quant(a.path) == q
