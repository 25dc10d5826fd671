"""Training data: a packed token array split into train / held-out, with an identity.

Text sources go through the data layer (`edgeprune.data.tokens.token_file`: tokenized once, cached,
memory-mapped); `teacher:N` parts are sampled from the run's teacher first (cached too); tests and
library callers may hand in a token array directly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from edgeprune.base.errors import DataError, TrainError
from edgeprune.base.hashing import array_digest


@dataclass
class TrainData:
    train: np.ndarray  # 1-D token ids the sampler draws windows from
    valid: np.ndarray  # 1-D held-out token ids (validation perplexity)
    fingerprint: str  # identity of the token array (content hash or token-cache key)
    tokenizer_fingerprint: Optional[str] = None  # sha of tokenizer.json when known
    vocab_size: Optional[int] = None  # ids the tokenizer can emit, when known

    def check_vocab(self, model_vocab: int) -> None:
        if self.vocab_size is not None and self.vocab_size > model_vocab:
            raise TrainError(f"the tokenizer emits {self.vocab_size} ids but the model's vocabulary is "
                             f"{model_vocab}; train with the model's own tokenizer")
        if self.vocab_size is None and len(self.train) <= 50_000_000:
            top = int(np.max(self.train)) if len(self.train) else 0
            if top >= model_vocab:
                raise TrainError(f"token id {top} is outside the model's vocabulary of {model_vocab}")


def tokens_fingerprint(tokens: np.ndarray) -> str:
    name = getattr(tokens, "filename", None)
    if name:  # a token-cache memmap: its file name is already a content key
        return "file:" + Path(name).name + f":{len(tokens)}"
    return array_digest(tokens)


def from_tokens(tokens: np.ndarray, valid_fraction: float = 0.05, tokenizer_fingerprint: Optional[str] = None,
                vocab_size: Optional[int] = None) -> TrainData:
    from edgeprune.data.tokens import split_tokens

    tokens = np.asarray(tokens) if not isinstance(tokens, np.ndarray) else tokens
    if tokens.ndim != 1 or len(tokens) == 0:
        raise DataError(f"training tokens must be a non-empty 1-D array, got shape {tokens.shape}")
    train, valid = split_tokens(tokens, valid_fraction)
    return TrainData(train=train, valid=valid, fingerprint=tokens_fingerprint(tokens),
                     tokenizer_fingerprint=tokenizer_fingerprint, vocab_size=vocab_size)


def load_data(source: Union[str, os.PathLike, None], tokenizer_dir: Union[str, os.PathLike, None],
              valid_fraction: float = 0.05, progress: bool = True, teacher: Union[str, os.PathLike, None] = None,
              sampling: Optional[dict[str, Any]] = None) -> TrainData:
    """Tokenize (once, cached) a text / jsonl / parquet source, a `hf:` dataset name, `teacher:N`
    (N tokens sampled from `teacher`, cached: train/teacher_text.py; `sampling` holds its
    settings, e.g. temperature, top_p, device) or a comma-separated mix of them."""
    from edgeprune.data.tokens import load_tokenizer, token_file
    from edgeprune.data.text_sources import source_problem

    if source is None or str(source).strip() == "":
        raise TrainError("no training data: pass --data PATH (text, jsonl, parquet, a folder of them), "
                         "--data hf:NAME or, with a teacher, --data teacher:N")
    problem = source_problem(source)
    if problem is not None:
        raise TrainError(f"training {problem}")
    if tokenizer_dir is None:
        raise TrainError("no tokenizer: the model directory has no tokenizer.json; pass --tokenizer DIR")
    tok = load_tokenizer(tokenizer_dir)
    resolved = resolve_data(source, teacher, sampling, progress)
    tokens = token_file(resolved, tok, progress=progress)
    return from_tokens(tokens, valid_fraction, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)


def resolve_data(source: Union[str, os.PathLike], teacher: Union[str, os.PathLike, None] = None,
                 sampling: Optional[dict[str, Any]] = None, progress: bool = True) -> str:
    """`source` with its `teacher:N` parts sampled (or found in the cache): a source every reader takes."""
    from edgeprune.train.teacher_text import resolve_teacher_sources

    return resolve_teacher_sources(source, teacher, progress=progress, **(sampling or {}))


def default_teacher_data(tokens: int, valid_fraction: float = 0.05) -> str:
    """`teacher:N` for a run of `tokens` training tokens with no --data: enough samples that the
    training split holds `tokens` (one pass) beside the held-out fraction."""
    return f"teacher:{math.ceil(tokens / (1.0 - valid_fraction))}"
