"""What edgeprune may do to an output path: claim it, lock it, clean up after killed runs.

The promises (docs/REFERENCE.md "What edgeprune promises"):
- An output replaces only what edgeprune itself wrote there: a folder carrying our marker file
  (`.edgeprune-output`, listing the entries we wrote), an empty folder, or nothing. A folder of
  anything else, a regular file where a folder is wanted, `.`, the home directory or a parent of
  the working directory is refused with one line (exit 2) and left untouched, unless the user
  passes `--overwrite` (the cwd / home / file cases are refused even then).
- One run at a time per output: an exclusive `flock` on a lock file beside the output (beside,
  not inside, because checkpoint folders are replaced by a rename: a lock file inside would move
  away with the old folder). A second run fails at once naming the holder's pid.
- Temporary siblings left by a killed run (`.NAME.tmp-PID`, `.NAME.old-PID`, `.export-tmp-PID`)
  are removed by the next run once their pid is dead; an `.old-PID` whose target is missing (a
  kill between the two renames of a swap) is renamed back, since it is the last complete version.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from edgeprune.base.errors import OutputError

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
MARKER = ".edgeprune-output"  # JSON: {"written_by": "edgeprune", "entries": [...] or null}
_claimed: dict[Path, bool] = {}  # resolved path -> overwrite allowed (this process's claims)
_STALE = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$")
_STALE_EXPORT = re.compile(r"^\.export-tmp-(?P<pid>\d+)$")
# What edgeprune's own work folders hold (training runs, incremental stages, ship): a folder of
# only these names was written by edgeprune even without a marker (runs made before markers).
_WORK_NAMES = re.compile(r"^(step-\d+|stage-\d+|latest|state\.json|journal\.json|train_log\.jsonl|train|\.stages|"
                         r"\..+\.(tmp|old)-\d+|\..+\.lock)$")


# ----- ownership ---------------------------------------------------------------------------------

def write_marker(directory: Path, entries: Optional[Sequence[str]] = None) -> None:
    """Mark `directory` as written by edgeprune. `entries`: the top-level names it holds (a folder
    written whole); None for a work folder that edgeprune fills over time (ship's --out)."""
    data = {"written_by": "edgeprune", "entries": sorted(set(entries)) if entries is not None else None}
    # temporary + rename by hand, not through atomic_io: atomic_io builds on this module's
    # ownership rules (it imports them), so this module cannot import it back
    tmp = Path(directory) / f".{MARKER}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(data) + "\n")
    os.replace(tmp, Path(directory) / MARKER)


def ensure_work_marker(directory: Path) -> None:
    """Mark a work folder (filled over time, never replaced whole) as ours, once."""
    if _marker(Path(directory)) is None:
        write_marker(Path(directory), None)


def ensure_entries_marker(directory: Path) -> None:
    """Give a folder edgeprune is about to write entries into a marker listing what it writes
    (add_to_marker), starting empty when it had none (a new folder, or one claimed with --overwrite:
    the user's own files stay unlisted, so they stay theirs)."""
    if _marker(Path(directory)) is None:
        write_marker(Path(directory), [])


def add_to_marker(directory: Path, name: str) -> None:
    """Record one more entry in a whole-folder marker (a file added after the folder was written,
    e.g. train's log beside its checkpoint), so the folder stays recognisably ours."""
    mark = _marker(Path(directory))
    if mark is not None and mark.get("entries") is not None and name not in mark["entries"]:
        write_marker(Path(directory), [*mark["entries"], name])


def _marker(directory: Path) -> Optional[dict]:
    try:
        data = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "edgeprune" else None


def foreign_entry(directory: Path) -> Optional[str]:
    """None when `directory` holds only what edgeprune wrote (or nothing); else the name of one
    entry edgeprune did not write (or the folder itself when it carries no marker)."""
    # temporaries of a run (live or killed) and lock files are ours whatever the marker says
    names = sorted(p.name for p in directory.iterdir()
                   if not (_STALE.match(p.name) or _STALE_EXPORT.match(p.name) or (p.name.startswith(".") and p.name.endswith(".lock"))))
    if not names:
        return None
    mark = _marker(directory)
    if mark is None:
        return names[0]
    entries = mark.get("entries")
    if entries is None:
        return None
    extra = [n for n in names if n != MARKER and n not in set(entries)]
    return extra[0] if extra else None


def _danger(path: Path) -> Optional[str]:
    """Why `path` can never be an output folder (even with --overwrite), or None."""
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        return "is the working directory or one of its parents"
    if real == Path.home().resolve() or real == Path(real.anchor):
        return "is the home or root directory"
    return None


def check_output(path: PathLike, *, overwrite: bool = False, kind: str = "dir", flag: str = "--out") -> Path:
    """Refuse (OutputError, nothing touched) an output that would replace something the user made;
    remember the claim so the writes of this run (atomic_dir) may proceed. `kind`: "dir" (a folder
    written whole), "work" (a folder edgeprune fills over time: training runs, ship) or "file"."""
    path = Path(path)
    why = _danger(path)
    if why:
        raise OutputError(f"{flag} {path} {why}: name a new folder for the output")
    _check_name_lengths(path, flag)  # first: asking about a name too long fails with ENAMETOOLONG
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{flag} {path} is a link to {os.readlink(path)}, which does not exist: "
                          f"name a new output or remove the link")
    ancestor = next((a for a in [path, *path.absolute().parents] if a.exists()), None)
    if ancestor is not None and ancestor != path:
        if not ancestor.is_dir():
            raise OutputError(f"{flag} {path}: {ancestor} is a file, so nothing can be written below it")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise OutputError(f"{flag} {path}: no permission to create anything in {ancestor}")
    elif ancestor == path and path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: no permission to write in it")
    if kind in ("dir", "work"):
        if path.exists() and not path.is_dir():
            raise OutputError(f"{flag} {path} is an existing file, not a folder: name a folder for the output")
        if path.is_dir() and not overwrite:
            entry = foreign_entry(path)
            if entry is not None and kind == "work" and all(_WORK_NAMES.match(p.name) for p in path.iterdir()):
                entry = None
            if entry is not None:
                raise OutputError(f"{flag} {path} already holds {entry!r}, which edgeprune did not write: "
                                  f"choose a new folder, or pass --overwrite to replace it")
    else:
        if path.is_dir():
            raise OutputError(f"{flag} {path} is a folder; name a file")
        if path.exists() and not overwrite and not _is_ours_file(path):
            raise OutputError(f"{flag} {path} already exists and edgeprune did not write it: "
                              f"choose another name, or pass --overwrite to replace it")
    _claimed[path.resolve()] = overwrite
    return path


