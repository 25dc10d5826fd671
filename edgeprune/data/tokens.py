"""Tokenizers and packed token files: what pruning calibration, training and evaluation read.

- `load_tokenizer(path)`: the tokenizer saved with a model (`tokenizer.json`, used as saved:
  DESIGN §3 — never re-derived from the architecture's default tokenizer class).
- `token_file(source, tokenizer)`: a source (see `edgeprune.data.text_sources`) tokenized once into a
  1-D memory-mapped array of token ids, every document followed by EOS, cached under
  `$EDGEPRUNE_CACHE/tokens` (default `~/.cache/edgeprune`) by content hash + tokenizer fingerprint.
- `split_tokens`, `random_windows`, `calibration_batch`: held-out split and fixed-length windows.
- `embedded_corpus_path()`, `embedded_tokenizer_dir()`: the embedded default (DESIGN §8), text
  every Python installation carries, so the main job needs nothing downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from edgeprune.base.atomic_io import atomic_path, atomic_write_json
from edgeprune.data.embedded import embedded_corpus_path, embedded_tokenizer_dir  # noqa: F401 (API)
from edgeprune.data.text_sources import HF_PREFIX, describe_source, iter_documents, source_key
from edgeprune.base.errors import DataError
from edgeprune.base.hashing import digest
from edgeprune.base.paths import cache_root

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

TOKEN_FORMAT = 1  # bump when the packing rule changes (invalidates every cached token file)
_BATCH_CHARS = 1 << 22  # encode ~4 Mi characters per encode_batch call (parallel in Rust)
_PIECE_CHARS = 1 << 20  # a longer document is encoded in newline-aligned pieces of ~1 Mi chars
_EOS_NAMES = ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>")


# ----- tokenizer -----------------------------------------------------------------------------

def _special_from_config(cfg: dict, key: str) -> Optional[str]:
    value = cfg.get(key)
    if isinstance(value, dict):  # {"content": "<|endoftext|>", ...} (older transformers)
        value = value.get("content")
    return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Tokenizer:
    """A Hugging Face fast tokenizer file, used as saved. Encodes without adding special tokens:
    the packing rule (EOS after each document) is ours, in `token_file`."""

    path: Path  # the tokenizer.json
    fingerprint: str  # sha256 of tokenizer.json (cache keys; "same tokenizer" checks)
    vocab_size: int  # ids in use, added tokens included (a model's embedding may be larger)
    eos_id: Optional[int]
    bos_id: Optional[int]
    _tok: object = field(repr=False, compare=False)  # tokenizers.Tokenizer

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> Optional[int]:
        return self._tok.token_to_id(token)

    @property
    def dtype(self) -> np.dtype:
        """Smallest unsigned dtype that holds every id."""
        return np.dtype(np.uint16) if self.vocab_size <= 65536 else np.dtype(np.uint32)


def _find_tokenizer_json(path: PathLike) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise DataError(f"no tokenizer at {str(path)!r}: expected a directory with tokenizer.json "
                        f"(a Hugging Face fast tokenizer) or the tokenizer.json file itself")
    return p


def load_tokenizer(path: PathLike) -> Tokenizer:
    """The tokenizer in a checkpoint directory (or a directory / path holding tokenizer.json).
    Special tokens come from tokenizer_config.json / special_tokens_map.json beside it, falling
    back to the usual end-of-text names in the vocabulary."""
    from tokenizers import Tokenizer as HFTokenizer

    tj = _find_tokenizer_json(path)
    raw = tj.read_bytes()
    try:
        tok = HFTokenizer.from_str(raw.decode("utf-8"))
    except Exception as e:  # tokenizers raises a bare Exception for malformed files
        raise DataError(f"{tj} is not a readable tokenizer.json ({str(e)[:200]})") from None
    cfg: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # later file wins
        f = tj.parent / name
        if f.is_file():
            try:
                cfg.update({k: v for k, v in json.loads(f.read_text()).items() if v is not None})
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
                log.warning("ignoring unreadable %s", f)

    def special(key: str, fallback: Sequence[str]) -> Optional[int]:
        name = _special_from_config(cfg, key)
        if name is not None and tok.token_to_id(name) is not None:
            return tok.token_to_id(name)
        return next((tok.token_to_id(n) for n in fallback if tok.token_to_id(n) is not None), None)

    eos = special("eos_token", _EOS_NAMES)
    bos = special("bos_token", ("<s>", "<|begin_of_text|>"))
    return Tokenizer(path=tj, fingerprint=digest(raw),
                     vocab_size=tok.get_vocab_size(with_added_tokens=True), eos_id=eos, bos_id=bos,
                     _tok=tok)


def as_tokenizer(tokenizer: Union[Tokenizer, PathLike]) -> Tokenizer:
    return tokenizer if isinstance(tokenizer, Tokenizer) else load_tokenizer(tokenizer)


# ----- token files -----------------------------------------------------------------------------

def _pieces(doc: str) -> Iterator[str]:
    """A document cut at newlines into pieces of about _PIECE_CHARS (so one huge document
    is still encoded in parallel batches and bounded memory)."""
    start = 0
    while len(doc) - start > _PIECE_CHARS:
        cut = doc.rfind("\n", start + _PIECE_CHARS // 2, start + _PIECE_CHARS)
        cut = start + _PIECE_CHARS if cut < 0 else cut + 1
        yield doc[start:cut]
        start = cut
    yield doc[start:]


def _encode_stream(docs: Iterable[str], tok: Tokenizer) -> Iterator[tuple[np.ndarray, int]]:
    """(token ids, number of documents finished) per batch of ~_BATCH_CHARS characters."""
    batch: list[str] = []
    ends: list[bool] = []  # piece i ends its document -> EOS after it
    chars = 0

    def flush():
        ids: list[int] = []
        for piece_ids, is_end in zip(tok.encode_batch(batch), ends):
            ids.extend(piece_ids)
            if is_end and tok.eos_id is not None:
                ids.append(tok.eos_id)
        return np.asarray(ids, dtype=tok.dtype), sum(ends)

    for doc in docs:
        pieces = list(_pieces(doc))
        for j, piece in enumerate(pieces):
            batch.append(piece)
            ends.append(j == len(pieces) - 1)
            chars += len(piece)
        if chars >= _BATCH_CHARS:
            yield flush()
            batch, ends, chars = [], [], 0
    if batch:
        yield flush()


def token_cache_paths(source: PathLike, tok: Tokenizer, cache_dir: Optional[PathLike] = None) -> tuple[Path, Path]:
    """(token file, its JSON sidecar) for `source` under `tok` — keyed by content, not path."""
    key = digest(f"v{TOKEN_FORMAT}\0{tok.fingerprint}\0{source_key(source)}", n=24)
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "tokens"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{key}.{tok.dtype.name}", root / f"{key}.json"


def _open_tokens(bin_path: Path, meta: dict) -> np.memmap:
    return np.memmap(bin_path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(int(meta["n_tokens"]),))


def _content_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            h.update(block)
    return h.hexdigest()


def _cache_entry(bin_path: Path, meta_path: Path, tok: Tokenizer) -> tuple[dict, Optional[str]]:
    """(sidecar, why the entry cannot be trusted or None). A cache entry is never trusted blindly:
    its sidecar's schema, the binary's size and the sha256 of its bytes are checked, so a
    same-size corruption is re-tokenized rather than pruning or training on other tokens."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return {}, "its sidecar is not readable JSON"
    if not isinstance(meta, dict):
        return {}, f"its sidecar holds a JSON {type(meta).__name__}"
    if meta.get("dtype") != tok.dtype.name or isinstance(meta.get("n_tokens"), bool) \
            or not isinstance(meta.get("n_tokens"), int) or meta["n_tokens"] < 0:
        return meta, "its sidecar's dtype or token count is not this tokenizer's"
    if bin_path.stat().st_size != meta["n_tokens"] * tok.dtype.itemsize:
        return meta, f"{bin_path.stat().st_size} bytes where {meta['n_tokens']} tokens were written"
    if not isinstance(meta.get("sha256"), str):
        return meta, "its sidecar records no content hash"
    if _content_sha256(bin_path) != meta["sha256"]:
        return meta, "its bytes differ from the ones written (sha256)"
    return meta, None


