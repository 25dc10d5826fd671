"""`edgeprune export` end to end: files + manifest.json, quant routing, device presets, and no
partial output on failure or Ctrl-C."""

from __future__ import annotations

import json

import pytest

from edgeprune.cli import main
from edgeprune.base.errors import ExportError
from edgeprune.export import gguf_export
from edgeprune.export.api import DEFAULT_CHECK_TOKENS, export_model
from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.shape.quant_presets import route_quants
from tests.export.gguf_cases import make_tokenizer, save_case

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return save_case(root, "llama-hetero-tied", make_tokenizer(root / "tok"))


def test_cli_writes_validated_files_and_manifest(tmp_path, ckpt_dir, capsys):
    out = tmp_path / "out"
    rc = main(["export", str(ckpt_dir), "--formats", "hf,gguf", "--quant", "F16,Q4_0", "--out", str(out),
               "--greedy-tokens", "0", "--no-progress"])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["spec"]["layers"][2]["n_heads"] == 0 and man["n_params"] > 0
    assert 2 <= man["check_tokens"] <= DEFAULT_CHECK_TOKENS  # the check tokens every file was compared on
    arts = {(a["format"], a["quant"]): a for a in man["artifacts"]}
    assert set(arts) == {("hf", "fp32"), ("gguf", "F16"), ("gguf", "Q4_0")}
    for (fmt, _), a in arts.items():
        path = out / a["path"]
        assert path.exists()
        if fmt == "gguf":
            assert a["bytes"] == path.stat().st_size and len(a["sha256"]) == 64
            assert a["fidelity"]["ppl"] > 0 and a["details"]["arch"] == "deci"
    assert arts[("gguf", "Q4_0")]["details"]["type_counts"]["Q4_0"] > 0
    assert [p.name for p in out.glob(".*")] == [".edgeprune-output"]  # no staging or temp files left, only our marker
    assert "Q4_0" in capsys.readouterr().out  # the table


def test_quant_routing_and_errors(tmp_path, ckpt_dir, capsys):
    assert route_quants(["q4_k_m", "INT8", "Q8_0", "int4"]) == {"gguf": ["Q4_K_M", "Q8_0"], "onnx": ["int8", "int4"]}
    with pytest.raises(ExportError, match="unknown quant"):
        route_quants(["Q9_X"])
    rc = main(["export", str(ckpt_dir), "--formats", "gguf", "--quant", "int8", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "onnx" in err and err.count("\n") == 1
    rc = main(["export", str(ckpt_dir), "--device", "no-such-device", "--out", str(tmp_path / "o")])
    assert rc == 2 and "no-such-device" in capsys.readouterr().err


def test_device_presets_filtered_to_formats(tmp_path, ckpt_dir):
    from edgeprune.devices import load_device

    prof = load_device("raspberry-pi-5")
    man = export_model(ckpt_dir, tmp_path / "o", formats=["gguf"], device="raspberry-pi-5",
                       options={"gguf": {"greedy_tokens": 0}}, progress=False)
    assert [a["quant"] for a in man["artifacts"]] == list(prof.gguf_quants)


@pytest.mark.parametrize("exc", [KeyboardInterrupt])  # Ctrl-C: the hardest case (BaseException)
def test_no_partial_output_on_failure(tmp_path, ckpt_dir, monkeypatch, exc):
    real, calls = gguf_export._validate, []

    def flaky(path, quant, *a, **k):
        calls.append(quant)
        if len(calls) == 3:  # F32 reference and F16 validated, then the Q8_0 check is interrupted
            raise exc("interrupted")
        return real(path, quant, *a, **k)

    monkeypatch.setattr(gguf_export, "_validate", flaky)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(exc):
        export_model(ckpt_dir, out, formats=["gguf"], quants=["F16", "Q8_0"], options={"gguf": {"greedy_tokens": 0}},
                     progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
