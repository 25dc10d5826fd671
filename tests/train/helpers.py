"""Shared bits of the train tests: learnable token streams and small configs."""

from __future__ import annotations

import numpy as np

from edgeprune.train.config import TrainConfig
from edgeprune.train.train_data import TrainData, from_tokens


def pattern_tokens(vocab: int = 256, period: int = 61, repeats: int = 120, seed: int = 0) -> np.ndarray:
    """A random sequence of `period` ids repeated: a model can learn it, so loss must fall."""
    base = np.random.default_rng(seed).integers(0, vocab, size=period)
    return np.tile(base, repeats).astype(np.uint16)


def pattern_data(vocab: int = 256, **kw) -> TrainData:
    return from_tokens(pattern_tokens(vocab, **kw), valid_fraction=0.1)


def small_cfg(steps: int, seq_len: int = 32, micro_batch: int = 4, grad_accum: int = 1, **kw) -> TrainConfig:
    kw.setdefault("progress", False)
    kw.setdefault("eval_every", 0)
    kw.setdefault("log_every", 1)
    kw.setdefault("ckpt_every", 0)
    kw.setdefault("lr", 3e-3)
    return TrainConfig(tokens=steps * seq_len * micro_batch * grad_accum, seq_len=seq_len,
                       micro_batch=micro_batch, grad_accum=grad_accum, **kw)