def token_file(source: PathLike, tokenizer: Union[Tokenizer, PathLike],
               cache_dir: Optional[PathLike] = None, progress: bool = True) -> np.memmap:
    """All documents of `source` tokenized into one read-only memory-mapped 1-D array
    (uint16 when the vocabulary fits, else uint32), each document followed by EOS.

    Tokenized once: the array lives at `cache_dir` (default `$EDGEPRUNE_CACHE/tokens`) under a key of
    the source's content hash and the tokenizer's fingerprint; the binary and then its JSON
    sidecar are written through temporary files and renamed, so a crash never leaves a partial
    file that a later call would trust (the sidecar is the completion marker)."""
    tok = as_tokenizer(tokenizer)
    if tok.eos_id is None:
        log.warning("tokenizer %s has no EOS token: documents are packed without a separator", tok.path)
    bin_path, meta_path = token_cache_paths(source, tok, cache_dir)
    if meta_path.is_file() and bin_path.is_file():
        meta, problem = _cache_entry(bin_path, meta_path, tok)
        if problem is None:
            log.debug("token cache hit %s", bin_path)
            return _open_tokens(bin_path, meta)
        log.warning("token cache %s fails its content check (%s): re-tokenizing %s", bin_path, problem,
                    describe_source(source))

    t0 = time.perf_counter()
    n_tokens = n_docs = 0
    bar = None
    if progress:
        from edgeprune.base.progress import progress_bar

        bar = progress_bar(desc=f"tokenize {Path(describe_source(source)).name}", unit=" tok", unit_scale=True)
    try:
        content = hashlib.sha256()
        with atomic_path(bin_path) as tmp, open(tmp, "wb") as out:
            for ids, docs in _encode_stream(iter_documents(source), tok):
                ids.tofile(out)
                content.update(ids.tobytes())
                n_tokens += ids.size
                n_docs += docs
                if bar is not None:
                    bar.update(ids.size)
            if n_tokens == 0:  # raised inside: the empty temporary is removed, nothing cached
                raise DataError(f"data source {describe_source(source)} holds no text")
    finally:
        if bar is not None:
            bar.close()
    meta = {"source": describe_source(source), "n_tokens": n_tokens, "n_docs": n_docs,
            "dtype": tok.dtype.name, "tokenizer": str(tok.path), "tokenizer_fingerprint": tok.fingerprint,
            "eos_id": tok.eos_id, "format": TOKEN_FORMAT, "sha256": content.hexdigest(),
            "seconds": round(time.perf_counter() - t0, 2)}
    atomic_write_json(meta_path, meta)
    log.info("tokenized %s: %d documents, %d tokens in %.1f s", describe_source(source), n_docs,
             n_tokens, meta["seconds"])
    return _open_tokens(bin_path, meta)


