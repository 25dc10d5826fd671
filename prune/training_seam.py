"""Where pruning meets training: the callables a pruning method trains through.

prune/ sits below train/ (docs/DESIGN.md, rooms), so it cannot call train's loop; it defines
what it needs instead, and the layer that sees both (pipeline/: the prune verb, ship, the
incremental stage training) hands train's own implementation in:

- `DistilFn`: train a student in place from a teacher on token windows for a token budget and
  return its loss record. The search distils its finalists through it before ranking them, so
  with train's KD step (train/kd_distil.py, `TrainKD`) the proxy is recovery's own loss and
  settings. `PlainDistil` is the default when none is supplied (the Python API without train).
- `StageTrainFn`: train an incremental run's stage `k` and return the model (its checkpoints,
  resume and shared schedule are train's business: pipeline/stage_training.py). No callable: the
  stages only prune.

Pruning-aware training goes the other way (train cuts inside its own loop): it reaches prune's
surgery through prune's public face only (`edgeprune.prune.remove_units` / `apply_cuts`).
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import torch

from edgeprune.shape.model import EdgeLM

StageTrainFn = Callable[[EdgeLM, int], EdgeLM]  # (model, 1-based stage) -> the trained model


class DistilFn(Protocol):
    """Trains `student` in place towards `teacher` on `batches` (token-id tensors of (b, T), one
    optimizer step each, read in order and again from the first) until `tokens` tokens have been
    read; returns one loss per optimizer step. The caller decides the batches, the trainer the
    loss, optimizer and schedule. An optional `settings` attribute (a JSON-able dict) names what
    changes the result: the search's journal keys its scores by it."""

    def __call__(self, student: EdgeLM, teacher: EdgeLM, batches: Sequence[torch.Tensor], tokens: int
                 ) -> list[float]: ...


def token_batches(windows: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`windows` (n, T) as consecutive batches of `batch_size` windows (the last may be smaller)."""
    step = max(1, int(batch_size))
    return [windows[i:i + step] for i in range(0, windows.shape[0], step)]


def distil_schedule(batches: Sequence[torch.Tensor], tokens: int) -> list[torch.Tensor]:
    """The batches a `DistilFn` steps on for a budget of `tokens`: in order, wrapping around, until
    the budget is read (the last step may pass it)."""
    out: list[torch.Tensor] = []
    read = 0
    while batches and read < int(tokens):
        b = batches[len(out) % len(batches)]
        out.append(b)
        read += b.numel()
    return out


class PlainDistil:
    """The default distillation when no trainer is supplied: logit KL(teacher || student) at T = 1
    over every position, AdamW at a constant `lr` with no decay. Train's recovery step (`TrainKD`,
    train/kd_distil.py) adds its schedule, weight decay, betas and gradient clipping."""

    def __init__(self, lr: float = 3e-4):
        self.lr = float(lr)
        self.settings: dict[str, Any] = {"kind": "plain-kl", "lr": self.lr}

    def __call__(self, student: EdgeLM, teacher: EdgeLM, batches: Sequence[torch.Tensor], tokens: int
                 ) -> list[float]:
        opt = torch.optim.AdamW(student.parameters(), lr=self.lr, weight_decay=0.0)
        losses: list[float] = []
        student.train()
        for ids in distil_schedule(batches, tokens):  # (b, T)
            with torch.no_grad():
                t = teacher(ids).logits.float()  # (b, T, V)
            out = student(ids).logits.float()  # (b, T, V)
            kl = torch.nn.functional.kl_div(out.log_softmax(-1), t.log_softmax(-1), log_target=True,
                                            reduction="none").sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            kl.backward()
            opt.step()
            losses.append(float(kl.detach()))
        student.eval()
        return losses


def settings_of(fn: Any) -> Any:
    """What a distillation callable says changes its result (its `settings`), else its name."""
    return getattr(fn, "settings", None) or getattr(fn, "__qualname__", type(fn).__qualname__)
