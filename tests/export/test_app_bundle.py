"""The app bundle (`export --bundle`, ship's dist/app): every file it names exists, the GGUFs are
named <name>-<quant>.gguf, the Modelfile's FROM is a file llama.cpp loads and its stop tokens are
the tokenizer's, serve.sh is valid shell, the README carries sizes, speed and memory per context,
the memory check warns for a device the model does not fit, and a failed write leaves the
previous bundle whole."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from edgeprune.cli import main
from edgeprune.export import app_bundle
from edgeprune.export.app_bundle import BUNDLE_JSON, bundle_name, write_app_bundle
from edgeprune.export.llamacpp_runner import have_llamacpp, llamacpp_tokenize
from edgeprune.devices.memory import CONTEXTS, memory_estimate
from tests.export.gguf_cases import make_tokenizer, save_case

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

# two float files: the bundle test is about names, commands and memory, not about quantization
QUANTS = "F16,BF16"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    ckpt = save_case(root, "llama-hetero-tied", make_tokenizer(root / "tok"))
    (ckpt / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 0, "eos_token_id": 0, "do_sample": True, "temperature": 0.6, "top_p": 0.9}))
    out = root / "out"
    assert main(["export", str(ckpt), "--quant", QUANTS, "--out", str(out), "--bundle", "--greedy-tokens", "0",
                 "--no-progress"]) == 0
    return out


def test_every_named_file_exists_and_modelfile_loads(exported):
    app = exported / "app"
    info = json.loads((app / BUNDLE_JSON).read_text())
    stem = bundle_name(info["display_name"])
    assert info["name"] == stem == "llama-hetero-tied-pruned-50-flap" and info["arch"] == "deci"
    assert sorted(f["file"] for f in info["files"]) == sorted(f"{stem}-{q}.gguf" for q in QUANTS.split(","))
    for f in info["files"]:
        assert (app / f["file"]).stat().st_size == f["bytes"]
        assert f["bytes"] == (exported / "gguf" / f"llama-hetero-tied-{f['quant']}.gguf").stat().st_size
    names = {"Modelfile", "serve.sh", "serve.py", "README.md", BUNDLE_JSON, *(f["file"] for f in info["files"])}
    assert names == {p.name for p in app.iterdir() if not p.name.startswith(".")}

    modelfile = (app / "Modelfile").read_text()
    (from_line,) = [ln for ln in modelfile.splitlines() if ln.startswith("FROM ")]
    target = app / from_line.split(maxsplit=1)[1]
    assert target.is_file() and target.name == info["default"] == f"{stem}-F16.gguf"
    assert llamacpp_tokenize(target, "the cat sat")  # llama.cpp loads what FROM names
    params = dict(re.findall(r"^PARAMETER (\S+) (.+)$", modelfile, re.M))
    assert params["num_ctx"] == "256"  # capped by the model's trained context
    assert params["temperature"] == "0.6" and params["top_p"] == "0.9"  # the source's own sampling
    assert re.findall(r'^PARAMETER stop "(.*)"$', modelfile, re.M) == ["<|endoftext|>"]  # the tokenizer's EOS
    assert "TEMPLATE" not in modelfile  # Ollama reads the chat template from the GGUF

    serve = app / "serve.sh"
    assert serve.stat().st_mode & 0o111
    assert subprocess.run(["sh", "-n", str(serve)]).returncode == 0
    text = serve.read_text()
    assert f"FILE=\"{info['default']}\"" in text
    assert "llama-server -m \"$FILE\" -c 256" in text and "serve.py --model \"$FILE\" --n_ctx 256" in text


def test_readme_and_bundle_json_carry_sizes_and_memory(exported):
    app = exported / "app"
    info = json.loads((app / BUNDLE_JSON).read_text())
    readme = (app / "README.md").read_text()
    for f in info["files"]:
        assert f"`{f['file']}`" in readme
    for label in ("512", "2k", "8k"):
        assert f"total @ {label}" in readme
    assert "ollama create llama-hetero-tied-pruned-50-flap -f Modelfile" in readme
    assert " ".join(info["commands"]["llama-cpp-python"]) in readme
    from edgeprune.files.gguf_reader import read_metadata, spec_from_metadata

    f = info["files"][0]
    spec = spec_from_metadata(read_metadata(app / f["file"]))
    got = info["memory"][f["file"]]
    assert [m["n_ctx"] for m in got] == list(CONTEXTS)  # f16 only: head_dim 16 cannot take a q8_0 cache
    for m in got:
        assert m == memory_estimate(spec, f["bytes"], m["n_ctx"], "f16").to_dict()


def test_speed_overhead_and_device_fit(tmp_path, exported):
    src = exported / "gguf" / "llama-hetero-tied-F16.gguf"
    rec = {"device": "raspberry-pi-4", "model": src.name, "pp_tps_mean": 812.5, "pp_tps_std": 3.0,
           "tg_tps_mean": 97.25, "tg_tps_std": 1.0, "peak_rss_mb": 40.0,
           "memory": {"overhead_bytes": 5 * 2 ** 30}}  # an overhead no 4 GB device can hold
    pred = {"device": "snapdragon-8-gen-3", "model": src.name, "tg_pred_tps": 1234.0}
    info = write_app_bundle(tmp_path / "app", [("F16", src)], records=[rec], predictions=[pred],
                            devices=["raspberry-pi-4", "snapdragon-8-gen-3"])
    readme = (tmp_path / "app" / "README.md").read_text()
    assert "812.5 ± 3.0" in readme and "97.2 ± 1.0" in readme and "**predicted**" in readme and "1234.0" in readme
    assert "5.0 GiB" in readme  # the measured overhead is part of the plan
    # 5 GiB + file does not fit a 4 GiB Pi at any context; a 12 GiB phone (9 GiB usable) it does
    (warn,) = info["memory_warnings"]
    assert "raspberry-pi-4" in warn and "512, 2k, 8k" in warn and f"⚠ {warn}" in readme
    row = [ln for ln in readme.splitlines() if ln.startswith("| snapdragon-8-gen-3")][-1]  # the fit table's
    assert "does not fit" not in row and row.count("fits") == 3


def test_failed_write_keeps_the_previous_bundle(tmp_path, exported, monkeypatch):
    src = exported / "gguf" / "llama-hetero-tied-F16.gguf"
    write_app_bundle(tmp_path / "app", [("F16", src)])
    before = {p.name: p.read_bytes() for p in (tmp_path / "app").iterdir()}

    def boom(a, b):
        raise OSError("disk full")

    monkeypatch.setattr(app_bundle, "_link_or_copy", boom)
    with pytest.raises(OSError, match="disk full"):
        write_app_bundle(tmp_path / "app", [("F16", src)], n_ctx=128)
    assert {p.name: p.read_bytes() for p in (tmp_path / "app").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]  # no temporary left


def test_bundle_without_gguf_is_one_line(tmp_path, exported, capsys):
    ckpt = exported.parent / "llama-hetero-tied"
    rc = main(["export", str(ckpt), "--formats", "hf", "--out", str(tmp_path / "o"), "--bundle"])
    err = capsys.readouterr().err
    assert rc == 2 and "--bundle needs GGUF" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
