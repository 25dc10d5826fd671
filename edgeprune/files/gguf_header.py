"""Walk a GGUF file's header with every count and length bounded by the file itself, before
gguf.GGUFReader builds Python objects from them.

GGUFReader trusts the header: a metadata array claiming 2^61 entries makes it loop and grow
without end, nested arrays recurse until RecursionError, a truncated file is an IndexError and a
repeated key a KeyError. This walk reads only integers at offsets (the file is memory-mapped,
nothing is copied), refuses each of those in the user's terms, and costs one pass over the
metadata (the tokenizer's strings dominate: ~0.1 s for 150k tokens).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from edgeprune.base.errors import CheckpointError

# GGUF value types (gguf.GGUFValueType) -> bytes of one scalar; 8 = string, 9 = array
_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _UINT32 = 8, 9, 4
MAX_ARRAY_DEPTH = 2  # an array of arrays is the deepest any GGUF writer produces
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEY_BYTES = 1 << 16  # keys are dotted names ("llama.attention.head_count"): 64 KiB is generous
MAX_STRING_BYTES = 1 << 28  # a chat template or a merges line, never 256 MiB
SUPPORTED_VERSIONS = (2, 3)


class _Walk:
    def __init__(self, path: Path, buf: "mmap.mmap | bytes") -> None:
        self.path, self.buf, self.size, self.end = path, buf, len(buf), "<"

    def bad(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path} is not a valid GGUF file: {what}")

    def take(self, n: int, what: str) -> int:
        """Offset of the next `n` bytes, refusing a read past the end."""
        if n < 0 or self.off + n > self.size:
            raise self.bad(f"{what} at byte {self.off} runs past the end of the file ({self.size} bytes): "
                           f"it is truncated or corrupt")
        off, self.off = self.off, self.off + n
        return off

    def u32(self, what: str) -> int:
        return struct.unpack_from(self.end + "I", self.buf, self.take(4, what))[0]

    def u64(self, what: str) -> int:
        return struct.unpack_from(self.end + "Q", self.buf, self.take(8, what))[0]

    def count(self, what: str, min_bytes: int) -> int:
        """A u64 count of items of at least `min_bytes` each, bounded by the bytes left."""
        n = self.u64(what)
        left = self.size - self.off
        if n * max(1, min_bytes) > left:
            raise self.bad(f"{what} claims {n:,} entries but only {left:,} bytes follow")
        return n

    def string(self, what: str, limit: int = MAX_STRING_BYTES) -> bytes:
        n = self.u64(f"the length of {what}")
        if n > limit:
            raise self.bad(f"{what} claims {n:,} bytes (more than {limit:,})")
        off = self.take(n, what)
        return bytes(self.buf[off:off + n])

    def value(self, vtype: int, what: str, depth: int = 0) -> None:
        if vtype in _SCALAR_BYTES:
            self.take(_SCALAR_BYTES[vtype], what)
        elif vtype == _STRING:
            n = self.u64(f"the length of {what}")
            if n > MAX_STRING_BYTES:
                raise self.bad(f"{what} claims a string of {n:,} bytes")
            self.take(n, what)
        elif vtype == _ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.bad(f"{what} nests arrays more than {MAX_ARRAY_DEPTH} deep")
            item = self.u32(f"the item type of {what}")
            if item in _SCALAR_BYTES:
                n = self.count(f"array {what}", _SCALAR_BYTES[item])
                self.take(n * _SCALAR_BYTES[item], what)
            elif item in (_STRING, _ARRAY):
                n = self.count(f"array {what}", 8 if item == _STRING else 12)
                for _ in range(n):
                    self.value(item, what, depth + 1)
            else:
                raise self.bad(f"{what} has arrays of unknown value type {item}")
        else:
            raise self.bad(f"{what} has unknown value type {vtype}")


def check_gguf_header(path: Path) -> None:
    """Refuse (CheckpointError naming the defect) a GGUF whose header lies about its sizes,
    repeats a key or a tensor name, or places a tensor outside the file."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError):  # an empty file cannot be mapped
            buf = f.read()
        try:
            _check(_Walk(path, buf))
        finally:
            if isinstance(buf, mmap.mmap):
                buf.close()


def _check(w: _Walk) -> None:
    import gguf

    w.off = 0
    if bytes(w.buf[w.take(4, "the magic"):4]) != b"GGUF":
        raise w.bad("no GGUF magic at its start")
    version = w.u32("the version")
    if version & 0xFFFF == 0:  # written for the other byte order
        w.end, w.off = ">", 4
        version = w.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        raise w.bad(f"version {version} (readable: {', '.join(map(str, SUPPORTED_VERSIONS))})")
    n_tensors = w.u64("the tensor count")
    n_kv = w.count("the metadata", 8 + 1 + 4)
    alignment = 32
    keys: set[bytes] = set()
    for _ in range(n_kv):
        key = w.string("a metadata key", MAX_KEY_BYTES)
        if key in keys:
            raise w.bad(f"metadata key {key.decode(errors='replace')!r} appears twice")
        keys.add(key)
        name = key.decode(errors="replace")
        vtype = w.u32(f"the type of {name!r}")
        if name == "general.alignment":
            if vtype != _UINT32:
                raise w.bad("general.alignment is not a uint32")
            alignment = w.u32(name)
            if alignment == 0 or alignment & (alignment - 1):
                raise w.bad(f"general.alignment {alignment} is not a power of two")
            continue
        w.value(vtype, f"metadata {name!r}")
    left = w.size - w.off
    if n_tensors * (8 + 4 + 4 + 8) > left:
        raise w.bad(f"the header claims {n_tensors:,} tensors but only {left:,} bytes follow")
    tensors = []
    names: set[bytes] = set()
    for _ in range(n_tensors):
        tname = w.string("a tensor name", MAX_KEY_BYTES)
        if tname in names:
            raise w.bad(f"tensor {tname.decode(errors='replace')!r} appears twice")
        names.add(tname)
        label = f"tensor {tname.decode(errors='replace')!r}"
        n_dims = w.u32(f"the rank of {label}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise w.bad(f"{label} has {n_dims} dimensions (1 to {MAX_DIMS} are possible)")
        dims = [w.u64(f"a dimension of {label}") for _ in range(n_dims)]
        ttype = w.u32(f"the type of {label}")
        offset = w.u64(f"the data offset of {label}")
        tensors.append((label, dims, ttype, offset))
    data_start = -(-w.off // alignment) * alignment
    for label, dims, ttype, offset in tensors:
        try:
            block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(ttype)]
        except (ValueError, KeyError):
            raise w.bad(f"{label} has unknown tensor type {ttype}") from None
        n = 1
        for d in dims:
            n *= d
        if dims[0] % block:
            raise w.bad(f"{label}: rows of {dims[0]} are not whole blocks of {block}")
        n_bytes = n // block * type_size
        if data_start + offset + n_bytes > w.size:
            raise w.bad(f"{label} ({n_bytes:,} bytes at offset {offset:,}) lies beyond the end of the file "
                        f"({w.size:,} bytes): it is truncated or corrupt")


__all__ = ["check_gguf_header", "MAX_ARRAY_DEPTH", "MAX_STRING_BYTES"]
