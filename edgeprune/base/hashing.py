"""Content hashes: the one place every fingerprint the project records is computed (token cache
keys, tokenizer and data fingerprints, training-run and stage fingerprints, manifest sha256 of
exported files).

Every fingerprint is a prefix of a sha256 hex digest. The prefix lengths differ by use (12 for the
per-component parts of a training fingerprint, 16 for most identities, 24 for token cache file
names) and are part of what is on disk: changing one, or the bytes fed in, orphans every cache
entry and refuses every resume directory written before (tests/core/test_hashing.py pins them).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

if TYPE_CHECKING:
    import numpy as np
    import torch

PathLike = Union[str, os.PathLike]
DIGEST_CHARS = 16  # hex characters kept by default: 64 bits, ample to tell apart one user's runs
FULL_HASH_BYTES = 64 * 1024 ** 2  # files up to this size are hashed whole (data, configs, tokenizers)
SAMPLE_BYTES = 1 << 20  # larger non-safetensors files: first and last MiB (plus size and mtime)


def digest(*parts: Union[bytes, str], n: Optional[int] = DIGEST_CHARS) -> str:
    """sha256 of `parts` fed in order with no separator (str as UTF-8), as `n` hex characters
    (None: all 64). Callers that need parts kept apart put the separator in themselves."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
    return h.hexdigest()[:n]


def json_digest(obj: Any, n: Optional[int] = DIGEST_CHARS) -> str:
    """Digest of JSON-able data: keys sorted so dict order does not matter, anything JSON cannot
    hold (paths, enums) by its str()."""
    return digest(json.dumps(obj, sort_keys=True, default=str), n=n)


def array_digest(arr: "np.ndarray", n: Optional[int] = DIGEST_CHARS) -> str:
    """Digest of an array's raw bytes in C order (its dtype and shape are not included)."""
    import numpy as np

    return digest(np.ascontiguousarray(arr).tobytes(), n=n)


def state_dict_digest(state: Mapping[str, "torch.Tensor"], n: Optional[int] = DIGEST_CHARS) -> str:
    """Digest of a state dict: each name, then its tensor's values, in the dict's order, as float32 bytes (numpy has no bfloat16; a bf16 and an fp32 copy of the same values
    then agree)."""
    import torch

    return digest(*(b for name, t in state.items()
                    for b in (name.encode(), t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())), n=n)


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
        return h.hexdigest()[:DIGEST_CHARS]
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p)
        if not f.is_file() or any(part.startswith(".") for part in rel.parts):
            continue  # temporaries, locks, markers: not content
        h.update(str(rel).encode() + b"\0")
        _file_identity(f, h)
    return h.hexdigest()[:DIGEST_CHARS]
