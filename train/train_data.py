"""Training data: a packed token array split into train / held-out, with an identity.

Text sources go through the data layer (`edgeprune.data.token_file`: tokenized once, cached,
memory-mapped); tests and library callers may hand in a token array directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from edgeprune.errors import DataError, TrainError
from edgeprune.hashing import array_digest


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
    from edgeprune.data import split_tokens

    tokens = np.asarray(tokens) if not isinstance(tokens, np.ndarray) else tokens
    if tokens.ndim != 1 or len(tokens) == 0:
        raise DataError(f"training tokens must be a non-empty 1-D array, got shape {tokens.shape}")
    train, valid = split_tokens(tokens, valid_fraction)
    return TrainData(train=train, valid=valid, fingerprint=tokens_fingerprint(tokens),
                     tokenizer_fingerprint=tokenizer_fingerprint, vocab_size=vocab_size)


def load_data(source: Union[str, os.PathLike, None], tokenizer_dir: Union[str, os.PathLike, None],
              valid_fraction: float = 0.05, progress: bool = True) -> TrainData:
    """Tokenize (once, cached) a text / jsonl / parquet source or a `hf:` dataset name."""
    from edgeprune.data import is_hf_source, load_tokenizer, token_file

    if source is None or str(source).strip() == "":
        raise TrainError("no training data: pass --data PATH (text, jsonl, parquet, a folder of them) "
                         "or --data hf:NAME")
    if not is_hf_source(str(source)) and not Path(source).expanduser().exists():
        raise TrainError(f"training data {str(source)!r} does not exist")
    if tokenizer_dir is None:
        raise TrainError("no tokenizer: the model directory has no tokenizer.json; pass --tokenizer DIR")
    tok = load_tokenizer(tokenizer_dir)
    tokens = token_file(source, tok, progress=progress)
    return from_tokens(tokens, valid_fraction, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)
