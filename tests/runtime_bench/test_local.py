"""`local` bench of a tiny GGUF and a tiny ONNX: sane positive figures in the one schema."""

from __future__ import annotations

import dataclasses
import json

import pytest

from edgeprune.base.errors import BenchError
from edgeprune.runtime_bench.harness import bench
from edgeprune.runtime_bench.schema import BenchRecord, read_records

SMALL = dict(n_prompt=16, n_gen=8, reps=2, threads=1, progress=False)
SCHEMA_KEYS = {f.name for f in dataclasses.fields(BenchRecord)}


def check_record(rec: BenchRecord, fmt: str, runner: str) -> None:
    d = rec.to_dict()
    assert set(d) == SCHEMA_KEYS
    assert rec.format == fmt and rec.runner == runner
    assert rec.n_prompt == 16 and rec.n_gen == 8 and rec.reps == 2 and rec.threads == 1
    assert rec.pp_tps_mean > 0 and rec.tg_tps_mean > 0 and rec.pp_tps_std >= 0 and rec.tg_tps_std >= 0
    assert len(rec.extra["pp_seconds"]) == 2 and len(rec.extra["tg_seconds"]) == 2
    # per-rep tokens/s reproduce the mean
    assert rec.tg_tps_mean == pytest.approx(sum(8 / s for s in rec.extra["tg_seconds"]) / 2)
    assert rec.ttft_ms > 0 and rec.load_ms > 0 and 10 < rec.peak_rss_mb < 4000
    assert rec.file_bytes > 0 and rec.runtime_version and rec.timestamp
    roof = rec.roofline
    assert roof["bytes_per_token"] > 0 and roof["tg_pred_tps"] > 0 and roof["pp_bound_tps"] > 0
    assert roof["efficiency_fitted"] == pytest.approx(rec.tg_tps_mean * roof["bytes_per_token"]
                                                      / (roof["bandwidth_gbs"] * 1e9))
    json.dumps(d)  # serialisable


def test_local_onnx(tiny_onnx):
    (rec,) = bench([tiny_onnx], "local", **SMALL)
    check_record(rec, "onnx", "onnxruntime-python")
    assert rec.runtime == "onnxruntime" and rec.quant == "fp32" and rec.device == "local"
    assert rec.roofline["source"] == "onnx" and rec.roofline["kv_bytes_per_ctx"] == 4 * 2 * 2 * 16 * 4


def test_local_gguf(tiny_gguf):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install edgeprune[llama])")
    (rec,) = bench([tiny_gguf], "local", **SMALL)
    check_record(rec, "gguf", "llama-cpp-python")
    assert rec.runtime == "llama.cpp" and rec.quant == "Q8_0" and rec.roofline["source"] == "gguf"
    assert "llama-cpp-python" in rec.runtime_version


def test_cli_bench_writes_json_md_and_plot(tiny_onnx, tmp_path, capsys):
    from edgeprune.cli import main

    out = tmp_path / "res" / "results.json"
    assert main(["bench", str(tiny_onnx), "--prompt", "8", "--gen", "4", "--reps", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny.onnx" in printed and "η fitted" in printed
    (rec,) = read_records(out)
    assert rec.n_gen == 4 and rec.tg_tps_mean > 0
    assert out.with_suffix(".md").read_text().startswith("| model")
    png = out.with_name("results_decode.png")
    assert png.stat().st_size > 1000 and json.loads(png.with_suffix(".json").read_text())[0]["tg_tps_mean"] > 0


def test_cli_predict_only_bad_spec_is_one_line(capsys):
    from edgeprune.cli import main

    assert main(["bench", "--predict-only", "--spec", "/dev/null"]) == 2
    assert "not a spec JSON" in capsys.readouterr().err
    assert main(["bench", "--predict-only"]) == 2


def test_predict_only_with_spec_file(tmp_path, capsys):
    from edgeprune.cli import main
    from edgeprune.devices import DEVICES
    from edgeprune.shape.arch_presets import preset_spec

    spec = tmp_path / "spec.json"
    spec.write_text(preset_spec("smollm-135m").to_json())
    out = tmp_path / "pred.json"
    assert main(["bench", "--predict-only", "--spec", str(spec), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    remote = [n for n in DEVICES if n != "local"]
    assert len(rows) == 2 * len(remote) and all(n in text for n in remote)
    pi5_q4 = next(r for r in rows if r["device"] == "raspberry-pi-5" and r["model"] == "spec Q4_0")
    assert pi5_q4["tg_pred_tps"] == pytest.approx(93.53, abs=0.01)  # test_roofline.py by hand: the head at Q8_0


def test_bad_artifacts_fail_with_one_line(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        bench([tmp_path / "nope.gguf"], "local", **SMALL)
    other = tmp_path / "model.bin"
    other.write_bytes(b"x")
    with pytest.raises(BenchError, match="suffix"):
        bench([other], "local", **SMALL)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(BenchError, match="broken.onnx"):
        bench([broken], "local", **SMALL)


def test_local_gguf_from_the_exporter_hetero(tmp_path):
    """A heterogeneous model (attention-free and MLP-free layers) written by export's GGUF writer:
    it runs, and the file-based roofline cost agrees with the spec on KV and attention."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from edgeprune.export.gguf_writer import write_gguf
    from edgeprune.shape.model import build_model
    from edgeprune.devices.roofline import cost_from_gguf, cost_from_spec

    from ..conftest import hetero_spec

    spec = hetero_spec(vocab=320)
    path = tmp_path / "hetero.F32.gguf"
    write_gguf(build_model(spec, seed=0), path, ftype="F32")
    (rec,) = bench([path], "local", **SMALL)
    check_record(rec, "gguf", "llama-cpp-python")
    c_file, c_spec = cost_from_gguf(path), cost_from_spec(spec, "F32")
    assert (c_file.kv_bytes_per_ctx, c_file.attn_flops_per_ctx) == (c_spec.kv_bytes_per_ctx, c_spec.attn_flops_per_ctx)
    # llama.cpp's DECI layout may add zero stand-in tensors (e.g. an FFN for an MLP-free layer): the
    # file is what gets streamed, so it can only read more than the spec says
    assert c_spec.weight_bytes_read <= c_file.weight_bytes_read < 1.1 * c_spec.weight_bytes_read


def test_onnx_quant_is_read_from_the_exporters_file_name(tiny_onnx, tmp_path):
    """A file named as the exporter names a preset (`model.onnx`, `model_<preset>.onnx`) is that
    preset; any other name falls back to the weights' dtypes (fp32 here)."""
    from edgeprune.shape.quant_presets import ONNX_PRESETS
    from edgeprune.files.spec_of import quant_of as read_quant

    for name, preset in ONNX_PRESETS.items():
        named = tmp_path / preset.file_name
        named.write_bytes(tiny_onnx.read_bytes())
        assert read_quant(named) == name
    assert read_quant(tiny_onnx) == "fp32"
