"""An output that cannot be written is refused before any work, for every verb that writes: a
dangling symlink as the output, a name so long that edgeprune's temporary beside it
(`.NAME.tmp-PID`) or its lock (`.NAME.lock`) passes the file system's name limit, and a folder
that cannot be written. One line naming the flag the user gave, exit 2, nothing left behind (no
lock, no temporary), where before the whole prune ran and then failed naming an internal temp."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2, snapshot

M, D, G = "ws/model", "ws/data.txt", "ws/m.gguf"
VERBS = {  # verb -> (argv for output OUT, the flag that names it)
    "prune": (lambda out: ["prune", M, "--method", "uniform", "--ratio", "0.3", "--calib", D, "--out", out], "--out"),
    "train": (lambda out: ["train", M, "--data", D, "--tokens", "2000", "--out", out], "--out"),
    "pretrain": (lambda out: ["pretrain", "--arch", "tiny", "--data", D, "--tokens", "2000", "--out", out], "--out"),
    "export": (lambda out: ["export", M, "--out", out], "--out"),
    "compare": (lambda out: ["compare", M, "--data", D, "--out", out], "--out"),
    "ship": (lambda out: ["ship", M, "--data", D, "--out", out], "--out"),
    "eval": (lambda out: ["eval", M, "--data", D, "--json", out], "--json"),
    "bench": (lambda out: ["bench", G, "--out", out], "--out"),
}
LONG = "n" * 250  # a legal name (<= 255 bytes) whose `.NAME.tmp-PID` is not
TOO_LONG = "n" * 256  # a folder on the way that no file system here can hold


def _workspace(world, cwd):
    import shutil

    shutil.copytree(world["model"], cwd / "ws" / "model")
    shutil.copy(world["data"], cwd / "ws" / "data.txt")
    (cwd / "ws" / "m.gguf").write_bytes(b"GGUF not really")  # refused outputs are refused before it is read
    os.symlink(cwd / "nowhere" / "gone", cwd / "dangling")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case, says", [("dangling", "link to"), ("long", "too long"), ("toolong/sub", "too long")])
@pytest.mark.parametrize("verb", list(VERBS))
def test_unwritable_output_is_refused_before_any_work(world, tmp_path, monkeypatch, capsys, verb, case, says):
    _workspace(world, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "ws" / "cache"))
    out = case.replace("toolong", TOO_LONG).replace("long", LONG)
    argv, flag = VERBS[verb]
    before = snapshot(tmp_path)
    line = one_line_exit_2(main(argv(out)), capsys.readouterr().err)
    assert says in line and line.split(": error: ", 1)[1].startswith(f"{flag} {out}"), line
    assert ".tmp-" not in line, line  # the user's name, never edgeprune's temporary
    assert snapshot(tmp_path) == before  # no lock file, no temporary, no cache written


@contextmanager
def _read_only_folder(path):
    """`path` as a folder nobody may write in: a read-only mount for root (root ignores mode bits),
    mode 0555 for anyone else."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                      capture_output=True).returncode != 0:
        pytest.skip("root, and no read-only mount possible here: nothing to refuse a write")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb", list(VERBS))
def test_output_in_a_folder_without_write_permission_is_refused(world, tmp_path, monkeypatch, capsys, verb):
    _workspace(world, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "ws" / "cache"))
    argv, flag = VERBS[verb]
    with _read_only_folder(tmp_path / "ro"):
        before = snapshot(tmp_path)
        line = one_line_exit_2(main(argv("ro/out")), capsys.readouterr().err)
        assert snapshot(tmp_path) == before
    assert line.split(": error: ", 1)[1].startswith(f"{flag} ro/out") and "permission" in line, line
