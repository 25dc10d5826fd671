"""A context, a token count or a repetition count below 1 is refused in one line naming the flag,
exit 2, by every verb that takes one: `info --context -1` printed FLOPs "at ctx -1" and exit 0,
and bench's predictions took a prompt of 0 tokens."""

from __future__ import annotations

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2

ROWS = [  # (verb argv with {m} the model, {d} the data; the flag the line names)
    *[(["info", "{m}", "--gguf-sizes", "", "--context", v], "--context") for v in ("-1", "0")],
    *[(["bench", "--predict-only", "--model", "{m}", flag, v], flag)
      for flag in ("--prompt", "--gen", "--reps") for v in ("-1", "0")],
    (["bench", "x.gguf", "--threads", "0"], "--threads"),
    (["bench", "x.gguf", "--vs", "x.gguf", "--rounds", "0"], "--rounds"),
    *[(["eval", "{m}", "--data", "{d}", flag, "0"], flag) for flag in ("--seq-len", "--max-tokens", "--stride")],
    *[(["generate", "{m}", "-p", "hi", "-n", v], "--max-new-tokens") for v in ("-1", "0")],
    (["prune", "{m}", "--method", "uniform", "--ratio", "0.3", "--data", "{d}", "--calib-len", "0", "--out", "o"],
     "--calib-len"),
    (["ship", "{m}", "--data", "{d}", "--calib-len", "0", "--out", "o"], "calib_len"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("argv, flag", ROWS, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in ROWS])
def test_counts_below_one_are_refused(world, tmp_path, monkeypatch, capsys, argv, flag):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.gguf").write_bytes(b"GGUF")  # refused on its flags before it is opened
    argv = [a.format(m=world["model"], d=world["data"]) for a in argv]
    line = one_line_exit_2(main(argv), capsys.readouterr().err)
    assert flag in line and argv[-1 if argv[-2] != "--out" else -3] in line, line
    assert not (tmp_path / "o").exists()