def _check_name_lengths(path: Path, flag: str) -> None:
    """Refuse a name the file system cannot hold, counting the temporary and lock names written
    beside the output (`.NAME.tmp-PID`, `.NAME.lock`): a name a few bytes under the limit would
    otherwise fail only when the first temporary is made, after the work."""
    ancestor = next((a for a in path.absolute().parents if os.path.isdir(a)), Path(path.absolute().anchor))
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(f"{flag} {path}: the name {part[:16]}… is too long ({len(os.fsencode(part))} bytes; "
                              f"the file system allows {limit})")
    # the longest sibling edgeprune makes (the lock, `.NAME.lock`, is shorter), at the widest pid
    # Linux hands out (pid_max 2^22): the same name is refused whatever this run's pid
    beside = f".{path.name}.tmp-{2 ** 22}"
    extra = len(os.fsencode(beside)) - len(os.fsencode(path.name))
    if len(os.fsencode(beside)) > limit:
        raise OutputError(f"{flag} {path}: the name is too long: edgeprune writes a temporary beside it "
                          f"({extra} bytes longer) and the file system allows {limit} bytes; "
                          f"use a name of at most {limit - extra} bytes")


def _is_ours_file(path: Path) -> bool:
    """A file output we wrote earlier: its folder's marker lists it (record_file_output)."""
    mark = _marker(path.parent)
    if mark is None:
        return False
    return mark.get("entries") is None or path.name in mark["entries"]  # None: a work folder of ours


