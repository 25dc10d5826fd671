"""The fault table: bad inputs × verbs. Each must end with exit code 2, exactly one
line on stderr (no traceback) and no change to any file that existed before the command."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from edgeprune.cli import main

from .conftest import one_line_exit_2, snapshot


def _broken(world, tmp, kind):
    """Make the bad input `kind` under `tmp`; return its path."""
    m = tmp / kind
    if kind in ("corrupt_meta", "heads_four", "bad_index", "escaping_index", "nan_weights"):
        shutil.copytree(world["model"], m)
    if kind == "corrupt_meta":
        (m / "edgeprune.json").write_text("{not json")
    elif kind == "heads_four":
        (m / "edgeprune.json").unlink()
        cfg = json.loads((m / "config.json").read_text())
        cfg["num_attention_heads"] = "four"
        (m / "config.json").write_text(json.dumps(cfg))
    elif kind == "bad_index":
        (m / "model.safetensors.index.json").write_text('{"weight_map": ')
    elif kind == "escaping_index":
        (tmp / "elsewhere").mkdir()
        shutil.copy(m / "model.safetensors", tmp / "elsewhere" / "model.safetensors")
        (m / "model.safetensors").unlink()
        (m / "model.safetensors.index.json").write_text(json.dumps(
            {"weight_map": {"model.embed_tokens.weight": "../elsewhere/model.safetensors"}}))
    elif kind == "nan_weights":
        from safetensors.torch import load_file, save_file
        state = load_file(str(m / "model.safetensors"))
        state["model.norm.weight"][0] = float("nan")
        save_file(state, str(m / "model.safetensors"), metadata={"format": "pt"})
    elif kind == "garbage_gguf":
        m = tmp / "garbage.gguf"
        m.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 4)
    elif kind == "garbage_onnx":
        m = tmp / "garbage.onnx"
        m.write_bytes(b"\x08\x07not a protobuf" * 10)
    elif kind == "recipe_latin1":
        m = tmp / "r.toml"
        m.write_bytes('method = "uniform"\n# caf\xe9\n'.encode("latin-1"))
    elif kind == "recipe_half":
        m = tmp / "r.toml"
        m.write_text('ratio = "half"\n')
    elif kind == "device_latin1":
        m = tmp / "mydev.toml"
        m.write_bytes('name = "mydev"\n# caf\xe9\n'.encode("latin-1"))
    elif kind == "steps_no_latest":
        (m / "step-00000004").mkdir(parents=True)
        (m / "step-00000004" / "state.json").write_text("{}")
    elif kind == "a_file":
        m = tmp / "a_file"
        m.write_text("not a folder\n")
    return m


# (name, bad input kind, argv with {bad}, {model}, {data}; what the line must mention)
CASES = [
    ("info corrupt edgeprune.json", "corrupt_meta", ["info", "{bad}"], "edgeprune.json"),
    ("eval corrupt edgeprune.json", "corrupt_meta", ["eval", "{bad}", "--data", "{data}"], "edgeprune.json"),
    ("predict corrupt edgeprune.json", "corrupt_meta", ["bench", "--predict-only", "--model", "{bad}"],
     "edgeprune.json"),
    ("prune corrupt edgeprune.json", "corrupt_meta",
     ["prune", "{bad}", "--method", "uniform", "--ratio", "0.3", "--calib", "{data}", "--out", "o"], "edgeprune.json"),
    ("export corrupt edgeprune.json", "corrupt_meta", ["export", "{bad}", "--out", "o"], "edgeprune.json"),
    ("info heads 'four'", "heads_four", ["info", "{bad}"], "config.json"),
    ("train heads 'four'", "heads_four", ["train", "{bad}", "--data", "{data}", "--tokens", "1000", "--out", "o"],
     "config.json"),
    ("info corrupt shard index", "bad_index", ["info", "{bad}"], "shard index"),
    ("info index leaving the folder", "escaping_index", ["info", "{bad}"], "outside the checkpoint"),
    ("eval NaN weights", "nan_weights", ["eval", "{bad}", "--data", "{data}"], "NaN"),
    ("predict garbage gguf", "garbage_gguf", ["bench", "--predict-only", "{bad}"], "garbage.gguf"),
    ("predict garbage onnx", "garbage_onnx", ["bench", "--predict-only", "{bad}"], "garbage.onnx"),
    ("ship non-UTF-8 recipe", "recipe_latin1", ["ship", "--recipe", "{bad}", "--out", "o"], "UTF-8"),
    ("ship ratio = 'half'", "recipe_half", ["ship", "--recipe", "{bad}", "--out", "o"], "ratio"),
    ("ship quants Q9_9", None, ["ship", "{model}", "--data", "{data}", "--quants", "Q9_9", "--out", "o"], "Q9_9"),
    ("bench non-UTF-8 device", "device_latin1", ["bench", "--predict-only", "--model", "{model}", "--devices", "{bad}"],
     "UTF-8"),
    ("train --tokens 1e30", None, ["train", "{model}", "--data", "{data}", "--tokens", "1e30", "--out", "o"],
     "--force"),
    ("pretrain --tokens 1e30", None, ["pretrain", "--arch", "tiny", "--data", "{data}", "--tokens", "1e30",
                                      "--out", "o"], "--force"),
    ("train 10000 epochs", None, ["train", "{model}", "--data", "{data}", "--tokens", "1e9", "--no-progress", "--out", "o"],
     "passes over"),
    ("train resume steps without latest", "steps_no_latest",
     ["train", "{model}", "--data", "{data}", "--tokens", "1000", "--resume", "{bad}", "--out", "o"],
     "step-00000004"),
    ("prune out under a file", "a_file",
     ["prune", "{model}", "--method", "uniform", "--ratio", "0.3", "--calib", "{data}", "--out", "{bad}/sub"],
     "is a file"),
    ("export out is a file", "a_file", ["export", "{model}", "--out", "{bad}"], "existing file"),
    ("ship out is a file", "a_file", ["ship", "{model}", "--data", "{data}", "--out", "{bad}"], "existing file"),
]


@pytest.mark.parametrize("name, kind, argv, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_changed(world, tmp_path, monkeypatch, capsys, name, kind, argv, needle):
    bad = _broken(world, tmp_path, kind) if kind else None
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    argv = [a.format(bad=bad, model=world["model"], data=world["data"]) for a in argv]
    line = one_line_exit_2(main(argv), capsys.readouterr().err)
    assert needle in line, line
    assert snapshot(tmp_path) == before


def test_debug_shows_the_traceback_of_an_expected_failure(world, tmp_path, capsys):
    bad = _broken(world, tmp_path, "corrupt_meta")
    assert main(["--debug", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("edgeprune: error:")


def test_read_only_output_is_one_line(world, tmp_path, monkeypatch, capsys):
    """EROFS / EACCES while writing (root ignores chmod, so the failure is injected at the write)."""
    import errno
    import os

    real_mkdir = os.mkdir

    def ro(path, *a, **k):
        if ".tmp-" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *a, **k)

    monkeypatch.setattr(os, "mkdir", ro)
    rc = main(["prune", str(world["model"]), "--method", "uniform", "--ratio", "0.3", "--calib", str(world["data"]),
               "--calib-samples", "4", "--calib-len", "32", "--out", str(tmp_path / "o")])
    assert "Read-only file system" in one_line_exit_2(rc, capsys.readouterr().err)


def test_recipe_devices_as_a_string_and_corrupt_token_cache(world, tmp_path):
    from edgeprune.data.tokens import load_tokenizer, token_cache_paths, token_file
    from edgeprune.pipeline.recipe import Recipe

    assert Recipe.from_mapping({"devices": "local"}).devices == ["local"]
    assert Recipe.from_mapping({"devices": "local, raspberry-pi-5"}).devices == ["local", "raspberry-pi-5"]
    tok = load_tokenizer(world["model"])
    a = token_file(world["data"], tok, cache_dir=tmp_path)
    _bin, meta = token_cache_paths(world["data"], tok, tmp_path)
    meta.write_text("{")  # a crash or a disk error left a broken sidecar: re-tokenize, no traceback
    b = token_file(world["data"], tok, cache_dir=tmp_path)
    assert len(a) == len(b) and json.loads(meta.read_text())["n_tokens"] == len(b)


def test_binary_data_warns(tmp_path, caplog):
    import random

    from edgeprune.data.text_sources import iter_documents

    f = tmp_path / "random.txt"
    f.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(20000)))
    with caplog.at_level("WARNING"):
        list(iter_documents(f))
    assert "does not look like text" in caplog.text
    caplog.clear()
    g = tmp_path / "text.txt"
    g.write_text("Plain words, tabs\tand newlines\n" * 500)
    with caplog.at_level("WARNING"):
        list(iter_documents(g))
    assert "does not look like text" not in caplog.text


def test_non_finite_training_loss_fails(world, tmp_path):
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.base.errors import TrainError
    from edgeprune.train.config import TrainConfig
    from edgeprune.train.train_data import load_data
    from edgeprune.train.loop import train

    ck = load_checkpoint(world["model"])
    data = load_data(str(world["data"]), world["model"], progress=False)
    cfg = TrainConfig(tokens=64 * 4 * 3, seq_len=64, micro_batch=4, lr=1e30, log_every=1, eval_every=0,
                      ckpt_every=0, progress=False)
    with torch.no_grad():
        ck.model.model.norm.weight.fill_(1e30)  # overflows to inf in the first forward
    with pytest.raises(TrainError, match="loss became"):
        train(ck.model, data, cfg, tmp_path / "w")


def _load_hf_offline(tmp_path):
    """`load_hf_dataset` with no network (a hub endpoint nothing listens on), in a fresh
    interpreter: the seconds it took and the finished process."""
    import os
    import subprocess
    import sys
    import time

    pytest.importorskip("datasets")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"))
    code = ("from edgeprune.data.text_sources import load_hf_dataset\n"
            "try:\n    load_hf_dataset('hf:someone/some-corpus')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - t0, r


def test_offline_hf_source_fails_with_one_line_and_no_retries(tmp_path):
    """No network: one DataError, not ~20 retry warnings (the retries were the 26 s a user waited)."""
    _, r = _load_hf_offline(tmp_path)
    assert r.stdout.startswith("DataError") and "unreachable" in r.stdout, r.stdout + r.stderr
    assert r.stderr.count("Retrying") == 0, r.stderr


@pytest.mark.timing
def test_offline_hf_source_fails_in_seconds(tmp_path):
    seconds, _ = _load_hf_offline(tmp_path)
    assert seconds < 20
