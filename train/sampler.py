"""Deterministic, resumable window sampler over a packed token array.

The array is cut into non-overlapping windows of `seq_len + 1` tokens (inputs and shifted
targets; consecutive windows share one boundary token). Each epoch visits every window once in
an order drawn from (seed, epoch). A global cursor counts windows handed out across all ranks:
step k's global batch is the next `world * per_rank` windows of the order and rank r takes its
own contiguous slice, so ranks always see distinct windows and the whole state is three
integers (seed, epoch, cursor) that a checkpoint stores as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgeprune.base.errors import DataError


@dataclass
class SamplerState:
    seed: int  # order of epoch e is a permutation drawn from (seed, e)
    epoch: int = 0  # epochs completed
    cursor: int = 0  # windows of the current epoch already handed out (all ranks)

    def to_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "cursor": self.cursor}


class WindowSampler:
    def __init__(self, tokens: np.ndarray, seq_len: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.tokens = tokens
        self.seq_len = seq_len
        self.rank, self.world = rank, world
        self.n_windows = (len(tokens) - 1) // seq_len
        if self.n_windows < 1:
            raise DataError(f"{len(tokens)} training tokens are fewer than one window of "
                            f"seq_len={seq_len} + 1; use more text or a smaller --seq-len")
        self.state = SamplerState(seed=seed)
        self._order_epoch = -1
        self._order: np.ndarray | None = None

    def _order_of(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            rng = np.random.default_rng([self.state.seed, epoch])
            self._order = rng.permutation(self.n_windows)
            self._order_epoch = epoch
        return self._order  # type: ignore[return-value]

    def _take_global(self, n: int) -> np.ndarray:
        """The next `n` window indices of the global stream (crossing epochs as needed)."""
        out = []
        while n > 0:
            order = self._order_of(self.state.epoch)
            chunk = order[self.state.cursor: self.state.cursor + n]
            out.append(chunk)
            n -= len(chunk)
            self.state.cursor += len(chunk)
            if self.state.cursor >= self.n_windows:
                self.state.epoch += 1
                self.state.cursor = 0
        return np.concatenate(out)

    def next_batch(self, per_rank: int) -> torch.Tensor:
        """(per_rank, seq_len + 1) int64 windows for this rank; advances the global cursor."""
        idx = self._take_global(per_rank * self.world)
        mine = idx[self.rank * per_rank:(self.rank + 1) * per_rank]
        starts = mine.astype(np.int64) * self.seq_len
        rows = [np.asarray(self.tokens[s: s + self.seq_len + 1], dtype=np.int64) for s in starts]
        return torch.from_numpy(np.stack(rows))  # (per_rank, seq_len + 1)

    def state_dict(self) -> dict[str, int]:
        return self.state.to_dict()

    def load_state_dict(self, d: dict[str, int]) -> None:
        self.state = SamplerState(seed=int(d["seed"]), epoch=int(d["epoch"]), cursor=int(d["cursor"]))
        self._order_epoch = -1


def fixed_windows(tokens: np.ndarray, seq_len: int, n: int) -> torch.Tensor:
    """Up to `n` evenly spaced (seq_len + 1)-token windows: the fixed held-out evaluation set."""
    total = (len(tokens) - 1) // seq_len
    if total < 1:
        raise DataError(f"{len(tokens)} held-out tokens are fewer than one window of seq_len={seq_len} + 1; "
                        f"use more data, a larger --valid-fraction or a smaller --seq-len")
    picks = np.linspace(0, total - 1, num=min(n, total)).round().astype(np.int64)
    rows = [np.asarray(tokens[s * seq_len: s * seq_len + seq_len + 1], dtype=np.int64) for s in picks]
    return torch.from_numpy(np.stack(rows))
