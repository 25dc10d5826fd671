"""Content hashes: one helper for every file identity the project records (cache keys,
manifest sha256 of exported files, ship's stage fingerprints)."""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Union

PathLike = Union[str, os.PathLike]
FULL_HASH_BYTES = 64 * 1024 ** 2  # files up to this size are hashed whole (data, configs, tokenizers)
SAMPLE_BYTES = 1 << 20  # larger non-safetensors files: first and last MiB (plus size and mtime)


def file_sha256(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (exported models can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _file_identity(path: Path, h: "hashlib._Hash") -> None:
    """Feed one file's identity into `h`: size and mtime always; then the bytes that say what it
    holds, cheaply: a safetensors file's header (names, dtypes, shapes, offsets) and tail MiB, a
    small file whole, a large one's first and last MiB."""
    st = path.stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}\0".encode())
    with open(path, "rb") as f:
        if path.suffix == ".safetensors" and st.st_size >= 8:
            (n,) = struct.unpack("<Q", f.read(8))
            h.update(f.read(min(n, 100 * 1024 ** 2)))
            f.seek(max(8 + n, st.st_size - SAMPLE_BYTES))
            h.update(f.read(SAMPLE_BYTES))
        elif st.st_size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f.read(SAMPLE_BYTES))
            f.seek(st.st_size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))


def content_fingerprint(path: PathLike) -> str:
    """Short hex fingerprint of what a file or folder holds (a folder: every file below it, by
    relative path, hidden temporaries and lock files skipped). Changes when a model is retrained
    or a data file rewritten in place, even under the same path and size; "" when `path` does
    not exist. Cheap for multi-GB checkpoints (safetensors headers, not their data)."""
    p = Path(path)
    if not p.exists():
        return ""
    h = hashlib.sha256()
    if p.is_file():
        _file_identity(p, h)
        return h.hexdigest()[:16]
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p)
        if not f.is_file() or any(part.startswith(".") for part in rel.parts):
            continue  # temporaries, locks, markers: not content
        h.update(str(rel).encode() + b"\0")
        _file_identity(f, h)
    return h.hexdigest()[:16]
