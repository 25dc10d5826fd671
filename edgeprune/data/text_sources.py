"""Where text comes from: local files, directories of them, or a `datasets` name.

A *source* is one of
- a `.txt` file (or `.txt.xz`): documents separated by a line holding only a form feed
  (`"\\n\\f\\n"`, the convention of shared/refcorpus and of our embedded corpus); a file without
  form feeds is one document;
- a `.jsonl` file (`.jsonl.xz` too): one JSON object per line, the document in field `"text"`;
- a `.parquet` file: the documents in column `"text"`;
- a directory: every file above inside it (recursively, sorted by relative path);
- `hf:NAME[:SPLIT]`: a `datasets` dataset (column `"text"`, split `train` by default), which needs
  the dataset in the local `datasets` cache or a network;
- `teacher:N` (N like 20M, 500K): N tokens of text sampled from the teacher of the run
  (`edgeprune.train.teacher_text`); the verb that has a teacher resolves it into the cached folder of
  samples before anything reads it;
- a *mix*: sources joined by commas (`corpus.txt,teacher:5M`), read one after the other; a mix is
  resolved with its teacher samples first, so the held-out tail of the token stream is the user's
  own text.

`iter_documents` streams documents (a 190 MB .txt.xz is never held whole in memory) and
`source_key` hashes the content, so a cache keyed by it is invalidated when the text changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import lzma
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional, Union

from edgeprune.base.errors import DataError
from edgeprune.base.hashing import digest, file_sha256

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

DOC_SEPARATOR = "\n\f\n"  # one form-feed line between documents
TEXT_SUFFIXES = (".txt", ".txt.xz", ".jsonl", ".jsonl.xz", ".parquet")
_READ_CHARS = 1 << 22  # stream text files 4 Mi characters at a time
# One document is held whole while it is read: a book is ~1 Mi characters, so a "document" of
# 16 Mi without a separator (or a JSON line that long) is not text; it is cut (.txt, said) or
# refused (.jsonl), never read whole into memory.
DOC_MAX_CHARS = 1 << 24
# A file whose bytes are nearly all holes (2 GB long, a few KB on disk) is not text, whatever its
# name: refused before reading. The share is far below what any compressing filesystem reaches.
SPARSE_MIN_BYTES, SPARSE_SHARE = 64 << 20, 1 / 64
HF_PREFIX = "hf:"
TEACHER_PREFIX = "teacher:"
MIX_SEPARATOR = ","
_COUNT_SUFFIXES = {"k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "b": 10 ** 9}


# ----- naming: mixes and teacher samples ---------------------------------------------------------

def split_sources(data: PathLike) -> list[str]:
    """The sources a --data value names: one, or the comma-separated parts of a mix (a path that
    exists is one source even when its name holds a comma)."""
    text = str(data)
    if MIX_SEPARATOR not in text or Path(text).expanduser().exists():
        return [text]
    return [part.strip() for part in text.split(MIX_SEPARATOR) if part.strip()]


def join_sources(parts: list[str]) -> str:
    return MIX_SEPARATOR.join(str(p) for p in parts)


def is_mix(data: PathLike) -> bool:
    return len(split_sources(data)) > 1


def is_teacher_source(source: PathLike) -> bool:
    return isinstance(source, str) and source.startswith(TEACHER_PREFIX)


def has_teacher_source(data: PathLike) -> bool:
    return any(is_teacher_source(p) for p in split_sources(data))


def teacher_source_tokens(source: str) -> int:
    """N of `teacher:N` (20M, 500K, 2_000_000, 1.5e6), or a DataError saying what is expected."""
    text = source[len(TEACHER_PREFIX):].strip().replace("_", "")
    mult = _COUNT_SUFFIXES.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if mult != 1 else text) * mult
    except ValueError:
        value = float("nan")
    if not (value == value and 1 <= value < float("inf")):
        raise DataError(f"{source!r}: expected teacher:N with N a token count >= 1 (e.g. teacher:20M)")
    return int(round(value))


def source_problem(data: PathLike) -> Optional[str]:
    """One line saying what is wrong with a --data value before any work, or None."""
    parts = split_sources(data)
    if not parts:
        return f"data {str(data)!r} names no source"
    for part in parts:
        if is_teacher_source(part):
            try:
                teacher_source_tokens(part)
            except DataError as e:
                return str(e)
        elif not part.startswith(HF_PREFIX):
            path = Path(part).expanduser()
            if not path.exists():
                return f"data {part!r} does not exist"
            try:
                source_files(path)  # a folder's files too: no text in it, or a sparse one, is said now
            except DataError as e:
                return str(e)
    return None


def regular_file_problem(path: PathLike) -> Optional[str]:
    """Why `path` cannot be read as a data file (it is a device, a FIFO, a socket, or a link to
    one), or None for a regular file. Checked before opening: a FIFO blocks on open until a writer
    comes and /dev/zero never ends, whatever the name's suffix says."""
    p = Path(path).expanduser()
    try:
        mode = os.stat(p).st_mode  # follows links: a link to a regular file is fine
    except OSError as e:
        return f"data {str(path)!r} cannot be read ({e.strerror})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a folder" if stat.S_ISDIR(mode) else "a special file")
    link = f" (a link to {os.path.realpath(p)})" if p.is_symlink() else ""
    return f"data {str(path)!r} is not a regular file: it is {kind}{link}; pass a text file or a folder of them"


