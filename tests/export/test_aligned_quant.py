"""Issue 12: alignment is part of the shape contract. Every method's output, quantized by llama.cpp
itself, has zero fallback tensors at Q4_0 and Q8_0 (and at Q4_K_M for a model whose rows allow
256), and the bytes predicted from the spec (edgeprune/shape/gguf_types.py) equal the file's."""

from __future__ import annotations

import pytest
import torch

from edgeprune.shape.gguf_types import gguf_weight_bytes
from edgeprune.export.llamacpp_runner import llamacpp_quantize
from edgeprune.files.gguf_reader import open_gguf, tensor_report
from edgeprune.shape.model import build_model
from edgeprune.prune import METHODS, prune_model
from edgeprune.shape.quant_presets import gguf_ftype
from edgeprune.runtime_bench.synthetic import write_random_gguf
from edgeprune.shape.spec import ArchSpec, LayerSpec
from edgeprune.shape.units import misaligned_rows

pytest.importorskip("llama_cpp")

# hidden and head widths on the 32-grid; FFN deliberately not, so the methods must put it there
SPEC = ArchSpec(family="llama", vocab_size=512, hidden_size=128, head_dim=32,
                layers=(LayerSpec(4, 2, 300), LayerSpec(4, 2, 300), LayerSpec(4, 2, 300)),
                max_position_embeddings=256)
CALIB = torch.randint(0, 512, (4, 16), generator=torch.Generator().manual_seed(0))


def _quantize_all(spec: ArchSpec, tmp, qtypes=("Q4_0", "Q8_0")) -> dict:
    f16 = write_random_gguf(spec, tmp / "m.F16.gguf", "F16")
    out = {}
    for q in qtypes:
        path = tmp / f"m.{q}.gguf"
        llamacpp_quantize(f16, path, gguf_ftype(q))
        report = tensor_report(path)
        real = sum(int(t.n_bytes) for t in open_gguf(path).tensors)
        out[q] = (report, real, gguf_weight_bytes(spec, q)["total"])
    return out


def _pruned_specs(tmp_path, monkeypatch) -> dict[str, ArchSpec]:
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    from edgeprune.train.loop import train
    from edgeprune.train.prune_aware import PruneAwareConfig
    from tests.train.helpers import pattern_data, small_cfg

    specs = {}
    for name, m in sorted(METHODS.items()):
        extra = {"device": "raspberry-pi-5", "quant": "Q4_0"} if m.latency_aware else {}
        if name.startswith("adapt"):
            extra["steps"] = 3
        res = prune_model(build_model(SPEC, seed=0), method=name, ratio=0.4, calib=CALIB, align=32,
                          progress=False, **extra)
        specs[name] = res.spec
    cfg = PruneAwareConfig(target_params=int(SPEC.n_params * 0.6), start_frac=0.1, end_frac=0.6, events=3, align=32)
    data = pattern_data(vocab=SPEC.vocab_size)
    specs["prune-aware"] = train(build_model(SPEC, seed=0), data, small_cfg(12, ckpt_every=100), tmp_path / "w",
                                 prune_aware=cfg).model.spec
    return specs


def test_every_method_exports_without_fallbacks_and_bytes_are_predicted(tmp_path, monkeypatch):
    specs = _pruned_specs(tmp_path, monkeypatch)
    for name, spec in specs.items():
        assert misaligned_rows(spec, 32) == [], (name, spec.hidden_size, spec.layers)
        assert spec.n_params < 0.75 * SPEC.n_params, name  # it really pruned
        d = tmp_path / name
        d.mkdir()
        for q, (report, real, predicted) in _quantize_all(spec, d).items():
            assert report["fallbacks"] == [], (name, q, report["fallbacks"])
            assert predicted == real, (name, q, predicted, real)


def test_unaligned_widths_do_fall_back_and_the_prediction_says_so(tmp_path):
    spec = ArchSpec(family="llama", vocab_size=512, hidden_size=128, head_dim=32,
                    layers=(LayerSpec(4, 2, 300), LayerSpec(2, 1, 70)), max_position_embeddings=256)
    for q, (report, real, predicted) in _quantize_all(spec, tmp_path).items():
        assert {f["tensor"] for f in report["fallbacks"]} == {"blk.0.ffn_down.weight", "blk.1.ffn_down.weight"}, q
        assert predicted == real, q


def test_q4_k_m_without_fallbacks_at_align_256(tmp_path):
    spec = ArchSpec(family="llama", vocab_size=512, hidden_size=256, head_dim=64,
                    layers=(LayerSpec(4, 2, 700), LayerSpec(8, 2, 700), LayerSpec(4, 4, 700)),
                    max_position_embeddings=256)
    res = prune_model(build_model(spec, seed=0), method="adapt", ratio=0.35, calib=CALIB, align=256,
                      progress=False, steps=3)
    assert misaligned_rows(res.spec, 256) == [], res.spec.layers
    report, real, predicted = _quantize_all(res.spec, tmp_path, ("Q4_K_M",))["Q4_K_M"]
    assert report["fallbacks"] == []
    assert "Q4_K" in report["type_counts"]
    assert predicted == real
