"""Every refusal of an output names the flag the user gave and the path as typed: `eval --json
notes.txt` is told about --json, and a folder edgeprune derives from --out (train's `OUT.train`,
prune --incremental's `OUT.stages`) is told as --out's, never as an anonymous "output"."""

from __future__ import annotations

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2, snapshot

M, D = "{m}", "{d}"
ROWS = [  # (argv, what the user's line starts with)
    (["eval", M, "--data", D, "--json", "user/notes.txt"], "--json user/notes.txt"),
    (["eval", M, "--data", D, "--json", "user"], "--json user"),
    (["bench", "--predict-only", "--model", M, "--out", "user/notes.txt"], "--out user/notes.txt"),
    (["train", M, "--data", D, "--tokens", "1000", "--out", "t"], "--out t: its work folder t.train"),
    (["pretrain", "--arch", "tiny", "--data", D, "--tokens", "1000", "--out", "t"], "--out t: its work folder t.train"),
    (["prune", M, "--method", "adapt", "--ratio", "0.3", "--data", D, "--incremental", "--out", "p"],
     "--out p: its work folder p.stages"),
    (["ship", "--recipe", "r.toml"], "out (recipe r.toml) user"),  # named in the recipe, not by a flag
    (["ship", "--recipe", "r.toml", "--out", "user"], "--out user"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv, starts", ROWS, ids=[f"{a[0]}-{s.split()[0]}-{s.split()[-1]}" for a, s in ROWS])
def test_refusals_name_the_users_flag(world, tmp_path, monkeypatch, capsys, argv, starts):
    monkeypatch.chdir(tmp_path)
    for folder in ("user", "t.train", "p.stages"):  # the user's own files where edgeprune would write
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.txt").write_text("mine\n")
    (tmp_path / "r.toml").write_text(f'model = "{world["model"]}"\ndata = "{world["data"]}"\nout = "user"\n')
    before = snapshot(tmp_path)
    line = one_line_exit_2(main([a.format(m=world["model"], d=world["data"]) for a in argv]),
                           capsys.readouterr().err)
    assert line.split(": error: ", 1)[1].startswith(starts), line
    assert snapshot(tmp_path) == before