def sparse_problem(path: Path) -> Optional[str]:
    """Why `path` is not text by its size (a large file nearly all holes), or None."""
    st = os.stat(path)
    on_disk = getattr(st, "st_blocks", None)
    if on_disk is None or st.st_size < SPARSE_MIN_BYTES or on_disk * 512 >= st.st_size * SPARSE_SHARE:
        return None
    return (f"data {str(path)!r} is {st.st_size:,} bytes long but {on_disk * 512:,} bytes on disk (a sparse "
            "file, mostly holes): not text; nothing was read")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for s in sorted(TEXT_SUFFIXES, key=len, reverse=True):
        if name.endswith(s):
            return s
    return path.suffix.lower()


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".xz"):
        return lzma.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "rt", encoding="utf-8", errors="replace")  # universal newlines: \r\n -> \n


def source_files(source: PathLike) -> list[Path]:
    """The files a local source stands for (one, or a directory's sorted text files)."""
    p = Path(source).expanduser()
    if not p.exists():
        raise DataError(f"data source {str(source)!r} does not exist; pass a .txt/.txt.xz/.jsonl/"
                        f".parquet file, a directory of them, or hf:NAME[:SPLIT]")
    if p.is_dir():
        files = sorted((f for f in p.rglob("*") if f.is_file() and _suffix(f) in TEXT_SUFFIXES),
                       key=lambda f: f.relative_to(p).as_posix())
        if not files:
            raise DataError(f"directory {p} holds no {'/'.join(TEXT_SUFFIXES)} files")
        problem = next((x for x in map(sparse_problem, files) if x), None)
        if problem is not None:
            raise DataError(problem)
        return files
    problem = regular_file_problem(p) or sparse_problem(p)
    if problem is not None:
        raise DataError(problem)
    if _suffix(p) not in TEXT_SUFFIXES:
        raise DataError(f"{p}: unsupported data file type {p.suffix!r}; "
                        f"use one of {', '.join(TEXT_SUFFIXES)}")
    return [p]


# ----- reading -------------------------------------------------------------------------------

def _iter_txt(path: Path) -> Iterator[str]:
    """Documents of a text file, split on DOC_SEPARATOR while streaming (a separator is only
    searched for in newly read text, so a file without any stays linear-time)."""
    pending = ""
    with _open_text(path) as f:
        while True:
            chunk = f.read(_READ_CHARS)
            if not chunk:
                break
            start = max(0, len(pending) - len(DOC_SEPARATOR) + 1)
            pending += chunk
            if pending.find(DOC_SEPARATOR, start) < 0:
                if len(pending) > DOC_MAX_CHARS:  # cut: memory stays bounded whatever the file
                    log.warning("%s: a document runs past %d characters without a separator; it is cut there",
                                path, DOC_MAX_CHARS)
                    yield pending
                    pending = ""
                continue
            *docs, pending = pending.split(DOC_SEPARATOR)
            yield from docs
    yield pending


def _iter_jsonl(path: Path) -> Iterator[str]:
    with _open_text(path) as f:
        for lineno, line in enumerate(iter(lambda: f.readline(DOC_MAX_CHARS + 1), ""), 1):
            if len(line) > DOC_MAX_CHARS:
                raise DataError(f"{path}:{lineno}: a line longer than {DOC_MAX_CHARS} characters is not a JSON "
                                "line of text")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not a JSON line ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{lineno}: each JSON line needs a string field \"text\"")
            yield row["text"]


