"""Export's final move: the manifest goes first and comes back last, each entry is
swapped whole, so an interrupted move reads as an incomplete export, never as a manifest naming
a deleted file or a format folder missing half its files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.base.errors import ExportError
from edgeprune.export.api import MANIFEST, _move_in, export_model, read_manifest
from edgeprune.base.outdir import clean_stale

from .conftest import snapshot

FAST = {"gguf": {"greedy_tokens": 0}}


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_interrupted_move_reads_as_incomplete_and_a_rerun_completes(world, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = export_model(world["model"], out, formats=["hf", "gguf"], options=FAST, progress=False)
    assert read_manifest(out) == first
    reference = snapshot(out)
    real_replace = os.replace
    for cut in (1, 2, 3, 4):  # entry 1 aside | entry 1 in | entry 2 aside | entry 2 in
        staging = out / f".export-tmp-{os.getpid()}"
        for name in ("gguf", "hf"):  # a finished staging folder (a copy of the real files)
            shutil.copytree(out / name, staging / name)
        calls = []

        def flaky(src, dst, cut=cut, calls=calls):  # the Nth rename of the move dies like a kill -9
            if Path(dst).parent == out and "manifest" not in Path(dst).name:
                calls.append(dst)
                if len(calls) == cut:
                    raise KeyboardInterrupt
            return real_replace(src, dst)

        monkeypatch.setattr(os, "replace", flaky)
        with pytest.raises(KeyboardInterrupt):
            _move_in(staging, out)
        monkeypatch.undo()
        # the old manifest went before anything moved: the folder reads as an incomplete export
        with pytest.raises(ExportError, match="not a finished export"):
            read_manifest(out)
        # a swap cut between its two renames left the old entry aside; the next run (another pid)
        # puts it back before anything else
        dead = _dead_pid()
        for p in out.iterdir():
            if p.name.endswith(f"-{os.getpid()}"):
                p.rename(out / p.name.replace(f"-{os.getpid()}", f"-{dead}"))
        for target in (out, out / "hf", out / "gguf"):
            clean_stale(target)
        assert {"hf", "gguf"} <= {p.name for p in out.iterdir()}, cut  # every entry whole, old or new
        for name in ("hf", "gguf"):  # whole: every file of the entry, byte for byte
            assert snapshot(out / name) == {k[len(name) + 1:]: v for k, v in reference.items()
                                            if k.startswith(name + "/")}, (cut, name)
        assert not [p for p in out.iterdir() if "-" + str(dead) in p.name], cut
    export_model(world["model"], out, formats=["hf", "gguf"], options=FAST, progress=False)
    read_manifest(out)
    after = snapshot(out)
    for rel in ("gguf/model-F32.gguf", "hf/model.safetensors"):
        if rel in reference:
            assert after[rel] == reference[rel]  # the same bytes as the uninterrupted export


def test_manifest_naming_a_missing_or_changed_file_is_incomplete(world, tmp_path):
    out = tmp_path / "out"
    man = export_model(world["model"], out, formats=["gguf"], options=FAST, progress=False)
    gguf = out / man["artifacts"][0]["path"]
    with open(gguf, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ExportError, match="missing or changed"):
        read_manifest(out)
    gguf.unlink()
    with pytest.raises(ExportError, match="missing or changed"):
        read_manifest(out)
    (out / MANIFEST).write_text("{")
    with pytest.raises(ExportError, match="not a readable manifest"):
        read_manifest(out)
