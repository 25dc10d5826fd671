"""Training losses: next-token cross-entropy and knowledge distillation.

KD follows Hinton et al. (2015): KL(p_teacher || p_student) between temperature-softened
distributions, multiplied by T² so its gradient scale does not shrink with the temperature,
mixed with the LM loss: loss = (1 - α)·CE + α·T²·KL. Both terms are means over target tokens.
α = 1 is logit-only distillation (Minitron: best for recovering a pruned model).

The distillation path is one fused, chunked autograd function (`distill_loss`): the (N, V)
logits of student and teacher are never copied whole to fp32 (at 16k tokens × 50k vocabulary
each copy is 3.2 GB); each chunk of tokens is upcast, its loss and its gradient with respect to
the student logits are computed in the forward pass (analytically: ∂CE/∂s = softmax(s) − onehot,
∂(T²·KL)/∂s = T·(softmax(s/T) − softmax(t/T))), and the gradient is kept in the logits' own
dtype for backward, as Liger-Kernel's fused losses do.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

CHUNK_TOKENS = 2048  # tokens upcast at once: (2048, V) fp32 temporaries, a few hundred MB at V = 50k


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE. logits: (B, T, V) predicting targets: (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Reference T² · mean over tokens of KL(softmax(t/T) || softmax(s/T)). Both (B, T, V); the
    teacher may have a larger embedding (padded vocabulary): only the student's ids are compared.
    Materialises fp32 copies of both: tests compare `distill_loss` against it."""
    v = student_logits.shape[-1]
    s = F.log_softmax(student_logits.float().flatten(0, 1) / temperature, dim=-1)  # (N, V)
    t = F.log_softmax(teacher_logits[..., :v].float().flatten(0, 1) / temperature, dim=-1)  # (N, V)
    kl = F.kl_div(s, t, log_target=True, reduction="batchmean")  # sum_v p_t (log p_t - log p_s), / N
    return kl * temperature ** 2


class _DistillLoss(torch.autograd.Function):
    """(1-α)·CE + α·T²·KL over token chunks; returns (loss, ce, kd) with ce / kd detached."""

    @staticmethod
    def forward(ctx, student, teacher, targets, alpha: float, temperature: float, chunk: int):
        n, v = student.shape  # (N, V) student logits, teacher (N, V_teacher), targets (N,)
        grad = torch.empty_like(student) if student.requires_grad else None
        ce_sum = torch.zeros((), dtype=torch.float32, device=student.device)
        kd_sum = torch.zeros((), dtype=torch.float32, device=student.device)
        for i in range(0, n, chunk):
            s = student[i:i + chunk].float()  # (c, V)
            t = teacher[i:i + chunk, :v].float()  # (c, V)
            y = targets[i:i + chunk]  # (c,)
            log_p = F.log_softmax(s, dim=-1)  # (c, V)
            ce_sum += -log_p.gather(1, y[:, None]).sum()
            log_ps = F.log_softmax(s / temperature, dim=-1) if temperature != 1 else log_p
            log_pt = F.log_softmax(t / temperature, dim=-1)
            p_t = log_pt.exp()
            kd_sum += (p_t * (log_pt - log_ps)).sum()
            if grad is not None:
                # d/ds of [(1-α)·CE + α·T²·KL] / N: α·T·(p_s^T − p_t^T)/N + (1-α)·(p_s − onehot)/N
                g = log_ps.exp().sub_(p_t).mul_(alpha * temperature / n)
                if alpha < 1:
                    p = log_p.exp()
                    p[torch.arange(len(y), device=y.device), y] -= 1.0
                    g.add_(p, alpha=(1 - alpha) / n)
                grad[i:i + chunk] = g
        ce = ce_sum / n
        kd = kd_sum / n * temperature ** 2
        loss = (1 - alpha) * ce + alpha * kd
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(ce, kd)
        return loss, ce, kd

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_kd):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None


def distill_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: torch.Tensor,
                 alpha: float, temperature: float, chunk: int = CHUNK_TOKENS
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, ce, kd): loss = (1-α)·CE + α·T²·KL, chunked over tokens. student (B, T, V),
    targets (B, T), teacher (B, T, V_teacher >= V)."""
    s = student_logits.flatten(0, 1)  # (N, V)
    t = teacher_logits.detach().flatten(0, 1)  # (N, V_teacher)
    return _DistillLoss.apply(s, t, targets.flatten(), float(alpha), float(temperature), int(chunk))


def mixed_loss(student_logits: torch.Tensor, targets: torch.Tensor, teacher_logits: Optional[torch.Tensor],
               alpha: float, temperature: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss to backprop, detached parts for the log: kept as tensors so CUDA never syncs
    per micro-batch)."""
    if teacher_logits is None or alpha == 0:
        ce = lm_loss(student_logits, targets)
        return ce, {"ce": ce.detach()}
    loss, ce, kd = distill_loss(student_logits, targets, teacher_logits, alpha, temperature)
    return loss, {"ce": ce, "kd": kd}
