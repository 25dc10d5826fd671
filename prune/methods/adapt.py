"""`adapt`: Adapt-Pruner (Pan et al. 2025) — adaptive per-layer sparsity over many small steps.

The schedule s_l ← clip(s_l + Δ − A·Î_l, 0, 0.99) is prune/adapt_schedule.py's, with each
layer's size P_l its parameter count, as in the paper. Inside a layer, first-order Taylor scores
(recomputed every step) pick which KV groups / query heads / MLP channels go, comparing chunks by
score per parameter. Head counts are whole and widths aligned, so after the last step a final
global pass (same Taylor scores) lands on the parameter target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec

from ..adapt_schedule import LayerCost, run_schedule, step_count
from ..calibration import calibrate, clear_grads
from ..plan import apply_plans, greedy_cut, plans_for
from .registry import register_method

if TYPE_CHECKING:
    from ..surgery import CutRecord


def layer_params(spec: ArchSpec, i: int) -> int:
    return sum(spec.layer_param_counts(i).values())


@register_method("adapt", "Adapt-Pruner: per-layer sparsity adapted to layer importance over many small steps",
                 {"steps": "number of inner steps (default: one per step_fraction of the parameters)",
                  "step_fraction": "share of the original parameters removed per step (default 0.02)",
                  "A": "importance strength in s_l <- clip(s_l + delta - A*I_l) (default 0.02)",
                  "batch_size": "calibration batch size (default 8)"})
def run(model: EdgeLM, *, target_params: int, calib: torch.Tensor, align: int, progress: bool = True,
        steps: int | None = None, step_fraction: float = 0.02, A: float = 0.02, batch_size: int = 8,
        record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict]:
    A = float(A)
    spec0 = model.spec
    need = spec0.n_params - target_params
    cost = LayerCost("params", layer_params, whole=True,
                     step_log=lambda m, cal: {"importance": [round(v, 4) for v in cal.layer_importance.tolist()]})
    n_steps = step_count(steps, need, spec0.n_params, step_fraction)
    done = run_schedule(model, calib, cost, need=need, n_steps=n_steps, A=A, align=align, batch_size=batch_size,
                        progress=progress, record=record, desc="adapt")
    model = done.model
    final_fill = 0
    if model.spec.n_params > target_params:
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size, progress=progress)
        plans = plans_for(model, "taylor", cal, align)
        clear_grads(model)
        final_fill = greedy_cut(plans, model.spec.n_params - target_params)
        model = apply_plans(model, plans, record)
    sizes = [layer_params(spec0, i) for i in range(spec0.n_layers)]
    actual = [1 - layer_params(model.spec, i) / p0 for i, p0 in enumerate(sizes)]
    return model, {"steps": n_steps, "A": A, "target_sparsity": [round(v, 4) for v in done.sparsity.tolist()],
                   "layer_sparsity": [round(v, 4) for v in actual], "final_fill_params": final_fill,
                   "fixed_params": spec0.n_params - sum(sizes), "history": done.history}
