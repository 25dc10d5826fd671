"""Perplexity on held-out text: sliding windows, every token scored once.

Windows of `seq_len` input tokens start every `stride` tokens (HF's "perplexity of fixed-length
models" recipe). Target t is the token at position t ≥ 1; a window covering inputs [b, e) predicts
targets b+1 … e, and only targets that no earlier window scored count, so with
`stride == seq_len` the windows are disjoint and with `stride < seq_len` each scored token sees at
least `seq_len - stride` tokens of context. The first token has no prediction and is never
scored. Perplexity = exp(sum of NLL / number of scored tokens).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from edgeprune.base.errors import DataError

if TYPE_CHECKING:
    from edgeprune.data.tokens import Tokenizer

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


@dataclass(frozen=True)
class NLL:
    """Summed negative log-likelihood (nats) over `n_tokens` scored tokens."""

    total: float
    n_tokens: int

    @property
    def mean(self) -> float:
        return self.total / self.n_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean)


def window_plan(n_tokens: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, end, n_new) per window: inputs tokens[begin:end] predict tokens[begin+1:end+1],
    and the last `n_new` of those predictions are scored. Pure function (tested on its own)."""
    if seq_len < 1 or not 1 <= stride <= seq_len:
        raise DataError(f"need 1 <= stride <= seq_len, got stride={stride}, seq_len={seq_len}")
    last = n_tokens - 1  # inputs end at most here (the final token is only a target)
    plan, scored_to, begin = [], 0, 0  # scored_to: inputs [0, scored_to) have been scored
    while scored_to < last:
        end = min(begin + seq_len, last)
        plan.append((begin, end, end - scored_to))
        scored_to = end
        begin += stride
    return plan


@torch.no_grad()
def sequence_nll(model: torch.nn.Module, tokens: Union[np.ndarray, torch.Tensor], seq_len: int = 512,
                 stride: Optional[int] = None, batch_size: int = 4, max_tokens: Optional[int] = None,
                 device: Union[str, torch.device, None] = None,
                 progress: bool = False) -> NLL:
    """Summed NLL of `tokens` (1-D array / tensor of ids) under `model` (an EdgeLM, or any module
    whose `model(ids).logits` is (B, T, vocab)) with the sliding-window rule above."""
    stride = seq_len if stride is None else stride
    ids = torch.as_tensor(np.asarray(tokens[:max_tokens] if max_tokens else tokens, dtype=np.int64))
    if ids.ndim != 1 or ids.numel() < 2:
        raise DataError(f"perplexity needs a 1-D sequence of at least 2 tokens, got shape {tuple(ids.shape)}")
    vocab = getattr(getattr(model, "spec", None), "vocab_size", None)
    if vocab is not None and int(ids.max()) >= vocab:
        raise DataError(f"token id {int(ids.max())} is outside the model's vocabulary of {vocab}: "
                        f"the data was tokenized with a different tokenizer than the model's")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    plan = window_plan(ids.numel(), seq_len, stride)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    bar = None
    if progress:
        from edgeprune.base.progress import progress_bar

        bar = progress_bar(total=len(plan), desc="perplexity", unit="win")
    try:
        # batch windows of equal length (all but possibly the last)
        i = 0
        while i < len(plan):
            length = plan[i][1] - plan[i][0]
            group = [plan[i]]
            while (i + len(group) < len(plan) and len(group) < batch_size
                   and plan[i + len(group)][1] - plan[i + len(group)][0] == length):
                group.append(plan[i + len(group)])
            x = torch.stack([ids[b:e] for b, e, _ in group]).to(device)  # (B, L)
            y = torch.stack([ids[b + 1:e + 1] for b, e, _ in group]).to(device)  # (B, L)
            logits = model(x).logits  # (B, L, vocab)
            for row, (_, _, n_new) in enumerate(group):
                nll = F.cross_entropy(logits[row, -n_new:].float(), y[row, -n_new:], reduction="sum")
                total += float(nll)
                count += n_new
            i += len(group)
            if bar is not None:
                bar.update(len(group))
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return NLL(total, count)


def perplexity(model: torch.nn.Module, tokens: Union[np.ndarray, torch.Tensor], seq_len: int = 512,
               stride: Optional[int] = None, batch_size: int = 4, max_tokens: Optional[int] = None,
               device: Union[str, torch.device, None] = None,
               progress: bool = False) -> float:
    """Sliding-window perplexity of `tokens` under `model` (see the module docstring)."""
    return sequence_nll(model, tokens, seq_len, stride, batch_size, max_tokens, device, progress).perplexity


def heldout_tokens(data_source: PathLike, tokenizer: Tokenizer,
                   valid_fraction: Optional[float] = 0.05) -> np.ndarray:
    """The held-out tokens of a data source: the tail split of its token file, or every token
    when `valid_fraction` is None (a file that is already a validation set)."""
    from edgeprune.data.tokens import split_tokens, token_file

    tokens = token_file(data_source, tokenizer, progress=False)
    return tokens if valid_fraction is None else split_tokens(tokens, valid_fraction)[1]


def evaluate_model(model: torch.nn.Module, tokenizer_dir: PathLike, data_source: Optional[PathLike] = None,
                   seq_len: Optional[int] = None, stride: Optional[int] = None, batch_size: int = 4,
                   max_tokens: Optional[int] = None, valid_fraction: Optional[float] = 0.05,
                   tasks: Sequence[str] = (), task_limit: Optional[int] = None,
                   include_path: Optional[PathLike] = None, device: Union[str, torch.device, None] = None,
                   progress: bool = False) -> dict[str, Any]:
    """Perplexity on held-out text and/or lm-eval tasks for one model: the record `edgeprune eval`,
    `compare` and `ship` report. Keys: n_params, tokenizer_fingerprint, and when `data_source` is
    given perplexity, nll_per_token, n_tokens, seq_len, stride; `tasks` {task: {metric: value}}."""
    from edgeprune.data.tokens import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    spec = getattr(model, "spec", None)
    if spec is not None and tok.vocab_size > spec.vocab_size:
        raise DataError(f"tokenizer {tok.path} has {tok.vocab_size} ids but the model's vocabulary is "
                        f"{spec.vocab_size}: they do not belong together")
    record: dict[str, Any] = {"n_params": spec.n_params if spec is not None else None,
                              "tokenizer_fingerprint": tok.fingerprint}
    if data_source is not None:
        L = resolve_seq_len(model, seq_len)
        tokens = heldout_tokens(data_source, tok, valid_fraction)
        nll = sequence_nll(model, tokens, L, stride, batch_size, max_tokens, device, progress)
        record.update(perplexity=nll.perplexity, nll_per_token=nll.mean, n_tokens=nll.n_tokens,
                      seq_len=L, stride=stride or L)
    if tasks:
        from edgeprune.pipeline.lm_eval_adapter import run_tasks

        record["tasks"] = run_tasks(model, tokenizer_dir, tasks, limit=task_limit,
                                    batch_size=max(1, batch_size), include_path=include_path)
    return record


def resolve_seq_len(model: torch.nn.Module, seq_len: Optional[int]) -> int:
    """`seq_len`, or the model's max_position_embeddings capped at 1024 (CPU-friendly)."""
    if seq_len is not None:
        return seq_len
    max_pos = getattr(getattr(model, "spec", None), "max_position_embeddings", None) or 512
    return min(int(max_pos), 1024)
