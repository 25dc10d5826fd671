"""--out never destroys or changes what the user made, for every verb that writes;
edgeprune's own outputs are recognised and replaced; --overwrite is the user's explicit yes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgeprune.base.atomic_io import atomic_dir
from edgeprune.cli import main
from edgeprune.base.errors import OutputError
from edgeprune.base.outdir import MARKER, check_output, clean_stale, release_claims

from .conftest import cli, one_line_exit_2, snapshot


def _verbs(w, out):
    m, d = str(w["model"]), str(w["data"])
    return {
        "prune": ["prune", m, "--method", "uniform", "--ratio", "0.3", "--calib", d, "--out", out],
        "prune-incremental": ["prune", m, "--method", "adapt", "--ratio", "0.3", "--calib", d, "--incremental",
                              "--out", out],
        "train": ["train", m, "--data", d, "--tokens", "2000", "--out", out],
        "pretrain": ["pretrain", "--arch", "tiny", "--data", d, "--tokens", "2000", "--out", out],
        "export": ["export", m, "--out", out],
        "compare": ["compare", m, "--data", d, "--out", out],
        "ship": ["ship", m, "--data", d, "--out", out],
    }


DIR_VERBS = ["prune", "prune-incremental", "train", "pretrain", "export", "compare", "ship"]


def _user_world(tmp_path):
    (tmp_path / "userdir").mkdir()
    (tmp_path / "userdir" / "important.txt").write_text("x\n")
    (tmp_path / "file.txt").write_text("my notes\n")
    (tmp_path / "notdir").write_text("a file\n")
    return tmp_path


@pytest.mark.parametrize("verb", DIR_VERBS)
@pytest.mark.parametrize("out, needle", [("userdir", "did not write"), ("file.txt", "is an existing file"),
                                         (".", "working directory"), ("notdir/sub", "is a file")])
def test_bad_out_is_refused_and_nothing_changes(world, tmp_path, monkeypatch, capsys, verb, out, needle):
    cwd = _user_world(tmp_path)
    monkeypatch.chdir(cwd)
    before = snapshot(cwd)
    rc = main(_verbs(world, out)[verb])
    line = one_line_exit_2(rc, capsys.readouterr().err)
    assert needle in line
    assert snapshot(cwd) == before  # no lock file, no temp folder, no change


@pytest.mark.parametrize("out", ["userdir", "file.txt"])
def test_bench_file_out_refuses_user_files(world, tmp_path, monkeypatch, capsys, out):
    cwd = _user_world(tmp_path)
    monkeypatch.chdir(cwd)
    (cwd / "file.txt").write_text("my results\n")
    before = snapshot(cwd)
    rc = main(["bench", "--predict-only", "--model", str(world["model"]), "--devices", "raspberry-pi-5",
               "--out", out])
    one_line_exit_2(rc, capsys.readouterr().err)
    assert snapshot(cwd) == before


def test_eval_json_refuses_a_users_file(world, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scores.json").write_text("mine\n")
    before = snapshot(tmp_path)
    rc = main(["eval", str(world["model"]), "--data", str(world["data"]), "--json", "scores.json"])
    assert "did not write" in one_line_exit_2(rc, capsys.readouterr().err)
    assert snapshot(tmp_path) == before


def test_bench_rewrites_its_own_file_and_overwrite_replaces_a_users(world, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["bench", "--predict-only", "--model", str(world["model"]), "--devices", "raspberry-pi-5"]
    assert main(args + ["--out", "pred.json"]) == 0
    assert main(args + ["--out", "pred.json"]) == 0  # ours: listed in the folder's marker
    (tmp_path / "mine.json").write_text("{}")
    assert main(args + ["--out", "mine.json"]) == 2
    assert main(args + ["--out", "mine.json", "--overwrite"]) == 0
    assert isinstance(json.loads((tmp_path / "mine.json").read_text()), list)


def test_prune_replaces_its_own_output_and_overwrite_replaces_a_users(world, tmp_path):
    w = _user_world(tmp_path)
    args = _verbs(world, "p1")["prune"] + ["--calib-samples", "4", "--calib-len", "32"]
    for _ in range(2):  # the second run replaces the first: it carries our marker
        r = cli(*args, cwd=w)
        assert r.returncode == 0, r.stderr
    assert json.loads((w / "p1" / MARKER).read_text())["written_by"] == "edgeprune"
    (w / "p1" / "notes.txt").write_text("mine")  # a user file inside makes it the user's again
    r = cli(*args, cwd=w)
    assert "notes.txt" in one_line_exit_2(r.returncode, r.stderr)
    assert (w / "p1" / "notes.txt").read_text() == "mine"
    args = [a if a != "p1" else "userdir" for a in args]
    r = cli(*args, "--overwrite", cwd=w)
    assert r.returncode == 0, r.stderr
    assert not (w / "userdir" / "important.txt").exists() and (w / "userdir" / "config.json").is_file()
    assert sorted(p.name for p in w.iterdir() if p.name.startswith(".")) == []  # no lock / temp left


# ----- the helpers themselves ---------------------------------------------------------------------

def test_atomic_dir_refuses_a_foreign_folder_even_from_library_code(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "a.txt").write_text("keep")
    with pytest.raises(OutputError, match="a.txt"):
        with atomic_dir(user) as tmp:
            (tmp / "x").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["user"] and (user / "a.txt").read_text() == "keep"
    f = tmp_path / "f"
    f.write_text("file")
    with pytest.raises(OutputError, match="is an existing file"):
        with atomic_dir(f):
            pass
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty) as tmp:  # an empty folder holds nothing to lose
        (tmp / "x").write_text("1")
    with atomic_dir(empty) as tmp:  # now ours
        (tmp / "x").write_text("2")
    assert (empty / "x").read_text() == "2"
    try:
        check_output(user, overwrite=True)
        with atomic_dir(user) as tmp:
            (tmp / "x").write_text("3")
    finally:
        release_claims()
    assert sorted(p.name for p in user.iterdir()) == [MARKER, "x"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_runs_are_cleaned_and_an_interrupted_swap_restored(tmp_path):
    dead = _dead_pid()
    target = tmp_path / "out"
    (tmp_path / f".out.tmp-{dead}").mkdir()
    (tmp_path / f".out.old-{dead}").mkdir()
    (tmp_path / f".out.old-{dead}" / "config.json").write_text("{}")
    live = tmp_path / f".out.tmp-{os.getpid()}"
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}"
    other.mkdir()
    clean_stale(target)
    # target was missing: the `.old` copy is the last complete version and is put back
    assert (target / "config.json").is_file()
    assert not (tmp_path / f".out.tmp-{dead}").exists()
    assert live.exists() and other.exists()  # a live run's, and another output's, are left alone
    (target / f".export-tmp-{dead}").mkdir()
    (tmp_path / f".out.old-{dead}").mkdir()
    clean_stale(target)
    assert not (target / f".export-tmp-{dead}").exists() and not (tmp_path / f".out.old-{dead}").exists()
