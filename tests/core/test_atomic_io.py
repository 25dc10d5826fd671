"""Atomic writes (edgeprune/base/atomic_io.py): a write either lands whole or leaves the old file as it
was, its temporary is one that outdir.clean_stale recognises, and what it writes into a folder
edgeprune owns is recorded in that folder's marker."""

from __future__ import annotations

import json
import os

import pytest

from edgeprune.base.atomic_io import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from edgeprune.base.outdir import MARKER, clean_stale, write_marker


def test_text_bytes_and_json_land_whole_and_create_the_folder(tmp_path):
    assert atomic_write_text(tmp_path / "a" / "t.txt", "héllo\n").read_text(encoding="utf-8") == "héllo\n"
    assert atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    atomic_write_json(tmp_path / "c.json", {"x": [1, 2]})
    assert (tmp_path / "c.json").read_text() == json.dumps({"x": [1, 2]}, indent=1)
    atomic_write_json(tmp_path / "d.json", {"p": tmp_path}, indent=None, default=str)
    assert json.loads((tmp_path / "d.json").read_text()) == {"p": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b.bin", "c.json", "d.json"]  # no temporaries


def test_a_failed_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.gguf"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_the_temporary_is_a_hidden_sibling_that_clean_stale_removes_after_a_kill(tmp_path):
    path = tmp_path / "out.json"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name == f".out.json.tmp-{os.getpid()}"
        tmp.write_text("{}")
    dead = tmp_path / ".out.json.tmp-999999999"  # a pid no process has
    dead.write_text("left by a killed run")
    assert clean_stale(path) == [dead]


def test_a_file_written_into_a_folder_edgeprune_wrote_whole_joins_its_marker(tmp_path):
    write_marker(tmp_path, ["config.json"])
    atomic_write_text(tmp_path / "train_log.jsonl", "{}\n")
    assert json.loads((tmp_path / MARKER).read_text())["entries"] == ["config.json", "train_log.jsonl"]


def test_atomic_dir_swaps_a_whole_folder_in_and_marks_it_ours(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with atomic_dir(target) as tmp:  # ours now: replaced whole
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no .tmp / .old left beside it


def test_written_files_take_the_umask_default_modes(tmp_path):
    """A writer that makes its file through mkstemp (safetensors' save_file: 0600) still leaves a
    file of ordinary modes; bits a file already has (a script's x) stay; a private umask is kept."""
    import os
    import tempfile

    from edgeprune.base.atomic_io import atomic_dir, atomic_path

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.bin") as tmp:
            fd, name = tempfile.mkstemp(dir=tmp_path)
            os.close(fd)
            os.replace(name, tmp)  # 0600, as mkstemp makes it
        assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "sub").mkdir(mode=0o700)
            fd, name = tempfile.mkstemp(dir=tmp / "sub")
            os.close(fd)
            (tmp / "run.sh").write_text("#!/bin/sh\n")
            (tmp / "run.sh").chmod(0o755)
        assert (tmp_path / "d" / "sub").stat().st_mode & 0o777 == 0o755
        assert (tmp_path / "d" / "sub" / os.path.basename(name)).stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "d" / "run.sh").stat().st_mode & 0o777 == 0o755
        os.umask(0o077)
        with atomic_path(tmp_path / "private.bin") as tmp:
            tmp.write_bytes(b"x")
        assert (tmp_path / "private.bin").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
