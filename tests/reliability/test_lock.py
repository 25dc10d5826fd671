"""One run per output: a second run on a locked --out / work folder fails at once
with one line naming the holder's pid; a killed holder's lock is gone with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from edgeprune.cli import main
from edgeprune.base.outdir import lock_path

from .conftest import cli, one_line_exit_2

HOLD = ("import sys, time; from edgeprune.base.outdir import output_lock; cm = output_lock(sys.argv[1]); "
        "cm.__enter__(); print('held', flush=True); time.sleep(120)")


def _wait_for(path, proc, polls=1200):
    """Wait for `path` for at most `polls` looks 0.05 s apart (a hang guard counted in polls)."""
    for _ in range(polls):
        if path.exists():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{path} never appeared")


def test_second_run_names_the_holder_and_a_killed_holder_frees_it(world, tmp_path, capsys):
    out = tmp_path / "p"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ["prune", str(world["model"]), "--method", "uniform", "--ratio", "0.3", "--calib",
                str(world["data"]), "--calib-samples", "4", "--calib-len", "32", "--out", str(out)]
        line = one_line_exit_2(main(args), capsys.readouterr().err)
        assert f"pid {holder.pid}" in line and not out.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(out).exists()  # left by the kill: harmless, the kernel dropped the lock
    assert main(args) == 0 and (out / "config.json").is_file()
    assert not lock_path(out).exists()


def test_two_concurrent_trains_on_one_out(world, tmp_path):
    """Before: both exit 0, one log interleaves both runs. Now the second is refused at once."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    args = [sys.executable, "-m", "edgeprune.cli", "train", str(world["model"]), "--data", str(world["data"]),
            "--tokens", "6000", "--seq-len", "64", "--micro-batch", "4", "--log-every", "1", "--no-progress",
            "--out", str(tmp_path / "r")]
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(lock_path(tmp_path / "r"), first)
    second = cli(*args[3:], cwd=tmp_path)
    line = one_line_exit_2(second.returncode, second.stderr)
    assert f"pid {first.pid}" in line
    _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    steps = [json.loads(x)["step"] for x in (tmp_path / "r.train" / "train_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # one run's log, in order
    assert not lock_path(tmp_path / "r").exists() and not lock_path(tmp_path / "r.train", inside=True).exists()


def test_a_work_folder_holds_its_own_lock(tmp_path):
    """ship's / compare's --out and train's work folder: the lock is inside the output, so a run
    killed before it could remove it leaves nothing in the user's working directory."""
    from edgeprune.base.errors import OutputError
    from edgeprune.base.outdir import claim_outputs

    import pytest

    dist = tmp_path / "dist"
    with claim_outputs([(dist, "work")]):
        assert lock_path(dist, inside=True).is_file()
        assert [p.name for p in tmp_path.iterdir()] == ["dist"]  # nothing beside it
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            with claim_outputs([(dist, "work")]):
                pass
    assert not lock_path(dist, inside=True).exists() and not dist.exists()  # nothing written: removed
    dist.mkdir()
    lock_path(dist, inside=True).write_text("12345\n")  # what a SIGKILLed run leaves
    with claim_outputs([(dist, "work")]):  # the folder is still edgeprune's; the file is reused
        pass
