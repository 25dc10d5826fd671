"""`adapt`: Adapt-Pruner (Pan et al. 2025) — adaptive per-layer sparsity over many small steps.

Before each step, with Î_l the layer importance (−mean cos(x_in, x_out) on the calibration
tokens, measured on the *current* model) centred on its mean and scaled into [−1, 1]:

    s_l ← clip(s_l + Δ − A·Î_l, 0, 0.99)

s_l is layer l's target sparsity relative to its original parameters; Δ is solved (bisection)
so that Σ_l s_l·P_l equals this step's share of the total to remove (step k of K: k/K of it);
A (default 0.02) sets how strongly importance skews the widths. Inside each layer, first-order
Taylor scores (recomputed every step) pick which KV groups / query heads / MLP channels go,
comparing chunks by score per parameter. Head counts are whole and widths aligned, so after the
last step a final global pass (same Taylor scores) lands on the parameter target.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch

from edgeprune.model import EdgeLM

from ..calibration import calibrate, clear_grads
from ..plan import apply_plans, greedy_cut, plans_for
from ..scores import centre_scale
from .registry import register_method

if TYPE_CHECKING:
    from ..surgery import CutRecord


def solve_delta(s: torch.Tensor, imp: torch.Tensor, sizes: torch.Tensor, goal: float, a: float,
                cap: float = 0.99, floor: torch.Tensor | None = None) -> torch.Tensor:
    """New sparsities clip(s + Δ − a·imp, 0, cap) whose size-weighted sum is `goal` (as close as
    the clip allows). `floor` is the sparsity each layer already has: pruning cannot be undone,
    so a layer's effective sparsity is max(target, floor) when Δ is solved.
    s, imp, sizes, floor: (n_layers,)"""
    floor = torch.zeros_like(s) if floor is None else floor

    def removed(delta):
        return float((torch.maximum((s + delta - a * imp).clamp(0, cap), floor) * sizes).sum())
    lo, hi = -2.0, 2.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if removed(mid) < goal:
            lo = mid
        else:
            hi = mid
    return (s + hi - a * imp).clamp(0, cap)


@register_method("adapt", "Adapt-Pruner: per-layer sparsity adapted to layer importance over many small steps",
                 {"steps": "number of inner steps (default: one per step_fraction of the parameters)",
                  "step_fraction": "share of the original parameters removed per step (default 0.02)",
                  "A": "importance strength in s_l <- clip(s_l + delta - A*I_l) (default 0.02)",
                  "batch_size": "calibration batch size (default 8)"})
def run(model: EdgeLM, *, target_params: int, calib: torch.Tensor, align: int, progress: bool = True,
        steps: int | None = None, step_fraction: float = 0.02, A: float = 0.02, batch_size: int = 8,
        record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict]:
    from tqdm.auto import tqdm

    A, step_fraction = float(A), float(step_fraction)
    total0 = model.spec.n_params
    need = total0 - target_params
    n_steps = int(steps) if steps else max(1, math.ceil(need / (step_fraction * total0)))
    sizes = torch.tensor([float(sum(model.spec.layer_param_counts(i).values()))
                          for i in range(model.spec.n_layers)])  # P_l, original
    fixed = total0 - int(sizes.sum())
    s = torch.zeros(len(sizes))
    history = []
    for k in tqdm(range(1, n_steps + 1), desc="adapt", unit="step", disable=not progress):
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size)
        imp = centre_scale(cal.layer_importance)
        done = torch.tensor([1 - sum(model.spec.layer_param_counts(i).values()) / p0
                             for i, p0 in enumerate(sizes.tolist())])  # sparsity reached so far
        s = solve_delta(s, imp, sizes, need * k / n_steps, A, floor=done)
        plans = plans_for(model, "taylor", cal, align)
        clear_grads(model)
        for p, s_l, p0 in zip(plans, s.tolist(), sizes.tolist()):
            over = p.params() - int(round((1 - s_l) * p0))
            if over > 0:
                greedy_cut([p], over, overshoot=False)  # the final pass settles the total
        model = apply_plans(model, plans, record)
        history.append({"step": k, "loss": round(cal.loss, 4), "sparsity": [round(v, 4) for v in s.tolist()],
                        "importance": [round(v, 4) for v in cal.layer_importance.tolist()],
                        "params": model.spec.n_params})
    final_fill = 0
    if model.spec.n_params > target_params:
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size)
        plans = plans_for(model, "taylor", cal, align)
        clear_grads(model)
        final_fill = greedy_cut(plans, model.spec.n_params - target_params)
        model = apply_plans(model, plans, record)
    actual = [1 - sum(model.spec.layer_param_counts(i).values()) / p0 for i, p0 in enumerate(sizes.tolist())]
    return model, {"steps": n_steps, "A": A, "target_sparsity": [round(v, 4) for v in s.tolist()],
                   "layer_sparsity": [round(v, 4) for v in actual], "final_fill_params": final_fill,
                   "fixed_params": fixed, "history": history}
