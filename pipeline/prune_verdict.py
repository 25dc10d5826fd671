"""A quality verdict after a cut, and the next step with its cost on this machine.

After `prune` the user holds a model whose quality they cannot see: the verdict measures the
held-out loss of the original and of the pruned model on windows of the user's own text that the
calibration did not draw, says in plain words what the gap means, and names the command that
closes it with its estimated time, from a timed training step of the pruned model here.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

# perplexity ratio pruned / original -> what it means; the first bound that holds wins
VERDICTS = ((1.10, "close to the original"),
            (1.50, "usable; recovery training closes most of the gap"),
            (3.00, "degraded: recover it before shipping"),
            (math.inf, "unusable without recovery"))
RECOVERY_TOKENS = 2_000_000  # the recovery the next step suggests (train's recover recipe's order)


VERDICT_WINDOWS = 8  # held-out windows the verdict measures both models on
VERDICT_SEED_OFFSET = 7919  # the verdict's windows are drawn with another seed than calibration's


def verdict_windows(data: Any, tokenizer: Any, seq_len: int, seed: int) -> torch.Tensor:
    """The windows the verdict is measured on (the prune verb's and ship's prune stage alike):
    `data` as calibration reads it, another seed than calibration's `seed`."""
    from edgeprune.data.tokens import calibration_batch

    return calibration_batch(data, tokenizer, n_samples=VERDICT_WINDOWS, seq_len=seq_len,
                             seed=seed + VERDICT_SEED_OFFSET)


def verdict(ppl_ratio: float) -> str:
    """Plain words for a perplexity ratio (pruned / original)."""
    for bound, words in VERDICTS:
        if ppl_ratio <= bound:
            return words
    return VERDICTS[-1][1]


@torch.no_grad()
def held_out_loss(model: Any, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token loss of `model` on `windows` (n, T)."""
    was = model.training
    model.eval()
    total = 0.0
    for i in range(0, windows.shape[0], batch_size):
        ids = windows[i:i + batch_size]
        total += float(model(ids, labels=ids).loss) * ids.shape[0]
    model.train(was)
    return total / windows.shape[0]


def train_tokens_per_s(model: Any, windows: torch.Tensor) -> float:
    """Tokens/s of one distillation step here: the pruned model's forward + backward on one batch,
    timed once, plus the teacher's forward (counted as a third of the student's step)."""
    ids = windows[: min(4, windows.shape[0])]
    was = model.training
    model.train()
    t0 = time.perf_counter()
    model(ids, labels=ids).loss.backward()
    seconds = (time.perf_counter() - t0) * 4 / 3
    model.zero_grad(set_to_none=True)
    model.train(was)
    return ids.numel() / max(seconds, 1e-9)


def human_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def assess(loss_original: float, loss_pruned: float, tokens_per_s: float, *, model: str, pruned: str,
           data: str) -> dict[str, Any]:
    """The verdict record (edgeprune.json "verdict") and its lines."""
    ratio = math.exp(loss_pruned - loss_original)
    words = verdict(ratio)
    eta = RECOVERY_TOKENS / max(tokens_per_s, 1e-9)
    command = (f"edgeprune train {pruned} --data {data} --teacher {model} --tokens {RECOVERY_TOKENS // 1_000_000}M "
               f"--out {pruned.rstrip('/')}-recovered")
    return {"loss_original": round(loss_original, 4), "loss_pruned": round(loss_pruned, 4),
            "perplexity_ratio": round(ratio, 3), "verdict": words, "next": command,
            "next_tokens_per_s": round(tokens_per_s, 1), "next_eta_s": round(eta)}


def verdict_lines(rec: dict[str, Any]) -> str:
    return (f"quality: held-out perplexity ×{rec['perplexity_ratio']:.2f} the original's "
            f"(loss {rec['loss_original']:.3f} → {rec['loss_pruned']:.3f}): {rec['verdict']}\n"
            f"next: {rec['next']}   (≈ {human_duration(rec['next_eta_s'])} on this machine at "
            f"{rec['next_tokens_per_s']:.0f} tokens/s; a GPU takes minutes)")


__all__ = ["verdict", "verdict_windows", "held_out_loss", "train_tokens_per_s", "assess", "verdict_lines", "VERDICTS"]
