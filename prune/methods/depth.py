"""`depth`: drop the least important decoder layers (layer importance = −mean cos(x_in,
x_out), Adapt-Pruner / ShortGPT's block influence), as many as fit the budget.

Whole layers are coarse (a tiny model's layer is several percent of it), so the remainder
below one layer is taken by Taylor-scored width pruning spread over the kept layers
(`fill=True`, the default); with `fill=False` the method stops at whole layers and may miss the
target by up to half a layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Union

from edgeprune.shape.model import EdgeLM

from ..calibration import calibrate, clear_grads
from ..plan import apply_plans, greedy_cut, plans_for
from ..surgery import remove_layers
from .registry import register_method

if TYPE_CHECKING:
    import torch

    from ..surgery import CutRecord


@register_method("depth", "drop the least important layers (-mean cos in/out), Taylor width fill for the rest",
                 {"fill": "take the remainder below one layer by width pruning (default true)",
                  "batch_size": "calibration batch size (default 8)"}, removes_layers=True)
def run(model: EdgeLM, *, target_params: int, calib: torch.Tensor, align: int, progress: bool = True,
        fill: Union[bool, str] = True, batch_size: int = 8,
        record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict]:
    fill = str(fill).lower() not in ("0", "false", "no")
    cal = calibrate(model, calib, grads=fill, activations=False, batch_size=batch_size, progress=progress)
    importance = cal.layer_importance.tolist()
    need = model.spec.n_params - target_params
    sizes = [sum(model.spec.layer_param_counts(i).values()) for i in range(model.spec.n_layers)]
    drop, removed = [], 0
    for i in sorted(range(len(sizes)), key=lambda i: (importance[i], i)):
        if len(drop) == len(sizes) - 1 or removed >= need:
            break
        left = need - removed
        if sizes[i] > left and (fill or sizes[i] - left >= left):
            continue  # would overshoot (fill takes the rest) / overshoots more than it helps
        drop.append(i)
        removed += sizes[i]
    if fill and removed < need:
        plans = [p for p in plans_for(model, "taylor", cal, align) if p.index not in drop]
        greedy_cut(plans, need - removed)
        model = apply_plans(model, plans, record)
    clear_grads(model)
    model = remove_layers(model, drop, record) if drop else model
    return model, {"dropped_layers": sorted(drop), "layer_importance": [round(v, 5) for v in importance],
                   "calibration_loss": cal.loss}
