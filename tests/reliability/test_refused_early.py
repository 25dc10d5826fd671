"""Refused before the work: ship's preflight checks that every device has a preset of --formats,
--calib-len / --seq-len against the model's context, and renders the chat template once; each
refusal is one line naming the flag or the device, exit 2, before any stage runs."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import cli, one_line_exit_2


def _gguf_only_device(root):
    """A user's device profile that lists GGUF presets only (the packaged ones list both formats)."""
    from edgeprune.devices import DEVICES

    text = DEVICES["raspberry-pi-5"].read_text().replace('name = "raspberry-pi-5"', 'name = "my-board"')
    path = root / "my-board.toml"
    path.write_text("\n".join("onnx_quants = []" if ln.startswith("onnx_quants") else ln for ln in text.splitlines()))
    return str(path)


def _broken_template(world, root):
    model = root / "model"
    shutil.copytree(world["model"], model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{{ 1/0 }}"
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    return model


# (row id, extra ship flags ("{board}": a device with GGUF presets only), a changed model or None,
# what the line says)
ROWS = [
    ("onnx only, device has GGUF presets only", ["--devices", "{board}", "--formats", "onnx"], None,
     "device my-board has no preset of --formats onnx (its quant list names GGUF Q4_0, Q8_0, Q4_K_M)"),
    ("second device has none of the formats", ["--devices", "local,{board}", "--formats", "onnx"], None,
     "device my-board has no preset of --formats onnx"),
    ("calibration window past the context", ["--calib-len", "1000"], None,
     "--calib-len 1000 is longer than the model's context of 256"),
    ("training window past the context", ["--seq-len", "4096"], None,
     "--seq-len 4096 is longer than the model's context of 256"),
    ("chat template that cannot render", [], _broken_template, "ZeroDivisionError"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_ship_refuses_before_any_stage(world, tmp_path, monkeypatch, row):
    _, flags, make, needle = row
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    model = make(world, tmp_path) if make else world["model"]
    board = _gguf_only_device(tmp_path)
    flags = [f.replace("{board}", board) for f in flags]
    r = cli("ship", model, "--data", world["data"], "--ratio", "0.3", "--method", "uniform", "--recover-tokens", "0",
            "--out", tmp_path / "dist", "--no-progress", *flags, cwd=tmp_path, timeout=300)
    line = one_line_exit_2(r.returncode, r.stderr)
    assert needle in line, line
    assert "running" not in r.stderr and not (tmp_path / "dist" / "recipe.toml").exists()  # no stage began