def _iter_parquet(path: Path) -> Iterator[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading .parquet needs pyarrow: pip install 'edgeprune[data]'") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path} is not a readable parquet file ({e})") from None
    if "text" not in pf.schema_arrow.names:
        raise DataError(f"{path} has no column \"text\" (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(columns=["text"], batch_size=1024):
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield value


def _parse_hf(source: str) -> tuple[str, str]:
    rest = source[len(HF_PREFIX):]
    name, _, split = rest.partition(":")
    if not name:
        raise DataError(f"{source!r}: expected hf:NAME[:SPLIT]")
    return name, split or "train"


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect (False when offline mode is set)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", ""):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _offline(enabled: bool):
    """Make `datasets` / `huggingface_hub` use the local cache only, for the duration."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def load_hf_dataset(source: str) -> datasets.Dataset:
    """The `datasets` Dataset behind `hf:NAME[:SPLIT]`, or a DataError saying why not."""
    name, split = _parse_hf(source)
    try:
        import datasets
    except ImportError:
        raise DataError(f"{source}: needs the `datasets` package: pip install 'edgeprune[data]'") from None
    online = _hub_reachable()
    try:
        with _offline(not online):  # no network: the local cache only, instead of ~20 retries over 26 s
            ds = datasets.load_dataset(name, split=split)
    except Exception as e:  # offline, unknown name, bad split: one line for the user
        why = "the hub is unreachable and it is not in the local cache; " if not online else ""
        raise DataError(f"dataset {name!r} (split {split!r}) could not be loaded ({why}"
                        f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                        f"offline, pass a local .txt/.jsonl/.parquet file instead") from None
    if "text" not in ds.column_names:
        raise DataError(f"dataset {name!r} has no column \"text\" (columns: {', '.join(ds.column_names)})")
    return ds


TEXT_CHECK_CHARS = 65_536  # characters sampled from the start of a source for the binary check
MAX_BAD_FRACTION = 0.2  # warn above this fraction of undecodable / control characters


def bad_char_fraction(text: str) -> float:
    """Fraction of `text` that is U+FFFD (bytes that were not UTF-8) or a control character other
    than the usual whitespace: high for binary or random bytes, ~0 for any real text."""
    if not text:
        return 0.0
    bad = sum(1 for c in text if c == "\ufffd" or (ord(c) < 32 and c not in "\n\r\t\f\v") or c == "\x7f")
    return bad / len(text)


def iter_documents(source: PathLike) -> Iterator[str]:
    """Every document of `source`, in a fixed order (empty documents skipped). Warns once when the
    start of the source looks like binary data rather than text."""
    seen: list[str] = []
    size = 0
    checked = False
    for doc in _iter_documents(source):
        if not checked:
            seen.append(doc[:TEXT_CHECK_CHARS - size])
            size += len(seen[-1])
            if size >= TEXT_CHECK_CHARS:
                _warn_if_binary(source, "".join(seen))
                checked = True
        yield doc
    if not checked:
        _warn_if_binary(source, "".join(seen))


def _warn_if_binary(source: PathLike, sample: str) -> None:
    frac = bad_char_fraction(sample)
    if frac > MAX_BAD_FRACTION:
        log.warning("%s does not look like text: %.0f%% of its first %d characters are undecodable bytes "
                    "or control characters (is it a binary file?)", source, 100 * frac, len(sample))


def _unresolved(source: str) -> DataError:
    return DataError(f"{source!r} is text sampled from a teacher: it needs a run with a teacher "
                     f"(train --teacher, or ship's model) to sample it")


def _iter_documents(source: PathLike) -> Iterator[str]:
    if is_mix(source):
        for part in split_sources(source):
            yield from _iter_documents(part)
        return
    if is_teacher_source(source):
        raise _unresolved(str(source))
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        for row in load_hf_dataset(source):
            if row["text"]:
                yield row["text"]
        return
    readers = {".txt": _iter_txt, ".txt.xz": _iter_txt, ".jsonl": _iter_jsonl,
               ".jsonl.xz": _iter_jsonl, ".parquet": _iter_parquet}
    for path in source_files(source):
        try:
            for doc in readers[_suffix(path)](path):
                if doc.strip():
                    yield doc
        except (OSError, lzma.LZMAError, EOFError) as e:
            raise DataError(f"{path} could not be read ({e})") from None


# ----- identity --------------------------------------------------------------------------------

def source_key(source: PathLike) -> str:
    """A hash of the source's *content* (not its path or mtime): the cache key's text half."""
    if is_mix(source):
        return digest(*(f"{source_key(part)}\n" for part in split_sources(source)), n=None)
    if is_teacher_source(source):
        raise _unresolved(str(source))
    if isinstance(source, str) and source.startswith(HF_PREFIX):
        ds = load_hf_dataset(source)
        return digest(f"{source}\0{getattr(ds, '_fingerprint', '')}", n=None)
    root = Path(source).expanduser()

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix() if root.is_dir() else _suffix(path)

    return digest(*(f"{rel(path)}\0{file_sha256(path)}\n" for path in source_files(source)), n=None)


def describe_source(source: PathLike) -> str:
    if is_mix(source):
        return " + ".join(describe_source(part) for part in split_sources(source))
    if is_teacher_source(source):
        return str(source)
    return str(source) if isinstance(source, str) and source.startswith(HF_PREFIX) else str(Path(source).expanduser())
