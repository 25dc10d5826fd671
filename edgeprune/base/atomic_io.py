"""Atomic writes: every file and folder edgeprune writes goes through here, so a crash or Ctrl-C
never leaves half of one where a reader (a later run, a resume, llama.cpp) would trust it.

The one mechanism: write a temporary sibling named `.NAME.tmp-PID` (same folder, so the final
rename stays on one filesystem and is atomic), then `os.replace` it over NAME; on any exception
the temporary is removed and NAME is untouched. The name is the one edgeprune/base/outdir.py
recognises, so a sibling left by a killed run is removed by the next run once its pid is dead.

Ownership (docs/REFERENCE.md "What edgeprune promises") is honoured here too: a folder is replaced only
when edgeprune/base/outdir.py says edgeprune may replace it, and each file written is recorded in its
folder's marker when that folder is one edgeprune wrote whole.

- `atomic_path(path)`: a context manager yielding the temporary path, for writers that need a
  path of their own (matplotlib's savefig, a GGUF writer, llama.cpp's quantizer);
- `atomic_write_bytes` / `atomic_write_text` / `atomic_write_json`: one call each;
- `atomic_dir(target)`: a whole folder (a checkpoint, a training step), swapped in by renames.

What is renamed into place has the modes any file the user's programs write would have (umask's
default): some writers make their file through mkstemp (safetensors' save_file writes 0600), and a
model the user shares or serves must not be private to one account by accident.

No fsync: none of the writers this module replaced did one; a rename protects against a killed
process, not a power cut, and that is the promise made.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

from edgeprune.base.errors import OutputError
from edgeprune.base.outdir import add_to_marker, clean_stale, may_replace, write_marker

PathLike = Union[str, os.PathLike]


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    """`.NAME.tmp-PID` (or `.NAME.old-PID`) beside `path`: hidden, unique per process, and the
    pattern outdir.clean_stale removes after a killed run."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def _umask() -> int:
    """The process's umask, read without changing it where Linux says it (os.umask sets as it reads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_modes(path: Path) -> None:
    """Give `path` (and everything below it, for a folder) at least the permission bits umask lets
    a new file or folder have; bits it already has (a script's x) stay."""
    mask = _umask()
    for p in [path, *(path.rglob("*") if path.is_dir() and not path.is_symlink() else ())]:
        if p.is_symlink():
            continue
        want = (0o777 if p.is_dir() else 0o666) & ~mask
        mode = p.stat().st_mode & 0o7777
        if mode | want != mode:
            p.chmod(mode | want)


_groups: list[list[tuple[Path, Path]]] = []  # open atomic_files blocks: (temporary, target) to rename


@contextmanager
def atomic_files() -> Iterator[None]:
    """Files written with atomic_path (and the helpers over it) inside this block are renamed into
    place together when the block ends normally, and none of them is on any exception: a report
    of several files (a table, its JSON, its plot) is never half new and half old, e.g. when the
    disk fills up at the last one."""
    _groups.append([])
    try:
        yield
        pending = _groups[-1]
    except BaseException:
        for tmp, _path in _groups.pop():
            tmp.unlink(missing_ok=True)
        raise
    _groups.pop()
    for tmp, path in pending:
        if _groups:  # nested: the outer block renames it
            if (tmp, path) not in _groups[-1]:
                _groups[-1].append((tmp, path))
            continue
        os.replace(tmp, path)
        add_to_marker(path.parent, path.name)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (its folder created) for the caller to write; when the
    block ends normally it replaces `path` in one rename and is recorded in the folder's marker
    (inside atomic_files, when that block ends). On any exception (Ctrl-C included) it is removed
    and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if tmp.exists():
            ordinary_modes(tmp)
        if _groups:
            if (tmp, path) not in _groups[-1]:  # written twice in the block: its temporary holds the last
                _groups[-1].append((tmp, path))
            return
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    add_to_marker(path.parent, path.name)


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_json(path: PathLike, obj: Any, indent: Optional[int] = 1,
                      default: Optional[Callable[[Any], Any]] = None) -> Path:
    """Write `obj` as JSON to `path` atomically (no trailing newline, as json.dumps writes it)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, default=default))


@contextmanager
def atomic_dir(target: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `target` in one rename.
    On any exception (Ctrl-C included) the temporary directory is removed and `target` is
    untouched. `target` may be replaced only when edgeprune wrote it (its marker lists every
    entry), it is empty, or the command claimed it with --overwrite (edgeprune/base/outdir.py):
    anything else raises OutputError before a byte is written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    why = may_replace(target)
    if why:
        raise OutputError(why)
    tmp = temp_sibling(target)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        write_marker(tmp, [p.name for p in tmp.iterdir()])
        ordinary_modes(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # two renames, not one: os.replace cannot replace a non-empty folder. A kill between them
    # leaves `.NAME.old-PID` complete, and clean_stale renames it back.
    old = temp_sibling(target, "old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
