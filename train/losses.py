"""Training losses: next-token cross-entropy and knowledge distillation.

KD follows Hinton et al. (2015): KL(p_teacher || p_student) between temperature-softened
distributions, multiplied by T² so its gradient scale does not shrink with the temperature,
mixed with the LM loss: loss = (1 - α)·CE + α·T²·KL. Both terms are means over target tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE. logits: (B, T, V) predicting targets: (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · mean over tokens of KL(softmax(t/T) || softmax(s/T)). Both (B, T, V); the teacher may
    have a larger embedding (padded vocabulary): only the student's ids are compared."""
    v = student_logits.shape[-1]
    s = F.log_softmax(student_logits.float().flatten(0, 1) / temperature, dim=-1)  # (N, V)
    t = F.log_softmax(teacher_logits[..., :v].float().flatten(0, 1) / temperature, dim=-1)  # (N, V)
    kl = F.kl_div(s, t, log_target=True, reduction="batchmean")  # sum_v p_t (log p_t - log p_s), / N
    return kl * temperature ** 2


def mixed_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor | None,
               alpha: float, temperature: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss to backprop, detached parts for the log: kept as tensors so CUDA never syncs
    per micro-batch)."""
    ce = lm_loss(student_logits, targets)
    if teacher_logits is None or alpha == 0:
        return ce, {"ce": ce.detach()}
    kd = kd_loss(student_logits, teacher_logits, temperature)
    return (1 - alpha) * ce + alpha * kd, {"ce": ce.detach(), "kd": kd.detach()}
