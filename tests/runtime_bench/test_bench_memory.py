"""A GGUF bench record says what the run held: the file, the KV cache at the runner's context (the
one edgeprune.devices.memory estimate) and the runtime overhead measured from the process's peak RSS."""

from __future__ import annotations

import pytest

from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.devices.memory import kv_cache_bytes, kv_cells
from edgeprune.runtime_bench.harness import bench, run_memory
from edgeprune.runtime_bench.schema import BenchRecord
from edgeprune.shape.spec import ArchSpec, LayerSpec

SPEC = ArchSpec(family="llama", vocab_size=320, hidden_size=64, head_dim=16, max_position_embeddings=128,
                layers=(LayerSpec(4, 2, 96), LayerSpec(0, 0, 64), LayerSpec(4, 4, 0)))


@pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")
def test_gguf_record_carries_weights_kv_and_measured_overhead(tmp_path):
    from edgeprune.runtime_bench.synthetic import write_random_gguf

    path = write_random_gguf(SPEC, tmp_path / "hetero.F16.gguf", "F16")
    (rec,) = bench([path], "local", n_prompt=16, n_gen=8, reps=1, threads=1, progress=False)
    mem = rec.memory
    assert mem["n_ctx"] >= 24 and mem["cache_type"] == "f16"
    assert mem["weights_bytes"] == path.stat().st_size
    assert mem["kv_bytes"] == kv_cache_bytes(SPEC, mem["n_ctx"], "f16", flash_attn=False)
    # K: the real per-layer KV heads (2 + 0 + 4); V (no flash attention): every layer at the widest (4)
    assert mem["kv_bytes"] == kv_cells(mem["n_ctx"]) * ((2 + 0 + 4) * 16 * 2 + 3 * 4 * 16 * 2)
    assert mem["peak_rss_bytes"] == int(rec.peak_rss_mb * 2 ** 20)
    # the Python interpreter and llama.cpp's buffers: more than nothing, less than a few hundred MiB
    assert 5 * 2 ** 20 < mem["overhead_bytes"] < 1024 * 2 ** 20
    assert mem["overhead_bytes"] == mem["peak_rss_bytes"] - mem["weights_bytes"] - mem["kv_bytes"]
    assert BenchRecord.from_dict(rec.to_dict()).memory == mem


def test_memory_is_empty_when_it_cannot_be_known(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert run_memory({"n_ctx": 64, "peak_rss_mb": 50.0}, onnx) == {}
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a gguf")
    assert run_memory({"n_ctx": 64, "peak_rss_mb": 50.0}, gguf) == {}  # unreadable shape
    assert run_memory({"peak_rss_mb": 50.0}, gguf, SPEC) == {}  # no context said
    m = run_memory({"n_ctx": 64, "peak_rss_mb": None}, gguf, SPEC)  # llama-bench: no RSS
    assert m["kv_bytes"] > 0 and m["overhead_bytes"] is None
    old = {k: v for k, v in BenchRecord.__dataclass_fields__.items()}
    assert "memory" in old  # a record written before the field reads back with {}
