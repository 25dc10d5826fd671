"""An output is never an input, inside one, or a folder holding one, for every verb that reads a
model or data and writes, with or without --overwrite (a checkpoint pruned onto itself is gone).
Refused in one line, exit 2, before any work: nothing in the folder changes."""

from __future__ import annotations

import os
import shutil

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2, snapshot


def _workspace(world, cwd):
    """cwd/ws/model and cwd/ws/teacher (copies of the tiny checkpoint), cwd/ws/data.txt, cwd/ws/m.gguf (bytes only:
    the guard runs before anything reads it)."""
    ws = cwd / "ws"
    shutil.copytree(world["model"], ws / "model")
    shutil.copytree(world["model"], ws / "teacher")
    shutil.copy(world["data"], ws / "data.txt")
    (ws / "m.gguf").write_bytes(b"GGUF not really")
    os.symlink(ws / "model", cwd / "link-model")
    os.symlink(ws / "data.txt", cwd / "link-data.json")
    os.symlink(ws / "m.gguf", cwd / "link-m.json")


M, D, G = "ws/model", "ws/data.txt", "ws/m.gguf"
VERBS = {
    "prune": lambda out: ["prune", M, "--method", "uniform", "--ratio", "0.3", "--calib", D, "--out", out],
    "prune-incremental": lambda out: ["prune", M, "--method", "adapt", "--ratio", "0.3", "--calib", D,
                                      "--incremental", "--out", out],
    "train": lambda out: ["train", M, "--data", D, "--tokens", "2000", "--out", out],
    "train-teacher": lambda out: ["train", M, "--teacher", "ws/teacher", "--data", D, "--tokens", "2000",
                                  "--out", out],
    "pretrain": lambda out: ["pretrain", "--arch", "tiny", "--data", D, "--tokens", "2000", "--out", out],
    "export": lambda out: ["export", M, "--out", out],
    "compare": lambda out: ["compare", M, "--data", D, "--out", out],
    "ship": lambda out: ["ship", M, "--data", D, "--out", out],
    "eval": lambda out: ["eval", M, "--data", D, "--json", out],
    "bench": lambda out: ["bench", G, "--out", out],
}
# (verb, --out, what the line says): the output is the input, inside it, holds it, or a link to it
CASES = [
    *[(v, out, rel) for v in ("prune", "prune-incremental", "train", "export", "compare", "ship")
      for out, rel in ((M, "is the input"), (M + "/sub", "is inside the input"), ("ws", "contains the input"),
                       ("link-model", "is the input"))],
    ("train-teacher", "ws/teacher/sub", "is inside the input --teacher"),
    ("pretrain", D, "is the input --data"), ("pretrain", "ws", "contains the input"),
    ("ship", D, "is the input --data"),
    ("eval", M + "/r.json", "is inside the input model"), ("eval", D, "is the input --data"),
    ("eval", "link-data.json", "is the input --data"),
    ("bench", G, "is the input artifact"), ("bench", "link-m.json", "is the input artifact"),
]


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
@pytest.mark.parametrize("verb, out, says", CASES)
def test_output_on_an_input_is_refused_before_any_work(world, tmp_path, monkeypatch, capsys, verb, out, says,
                                                       overwrite):
    _workspace(world, tmp_path)
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    rc = main(VERBS[verb](out) + (["--overwrite"] if overwrite else []))
    line = one_line_exit_2(rc, capsys.readouterr().err)
    assert says in line and out in line, line
    assert snapshot(tmp_path) == before  # no lock file, no temporary, the input untouched


def test_an_output_beside_the_input_still_works(world, tmp_path, monkeypatch, capsys):
    """The guard is exact: a sibling whose name starts like the input's is not inside it."""
    _workspace(world, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["export", M, "--formats", "hf", "--out", "ws/model-export"]) == 0, capsys.readouterr().err
    assert (tmp_path / "ws/model-export/manifest.json").is_file()


def test_ship_recipe_inputs_are_guarded(world, tmp_path, monkeypatch, capsys):
    """A model named only in the recipe file is an input too."""
    _workspace(world, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.toml").write_text(f'model = "{M}"\ndata = "{D}"\nout = "{M}"\n')
    before = snapshot(tmp_path)
    line = one_line_exit_2(main(["ship", "--recipe", "r.toml", "--overwrite"]), capsys.readouterr().err)
    assert "is the input model" in line
    assert snapshot(tmp_path) == before
