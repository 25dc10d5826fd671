"""A full disk (or an exhausted quota), whichever writer hit it, as the one line the CLI prints.

Writers report it in their own words: Python's OSError carries ENOSPC / EDQUOT, safetensors' Rust
writer a SafetensorError whose text holds "No space left on device (os error 28)", numpy's tofile
(the GGUF writer) an OSError without an errno saying "N requested and M written". All are the same
event for the user: the output named on the command line could not be written. The line names
that output (and the flag it was given with), what the device still has free, and the bytes that
could not be written when the writer said.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path
from typing import Optional, Sequence

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXT = re.compile(r"No space left on device|Disk quota exceeded|os error (28|122)\b")
_TEMPORARY = re.compile(r"^\.(.+)\.tmp-\d+$")  # atomic_io's `.NAME.tmp-PID`
_SHORT_WRITE = re.compile(r"^(\d+) requested and (\d+) written$")  # numpy's tofile on a full disk


def is_disk_full(e: BaseException) -> bool:
    """Whether `e` (or an exception it was raised from) is a write refused for lack of space."""
    seen = 0
    while e is not None and seen < 8:
        if isinstance(e, OSError) and (e.errno in _FULL_ERRNOS or _SHORT_WRITE.match(str(e))):
            return True
        if _FULL_TEXT.search(str(e)):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _unwritten_bytes(e: BaseException) -> Optional[int]:
    m = _SHORT_WRITE.match(str(e))
    return int(m[1]) - int(m[2]) if m else None


def _free_bytes(path: Path) -> Optional[int]:
    for p in (path, *path.absolute().parents):
        if os.path.isdir(p):
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def _beside_or_inside(filename: str, output: str) -> bool:
    """`filename` is the output, inside it, or a sibling of it (its temporaries and lock)."""
    f, o = Path(os.path.abspath(filename)), Path(os.path.abspath(output))
    return f == o or o in f.parents or f.parent == o.parent


def disk_full_line(e: BaseException, outputs: Sequence[tuple]) -> str:
    """The one line for a disk-full failure. `outputs`: the command's (path, kind[, flag]); the line
    names the first (the output the user asked for), or the file the error names when it lies
    outside every output (a cache, say)."""
    from edgeprune.base.table import human_bytes

    filename = getattr(e, "filename", None)
    if outputs and (filename is None or any(_beside_or_inside(str(filename), str(o[0])) for o in outputs)):
        path = Path(outputs[0][0])
        name = f"{outputs[0][2] if len(outputs[0]) > 2 else '--out'} {path}"
    else:  # a file outside the outputs: named as the user knows it, not as its temporary
        path = Path(str(filename or "."))
        m = _TEMPORARY.match(path.name)
        path = path.with_name(m[1]) if m else path
        name = str(path) if filename else "an output"
    quota = getattr(e, "errno", None) == errno.EDQUOT or "quota" in str(e).lower() or "os error 122" in str(e)
    detail = []
    unwritten = _unwritten_bytes(e)
    if unwritten is not None:
        detail.append(f"{unwritten:,} bytes of the last write did not fit")
    free = _free_bytes(path)
    if free is not None and not quota:
        detail.append(f"{human_bytes(free)} free there")
    what = "the disk quota is used up" if quota else "no space left on the device"
    return (f"{name}: {what}{' (' + '; '.join(detail) + ')' if detail else ''}; nothing partial was "
            f"left behind: free some space or choose another output")
