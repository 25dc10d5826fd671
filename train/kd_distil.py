"""Train's distillation step, and the same step as prune's `DistilFn` (prune/training_seam.py).

`window_loss` is the one loss of a training step: the windows hold T+1 tokens, the model reads
the first T and predicts the last T, and the loss is `mixed_loss` at the config's α and T
(recovery's `recover-kd` recipe: logit-only KL at T = 1). The Trainer computes every micro-batch
through it; `TrainKD` runs a few such steps on token windows it is handed, with the config's
AdamW (decay on matrices, betas), schedule and gradient clipping. pipeline/ hands `TrainKD` to a
pruning method that trains while it chooses (the search's finalists), so what the search ranks
is what recovery will do.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from edgeprune.shape.model import EdgeLM
from edgeprune.train.config import TrainConfig
from edgeprune.train.losses import mixed_loss
from edgeprune.train.optim import make_optimizer
from edgeprune.train.schedule import lr_at


def window_loss(student: Any, teacher: Optional[Any], windows: torch.Tensor, cfg: TrainConfig
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss to backprop, its detached parts) of `student` on `windows` (b, T+1): inputs the first
    T tokens, targets the next T; distilled from `teacher` when one is given (no gradient)."""
    x, y = windows[:, :-1], windows[:, 1:]  # (b, T) each
    logits = student(x).logits  # (b, T, V)
    t_logits = None
    if teacher is not None:
        with torch.no_grad():
            t_logits = teacher(x).logits  # (b, T, V_teacher)
    return mixed_loss(logits, y, t_logits, cfg.kd_alpha, cfg.kd_temp)


def kd_config(**overrides: Any) -> TrainConfig:
    """Recovery's distillation settings (the `recover-kd` recipe) as a TrainConfig; `tokens` is a
    placeholder (TrainKD is given its budget per call)."""
    from edgeprune.train.recipes import load_recipe, recovery_recipe

    return TrainConfig(**{"tokens": 1, **load_recipe(recovery_recipe(with_teacher=True)), **overrides})


class TrainKD:
    """prune's `DistilFn` with train's step: one optimizer step per batch it is handed, the config's
    AdamW (decay on matrices, betas), learning-rate schedule over the call's steps (its warmup and
    decay), gradient clipping, and `window_loss` (α and T from the config). Runs where the student
    is, in its dtype."""

    def __init__(self, cfg: Optional[TrainConfig] = None):
        self.cfg = cfg or kd_config()
        c = self.cfg
        self.settings: dict[str, Any] = {"kind": "train-kd", "lr": c.lr, "schedule": c.schedule,
                                         "warmup_frac": c.warmup_frac, "decay_frac": c.decay_frac,
                                         "min_lr_ratio": c.min_lr_ratio, "weight_decay": c.weight_decay,
                                         "betas": [c.beta1, c.beta2], "eps": c.eps, "grad_clip": c.grad_clip,
                                         "kd_alpha": c.kd_alpha, "kd_temp": c.kd_temp}

    def __call__(self, student: EdgeLM, teacher: EdgeLM, batches: Sequence[torch.Tensor], tokens: int
                 ) -> list[float]:
        from edgeprune.prune import distil_schedule

        cfg = self.cfg
        todo = distil_schedule(batches, tokens)
        opt, _ = make_optimizer(student, cfg)
        dev = next(student.parameters()).device
        teacher.eval()
        student.train()
        losses: list[float] = []
        for s, w in enumerate(todo):
            for g in opt.param_groups:
                g["lr"] = lr_at(s, len(todo), cfg.lr, cfg.schedule, cfg.warmup_frac, cfg.decay_frac,
                                cfg.min_lr_ratio)
            loss, _ = window_loss(student, teacher, w.to(dev), cfg)  # w: (b, T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
        student.eval()
        return losses
