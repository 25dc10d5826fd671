"""`uniform`: the same pruning ratio in every layer, first-order Taylor scores choosing the
heads and channels inside each layer — the LLM-Pruner baseline (Ma et al. 2023).

The per-layer ratio r is found by bisection so that the total hits the target; attention and
MLP are each cut by r (attention at KV-group / query-head granularity, MLP in aligned chunks).
Head counts are integral, so the last few parameters are taken from MLP chunks, one layer at a
time (the widths then differ by at most one alignment chunk between layers).
"""

from __future__ import annotations

from edgeprune.model import EdgeLM

from ..calibration import calibrate, clear_grads
from ..plan import LayerPlan, apply_plans, greedy_cut, plans_for
from . import register_method


def _at_ratio(base: list[LayerPlan], r: float) -> list[LayerPlan]:
    plans = [p.copy() for p in base]
    for p in plans:
        greedy_cut([p], int(r * p.attn_params()), kinds=("group", "head"))
        greedy_cut([p], int(r * p.mlp_params()), kinds=("ffn",))
    return plans


@register_method("uniform", "same ratio in every layer, Taylor scores (LLM-Pruner baseline)",
                 {"batch_size": "calibration batch size (default 8)"})
def run(model: EdgeLM, *, target_params: int, calib, align: int, progress: bool = True,
        batch_size: int = 8, record=None) -> tuple[EdgeLM, dict]:
    cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size)
    base = plans_for(model, "taylor", cal, align)
    clear_grads(model)
    fixed = model.spec.n_params - sum(p.params() for p in base)

    def total(plans):
        return fixed + sum(p.params() for p in plans)

    lo, hi = 0.0, 1.0  # total is non-increasing in r
    for _ in range(30):
        mid = (lo + hi) / 2
        if total(_at_ratio(base, mid)) > target_params:
            lo = mid
        else:
            hi = mid
    plans = min((_at_ratio(base, r) for r in (lo, hi)), key=lambda ps: abs(total(ps) - target_params))
    extra = total(plans) - target_params
    if extra > 0:  # round-off: a few more MLP chunks, weakest first
        greedy_cut(plans, extra, kinds=("ffn",))
    model = apply_plans(model, plans, record)
    return model, {"layer_ratio": round(hi, 4), "calibration_loss": cal.loss}
