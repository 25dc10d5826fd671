"""Importance scores: pure functions, one score per prunable unit (docs/DESIGN.md §4).

A *unit* is a contiguous block of `unit_size` indices along one dimension of a tensor: a head
(head_dim rows of q_proj), an MLP channel (one row of gate_proj), a hidden channel. Coupled
weights (q rows + o columns of one head, gate/up rows + down column of one channel) are scored by
summing each tensor's per-unit score. Higher score = more important = kept.

Only `taylor` needs gradients; it takes them as an argument (calibration computes them), so
every function here is side-effect free and runs under no_grad.
"""

from __future__ import annotations

from typing import Sequence

import torch


def _per_unit(t: torch.Tensor, dim: int, unit_size: int) -> torch.Tensor:
    """Sum a non-negative tensor over everything except `dim`, then over blocks of
    `unit_size` along it. (…, n*unit_size, …) -> (n,)"""
    t = t.movedim(dim, 0).reshape(t.shape[dim], -1).sum(1)  # (len along dim,)
    if t.numel() % unit_size:
        raise ValueError(f"dimension of {t.numel()} is not a whole number of units of {unit_size}")
    return t.reshape(-1, unit_size).sum(1)


@torch.no_grad()
def magnitude(weights: Sequence[tuple[torch.Tensor, int]], unit_size: int = 1, p: int = 1) -> torch.Tensor:
    """L1 (p=1) or L2 (p=2) norm of each unit over all its coupled weights.
    weights: [(W, dim along which units lie), ...]"""
    total = sum(_per_unit(w.detach().float().abs().pow(p), dim, unit_size) for w, dim in weights)
    return total if p == 1 else total.pow(1.0 / p)


@torch.no_grad()
def taylor(weights_grads: Sequence[tuple[torch.Tensor, torch.Tensor, int]], unit_size: int = 1) -> torch.Tensor:
    """First-order Taylor importance Σ|W ⊙ ∂L/∂W| over a unit's coupled weights: the estimated
    loss change when the unit is zeroed, element-wise (LLM-Pruner "param_first", Adapt-Pruner).
    weights_grads: [(W, dL/dW, dim), ...]"""
    return sum(_per_unit((w.detach().float() * g.float()).abs(), dim, unit_size)
               for w, g, dim in weights_grads)


@torch.no_grad()
def wanda(weight: torch.Tensor, act_norm: torch.Tensor, unit_size: int = 1) -> torch.Tensor:
    """Activation-aware score of input channels (Wanda, Sun et al. 2023): Σ_i |W_ij|·‖X_j‖₂.
    weight: (out, in); act_norm: (in,) the L2 norm of input channel j over calibration tokens."""
    s = (weight.detach().float().abs() * act_norm.float()[None, :])  # (out, in)
    return _per_unit(s, 1, unit_size)


@torch.no_grad()
def fluctuation(weight: torch.Tensor, act_var: torch.Tensor, unit_size: int = 1) -> torch.Tensor:
    """FLAP's fluctuation metric (An et al. 2024): Var(X_j)·‖W_{:,j}‖² for each input channel
    j of an output projection (o_proj, down_proj): how much the channel's output varies across
    calibration samples, i.e. how much a constant (its mean) would lose.
    weight: (out, in); act_var: (in,)."""
    s = act_var.float() * weight.detach().float().pow(2).sum(0)  # (in,)
    return s.reshape(-1, unit_size).sum(1)


@torch.no_grad()
def standardise(scores: torch.Tensor) -> torch.Tensor:
    """(s - mean) / std, so scores of different layer types compare (FLAP)."""
    s = scores.float()
    std = s.std() if s.numel() > 1 else torch.tensor(0.0)
    return (s - s.mean()) / (std if std > 0 else 1.0)


@torch.no_grad()
def layer_importance(x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
    """Adapt-Pruner's layer importance: −mean cosine similarity between a decoder layer's
    input and output hidden states over tokens. A layer that barely changes its input (cos≈1)
    scores ≈ −1 (unimportant). x_in, x_out: (..., hidden) -> scalar"""
    cos = torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (...,)
    return -cos.mean()


@torch.no_grad()
def centre_scale(importance: torch.Tensor) -> torch.Tensor:
    """Î_l: importances centred on their mean and scaled into [−1, 1] (Adapt-Pruner). All
    equal → zeros."""
    c = importance.float() - importance.float().mean()
    m = c.abs().max()
    return c / m if m > 0 else torch.zeros_like(c)


SCORES = {"magnitude": magnitude, "taylor": taylor, "wanda": wanda, "fluctuation": fluctuation}

__all__ = ["magnitude", "taylor", "wanda", "fluctuation", "standardise", "layer_importance",
           "centre_scale", "SCORES"]
