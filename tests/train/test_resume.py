"""Fault tolerance: a run SIGKILLed mid-way and resumed matches an uninterrupted one exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeprune.base.errors import TrainError
from edgeprune.shape.model import build_model
from edgeprune.train.loop import train
from tests.conftest import hetero_spec
from tests.train.helpers import pattern_data, small_cfg

REPO = Path(__file__).resolve().parents[2]

# One script for both runs: trains the hetero model 10 steps, checkpoints every 3, and (when
# KILL_AT is set) SIGKILLs itself right after that step: no cleanup, no atexit, like an OOM kill.
SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {repo!r})
    from edgeprune.shape.model import build_model
    from edgeprune.train.loop import train
    from tests.conftest import hetero_spec
    from tests.train.helpers import pattern_data, small_cfg
    kill_at = int(os.environ.get("KILL_AT", "0"))

    def hook(trainer):
        if trainer.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    resume = sys.argv[2] if len(sys.argv) > 2 else None
    train(build_model(hetero_spec(), seed=0), pattern_data(), small_cfg(10, ckpt_every=3), sys.argv[1],
          resume=resume, on_step=hook)
""")


def _run(args, kill_at=None):
    env = dict(os.environ, KILL_AT=str(kill_at or 0))
    return subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO)), *map(str, args)],
                          env=env, capture_output=True, text=True, timeout=300)


def _losses(work: Path) -> dict[int, float]:
    recs = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if "loss" in r}


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    # only the killed run needs its own process; the reference and the resumption run here
    killed = _run([tmp_path / "killed"], kill_at=7)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    killed_log = _losses(tmp_path / "killed")
    assert max(killed_log) == 7  # it got past the step-6 checkpoint, then died
    assert (tmp_path / "killed" / "latest").read_text().strip() == "step-00000006"
    data, cfg = pattern_data(), small_cfg(10, ckpt_every=3)
    train(build_model(hetero_spec(), seed=0), data, cfg, tmp_path / "full")
    train(build_model(hetero_spec(), seed=0), data, cfg, tmp_path / "killed", resume=tmp_path / "killed")
    a, b = _losses(tmp_path / "full"), _losses(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, 11))  # the log was trimmed and continued
    for step in range(1, 11):
        assert b[step] == pytest.approx(a[step], abs=1e-6), step
    assert b[10] < b[1]  # it trained


def test_resume_refuses_another_runs_directory(tmp_path):
    data = pattern_data()
    train(build_model(hetero_spec(), seed=0), data, small_cfg(2, ckpt_every=1), tmp_path / "w")
    with pytest.raises(TrainError, match=r"another run \(different config\)"):
        train(build_model(hetero_spec(), seed=0), data, small_cfg(2, lr=1e-2), tmp_path / "x",
              resume=tmp_path / "w")
    with pytest.raises(TrainError, match=r"different data"):
        train(build_model(hetero_spec(), seed=0), pattern_data(seed=5), small_cfg(2), tmp_path / "y",
              resume=tmp_path / "w")
    with pytest.raises(TrainError, match="already holds checkpoints"):
        train(build_model(hetero_spec(), seed=0), data, small_cfg(2), tmp_path / "w")
    with pytest.raises(TrainError, match="no training checkpoint"):
        train(build_model(hetero_spec(), seed=0), data, small_cfg(2), tmp_path / "z", resume=tmp_path)


def test_another_runs_directory_is_a_typed_resume_mismatch(tmp_path):
    """Callers that own the directory (ship, incremental stages) catch ResumeMismatch by type to
    start over; any other TrainError on resume stays an error."""
    from edgeprune.base.errors import ResumeMismatch

    data = pattern_data()
    train(build_model(hetero_spec(), seed=0), data, small_cfg(2, ckpt_every=1), tmp_path / "w")
    with pytest.raises(ResumeMismatch, match=r"written by another run \(different config\)"):
        train(build_model(hetero_spec(), seed=0), data, small_cfg(2, lr=1e-2), tmp_path / "x",
              resume=tmp_path / "w")
    with pytest.raises(TrainError, match="no training checkpoint") as e:
        train(build_model(hetero_spec(), seed=0), data, small_cfg(2), tmp_path / "z", resume=tmp_path)
    assert not isinstance(e.value, ResumeMismatch)
