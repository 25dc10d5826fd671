"""Data readers take regular files only, whatever the suffix: `--data zero.txt` where zero.txt is a
symlink to /dev/zero would read forever, and a FIFO named fifo.txt blocks on open until a writer
comes. Every verb that reads data refuses both in one line, exit 2, at once, before any output is
made (a reader that tried to open them would hang past the timeout)."""

from __future__ import annotations

import os

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2

VERBS = {  # verb -> argv with the data source BAD (the output, where there is one, is "o")
    "prune": lambda m, bad: ["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", bad, "--out", "o"],
    "train": lambda m, bad: ["train", m, "--data", bad, "--tokens", "2000", "--out", "o"],
    "pretrain": lambda m, bad: ["pretrain", "--arch", "tiny", "--data", bad, "--tokens", "2000", "--out", "o"],
    "eval": lambda m, bad: ["eval", m, "--data", bad],
    "compare": lambda m, bad: ["compare", m, "--data", bad, "--out", "o"],
    "ship": lambda m, bad: ["ship", m, "--data", bad, "--recover-tokens", "0", "--out", "o"],
    "export": lambda m, bad: ["export", m, "--formats", "hf", "--data", bad, "--out", "o"],
}
MIXES = ("train", "pretrain", "ship")  # the verbs whose --data may list several sources


def _hostile(cwd) -> None:
    os.symlink("/dev/zero", cwd / "zero.txt")
    os.symlink("/dev/zero", cwd / "zero.jsonl")
    os.mkfifo(cwd / "fifo.txt")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("verb, source", [(v, s) for v in VERBS for s in ("zero.txt", "fifo.txt", "zero.jsonl")]
                         + [(v, "{data},fifo.txt") for v in MIXES])
def test_non_regular_data_is_refused_at_once(world, tmp_path, monkeypatch, capsys, verb, source):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    _hostile(tmp_path)
    bad = source.format(data=world["data"])
    line = one_line_exit_2(main(VERBS[verb](str(world["model"]), bad)), capsys.readouterr().err)
    name = bad.split(",")[-1]
    assert name in line and "not a regular file" in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb, source", [(v, s) for v in VERBS for s in ("sparse.txt", "sparse.jsonl", "folder")
                                          if (v, s) != ("export", "folder")])  # export's --data is one file
def test_sparse_data_is_refused_before_reading(world, tmp_path, monkeypatch, capsys, verb, source):
    """A 2 GB file that is nearly all holes is not text: refused by its size on disk, nothing read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "folder").mkdir()
    for name in ("sparse.txt", "sparse.jsonl", "folder/part.txt"):
        with open(tmp_path / name, "wb") as f:
            f.write(b"hello\n")
            f.truncate(2 << 30)
    line = one_line_exit_2(main(VERBS[verb](str(world["model"]), source)), capsys.readouterr().err)
    assert "sparse file" in line and "nothing was read" in line, line
    assert not (tmp_path / "o").exists()


def test_a_document_without_separators_is_cut_not_held_whole(tmp_path, monkeypatch, caplog):
    """Memory stays bounded by DOC_MAX_CHARS whatever the file: a .txt document past it is cut
    (said once), a .jsonl line past it is one DataError."""
    from edgeprune.base.errors import DataError
    from edgeprune.data import text_sources

    monkeypatch.setattr(text_sources, "DOC_MAX_CHARS", 1000)
    monkeypatch.setattr(text_sources, "_READ_CHARS", 300)
    (tmp_path / "long.txt").write_text("a" * 5000)
    docs = list(text_sources.iter_documents(tmp_path / "long.txt"))
    assert "".join(docs) == "a" * 5000 and max(map(len, docs)) <= 1000 + 300
    assert "cut there" in caplog.text
    (tmp_path / "long.jsonl").write_text('{"text": "' + "b" * 5000 + '"}\n')
    with pytest.raises(DataError, match="line longer than 1000"):
        list(text_sources.iter_documents(tmp_path / "long.jsonl"))