def record_file_output(path: Path) -> None:
    """Note in the folder's marker that edgeprune wrote file `path` (a later run may replace it)."""
    path = Path(path)
    if not path.is_file():
        return
    mark = _marker(path.parent)
    if mark is None:
        write_marker(path.parent, [path.name])
    elif mark.get("entries") is not None:
        add_to_marker(path.parent, path.name)


def may_replace(target: Path) -> Optional[str]:
    """None when atomic_dir may replace `target`; else why not (a reason for the error line)."""
    if not target.exists():
        return None
    if not target.is_dir():
        return f"{target} is an existing file, not a folder"
    real = target.resolve()
    if _claimed.get(real):  # the user said --overwrite for exactly this path
        return None
    entry = foreign_entry(target)
    if entry is None:
        return None
    if any(p in _claimed for p in real.parents):  # inside a folder this run claimed (ship's work/)
        return None
    return (f"{target} already holds {entry!r}, which edgeprune did not write: "
            f"choose a new folder, or pass --overwrite to replace it")


def release_claims() -> None:
    """Forget this process's claims (main() may run many commands in one process)."""
    _claimed.clear()


# ----- locking -----------------------------------------------------------------------------------

WORK_LOCK = ".edgeprune.lock"  # the lock file inside a work folder (ship's dist/, a training run)


def lock_path(target: Path, inside: bool = False) -> Path:
    """The lock file of output `target`: inside it for a work folder (one edgeprune fills over
    time and never swaps whole: a lock a killed run leaves stays in the output, not in the user's
    working tree), else beside it (a folder or file replaced whole by a rename would take a lock
    inside it away mid-run)."""
    target = Path(target)
    return target / WORK_LOCK if inside else target.parent / f".{target.name}.lock"


@contextmanager
def output_lock(target: PathLike, inside: bool = False) -> Iterator[Path]:
    """Hold an exclusive flock for `target` (lock_path's file) for the duration; a second run on
    the same output raises OutputError naming the holder's pid. The lock file is removed on a
    clean exit; after a kill the kernel drops the lock and the next run reuses the file."""
    target = Path(target)
    made = inside and not target.exists()  # a folder made only to hold the lock goes with it, if still empty
    (target if inside else target.parent).mkdir(parents=True, exist_ok=True)
    path = lock_path(target, inside)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_pid(fd)
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise OutputError(f"{target} is in use by another edgeprune run (pid {holder or '?'}); "
                                  f"wait for it to finish or choose another output") from None
            raise
        # the file may have been unlinked by a holder that just finished: lock the live one
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # a full disk fails here: no lock file stays
    except BaseException:
        os.unlink(path)
        os.close(fd)
        raise
    try:
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)
        if made:
            try:
                target.rmdir()
            except OSError:  # it holds the run's output (or is gone)
                pass


def _read_pid(fd: int) -> Optional[int]:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def check_not_input(outputs: Sequence[tuple[PathLike, str]], inputs: Sequence[tuple[PathLike, str]]) -> None:
    """Refuse (OutputError) an output that is one of the command's inputs, lies inside one or contains
    one, whatever --overwrite says: replacing it would destroy what the run reads (a checkpoint
    pruned onto itself). Both sides are compared after resolving symlinks. Items: (path, flag)."""
    for out, oflag in outputs:
        o = Path(os.path.realpath(out))
        for inp, iflag in inputs:
            i = Path(os.path.realpath(inp))
            rel = ("is" if o == i else "is inside" if i in o.parents else "contains" if o in i.parents else None)
            if rel is not None:
                raise OutputError(f"{oflag} {out} {rel} the input {iflag} {inp}: writing there would "
                                  f"destroy what the run reads; name an output outside it")


