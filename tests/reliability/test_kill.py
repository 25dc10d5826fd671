"""kill -9 at random points of prune / train / export, then the user's rerun: it must end in the
same artifacts as an uninterrupted run (tensors / file hashes), with no temporaries left behind.

Kill times are drawn (fixed seeds) within the measured length of the uninterrupted run, so they
land in loading, computing, writing or renaming alike."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeprune.export.api import read_manifest

from .conftest import snapshot

ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _argv(*args) -> list[str]:
    return [sys.executable, "-m", "edgeprune.cli", *map(str, args)]


def _timed(argv, cwd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return time.perf_counter() - t0


def _kill_at(argv, cwd, delay: float) -> int:
    p = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    return p.wait()


def _tensors_equal(a: Path, b: Path) -> None:
    from safetensors.torch import load_file

    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert ta.keys() == tb.keys()
    for k in ta:
        assert ta[k].equal(tb[k]), k


def _no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name or ".export-tmp-" in p.name
            or p.name.endswith(".lock")]
    assert not left, left


@pytest.mark.parametrize("seed", [0, 1])
def test_prune_killed_then_rerun_equals_uninterrupted(world, tmp_path, seed):
    def args(out):
        return _argv("prune", world["model"], "--method", "flap", "--ratio", "0.3", "--calib", world["data"],
                     "--calib-samples", "8", "--calib-len", "64", "--out", out)
    _timed(args("ref"), tmp_path)
    # the kill lands inside a run as long as the rerun's: a warm one (the first pays cold imports
    # and file caches, and a kill timed from it can come after a warm run has finished)
    t_warm = _timed(args("warm"), tmp_path)
    delay = random.Random(seed).uniform(0.3, 0.8) * t_warm
    assert _kill_at(args("run"), tmp_path, delay) == -signal.SIGKILL
    _timed(args("run"), tmp_path)  # the user's rerun, same command
    _tensors_equal(tmp_path / "ref", tmp_path / "run")
    _no_temporaries(tmp_path)


def test_train_killed_then_resumed_equals_uninterrupted(world, tmp_path):
    def args(out, *extra):
        return _argv("train", world["model"], "--data", world["data"], "--tokens", "2048", "--seq-len", "64",
                     "--micro-batch", "4", "--ckpt-every", "2", "--eval-every", "0", "--no-progress",
                     "--out", out, *extra)
    t_ref = _timed(args("ref"), tmp_path)
    for seed in (0, 1):  # killed twice at different points, resumed each time
        rc = _kill_at(args("run", *(["--resume", "run.train"] if (tmp_path / "run.train" / "latest").is_file()
                                    else [])), tmp_path, random.Random(seed).uniform(0.4, 0.8) * t_ref)
        assert rc == -signal.SIGKILL or seed == 1  # a resumed run has less left: it may finish first
    has_ckpt = (tmp_path / "run.train" / "latest").is_file()
    _timed(args("run", *(["--resume", "run.train"] if has_ckpt else [])), tmp_path)
    _tensors_equal(tmp_path / "ref", tmp_path / "run")
    _no_temporaries(tmp_path)


def test_export_killed_then_rerun_equals_uninterrupted(world, tmp_path):
    def args(out):
        return _argv("export", world["model"], "--formats", "hf,gguf", "--greedy-tokens", "0", "--no-progress",
                     "--out", out)
    t_ref = _timed(args("ref"), tmp_path)
    assert _kill_at(args("run"), tmp_path, random.Random(0).uniform(0.5, 0.8) * t_ref) == -signal.SIGKILL
    _timed(args("run"), tmp_path)
    ref, run = read_manifest(tmp_path / "ref"), read_manifest(tmp_path / "run")
    assert [(a["path"], a["sha256"]) for a in ref["artifacts"]] == [(a["path"], a["sha256"]) for a in run["artifacts"]]
    def files(d):  # every file byte for byte, but the manifest (it records seconds) and markers
        return {k: v for k, v in snapshot(d).items() if not k.endswith(("manifest.json", ".edgeprune-output"))}
    assert files(tmp_path / "ref") == files(tmp_path / "run") and "gguf/model-F32.gguf" in files(tmp_path / "run")
    _no_temporaries(tmp_path)
