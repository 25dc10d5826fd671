"""AdamW with decay on matrices only, parameters named (so state survives surgery and resume)."""

from __future__ import annotations

from typing import Any

import torch

from edgeprune.shape.model import EdgeLM
from edgeprune.train.config import TrainConfig
from edgeprune.train.state import optimizer_state_dict


def make_optimizer(model: EdgeLM, cfg: TrainConfig) -> tuple[torch.optim.AdamW, list[str]]:
    """(AdamW, parameter names in the optimizer's own order). Fused on CUDA (one kernel for
    all parameters); decay on >= 2-D tensors only, as nanoGPT."""
    decay, no_decay, names_d, names_n = [], [], [], []
    for name, p in model.named_parameters():  # tied lm_head appears once (as embed_tokens)
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
        (names_d if p.dim() >= 2 else names_n).append(name)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = next(model.parameters()).device.type == "cuda"
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps, fused=fused)
    return opt, names_d + names_n


def named_state(opt: torch.optim.Optimizer, names: list[str]) -> dict[str, torch.Tensor]:
    """"<param name>/<field>" -> tensor, for every parameter with state."""
    params = [p for g in opt.param_groups for p in g["params"]]
    out = {}
    for name, p in zip(names, params):
        for k, v in opt.state.get(p, {}).items():
            if torch.is_tensor(v):
                out[f"{name}/{k}"] = v
    return out


def load_named_state(opt: torch.optim.Optimizer, names: list[str], tensors: dict[str, torch.Tensor]) -> None:
    opt.load_state_dict(optimizer_state_dict(opt, names, tensors))


def sliced_state(tensors: dict[str, torch.Tensor], record: dict[str, list]) -> dict[str, torch.Tensor]:
    """Optimizer moments cut exactly as their weights were: prune/'s CutRecord replayed with its
    public `apply_cuts` (scalars such as `step` kept; state of removed parameters dropped)."""
    from edgeprune.prune import apply_cuts

    out: dict[str, Any] = {}
    for key, t in tensors.items():
        name = key.split("/", 1)[0]
        if name in record and t.dim() > 0:
            cut = apply_cuts(t, record[name])
            if cut is not None:
                out[key] = cut.contiguous()
        else:
            out[key] = t
    return out