@contextmanager
def claim_outputs(paths: Sequence[tuple], overwrite: bool = False, lock: bool = True,
                  inputs: Sequence[tuple[PathLike, str]] = ()) -> Iterator[None]:
    """check_not_input + check_output + output_lock + stale cleanup for each (path, kind[, flag]) of
    one command (flag: the option the user named it with, for the error line; default --out). Every
    check runs before any lock file is made, so a refused command leaves no trace. `lock=False` on
    the non-zero ranks of a torchrun job (rank 0 holds it for them)."""
    from contextlib import ExitStack

    flagged = [(p[0], p[1], p[2] if len(p) > 2 else "--out") for p in paths]
    check_not_input([(p, flag) for p, _kind, flag in flagged], inputs)
    new: dict[Path, Path] = {}  # output this run creates -> the first folder on its way it creates
    try:
        with ExitStack() as stack:
            for p, kind, flag in flagged:
                check_output(p, overwrite=overwrite, kind=kind, flag=flag)
            for p, _kind, _flag in flagged:  # before any lock makes a parent folder
                if not os.path.lexists(p):
                    new[Path(p)] = _first_missing(Path(p))
            for p, kind, _flag in flagged:
                if lock:
                    stack.enter_context(output_lock(p, inside=(kind == "work")))
                    clean_stale(Path(p))
            try:
                yield
                for p, kind, _flag in flagged:
                    if kind == "file":
                        record_file_output(Path(p))
            finally:
                release_claims()
    except BaseException:
        _remove_unfinished(new)
        raise


def _first_missing(path: Path) -> Path:
    """The outermost folder of `path` (or `path` itself) that does not exist yet."""
    first = path
    for a in path.absolute().parents:
        if os.path.lexists(a):
            break
        first = a
    return first


# what a folder this run made may hold and still count as empty after a failure: our bookkeeping
_BOOKKEEPING = {MARKER, "train_log.jsonl"}


def _remove_unfinished(new: dict[Path, Path]) -> None:
    """After a failed run, remove the output folders it created that hold nothing finished (only
    edgeprune's marker, a training log, temporaries), and the empty folders it made on their way:
    a full disk leaves no empty `--out` behind. A folder holding a checkpoint step stays: a rerun
    resumes from it."""
    for path in new:
        if path.is_dir() and not path.is_symlink():
            left = [p for p in path.iterdir() if p.name not in _BOOKKEEPING and not _STALE.match(p.name)
                    and not _STALE_EXPORT.match(p.name)]
            if not left:
                shutil.rmtree(path, ignore_errors=True)
    for path, first in new.items():  # then the folders made on the way (two outputs may share one)
        first = first.absolute()
        for folder in [path.absolute(), *path.absolute().parents]:
            if os.path.lexists(folder):
                try:
                    folder.rmdir()  # empty ones only
                except OSError:
                    break
            if folder == first:
                break


# ----- stale temporaries of killed runs ----------------------------------------------------------

def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(target: Path) -> list[Path]:
    """Remove `.NAME.tmp-PID` / `.NAME.old-PID` siblings of `target` and `.export-tmp-PID` inside it
    whose pid is dead; restore an `.old-PID` when `target` itself is missing. Returns what it removed."""
    target = Path(target)
    removed: list[Path] = []
    if target.parent.is_dir():
        for p in sorted(target.parent.iterdir()):
            m = _STALE.match(p.name)
            if not m or m["name"] != target.name or pid_alive(int(m["pid"])):
                continue
            if m["kind"] == "old" and not target.exists() and p.is_dir():
                os.replace(p, target)  # killed between the two renames: the old one is complete
                log.warning("restored %s from an interrupted swap", target)
                continue
            _remove(p)
            removed.append(p)
    if target.is_dir():
        for p in sorted(target.iterdir()):
            m = _STALE_EXPORT.match(p.name)
            if m and not pid_alive(int(m["pid"])):
                _remove(p)
                removed.append(p)
    if removed:
        log.info("removed %d temporary folder(s) left by killed runs: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    else:
        try:
            p.unlink()
        except OSError:
            pass