# ----- splits and windows ------------------------------------------------------------------------

def split_tokens(tokens: np.ndarray, valid_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid): the last `valid_fraction` of the tokens is held out. Deterministic and
    view-only (no copy of a memory map)."""
    if not 0.0 < valid_fraction < 1.0:
        raise DataError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    n = int(len(tokens))
    n_valid = int(round(n * valid_fraction))
    if n_valid < 1 or n - n_valid < 1:
        raise DataError(f"{n} tokens are too few to hold out {valid_fraction:.0%} for validation")
    return tokens[: n - n_valid], tokens[n - n_valid:]


def random_windows(tokens: np.ndarray, n: int, seq_len: int, seed: int) -> torch.Tensor:
    """`n` windows of `seq_len` consecutive tokens at uniformly drawn offsets, as a
    torch.LongTensor (n, seq_len); the same for the same (tokens, n, seq_len, seed)."""
    import torch

    if n < 1 or seq_len < 1:
        raise DataError(f"need n >= 1 and seq_len >= 1 windows, got n={n}, seq_len={seq_len}")
    if len(tokens) < seq_len:
        raise DataError(f"{len(tokens)} tokens are fewer than one window of seq_len={seq_len}; "
                        f"use more text or a shorter --seq-len")
    starts = np.random.default_rng(seed).integers(0, len(tokens) - seq_len + 1, size=n)
    windows = np.stack([np.asarray(tokens[s: s + seq_len], dtype=np.int64) for s in starts])  # (n, seq_len)
    return torch.from_numpy(windows)


def calibration_batch(source: Union[PathLike, np.ndarray], tokenizer: Union[Tokenizer, PathLike, None] = None,
                      n_samples: int = 32, seq_len: int = 128, seed: int = 0,
                      valid_fraction: float = 0.05) -> torch.Tensor:
    """Calibration windows for pruning scores, drawn from the TRAIN split only (so a pruned
    model's held-out perplexity is never measured on text that chose its widths).
    `source` is a data source (needs `tokenizer`) or an already tokenized 1-D array."""
    if isinstance(source, np.ndarray):
        tokens = source
    else:
        if tokenizer is None:
            raise DataError("calibration_batch needs a tokenizer to read a text source")
        tokens = token_file(source, tokenizer, progress=False)
    train, _ = split_tokens(tokens, valid_fraction)
    return random_windows(train, n_samples, seq_len, seed)


def is_hf_source(source: PathLike) -> bool:
    return isinstance(source, str) and source.startswith(HF_PREFIX)
