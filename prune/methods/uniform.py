"""`uniform`: the same pruning ratio in every layer, first-order Taylor scores choosing the
heads and channels inside each layer — the LLM-Pruner baseline (Ma et al. 2023).

A uniform model stays uniform: every layer keeps the same KV groups, query heads and FFN width
(prune/shapes.py), so the file is a plain llama / qwen2 GGUF. Uniform widths move in steps of one
alignment chunk in every layer at once, so the parameter target is met as closely as those steps
allow; the log's `target_miss` says how close.

A heterogeneous input (layers of different widths) keeps the same ratio per layer instead: the
per-layer ratio r is found by bisection so that the total hits the target; attention and
MLP are each cut by r (attention at KV-group / query-head granularity, MLP in aligned chunks).
Head counts are integral, so attention jumps in big steps as r grows: the attention widths are
taken at the largest r that does not pass the target, then a second bisection finds the MLP
ratio that does, with attention fixed; the last few parameters are MLP chunks of single layers
(MLP widths then differ by at most one or two alignment chunks between layers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from edgeprune.shape.model import EdgeLM

from ..calibration import calibrate, clear_grads
from ..plan import LayerPlan, apply_plans, greedy_cut, plans_for
from ..shapes import closest_uniform
from .registry import register_method

if TYPE_CHECKING:
    import torch

    from ..surgery import CutRecord


def _at_ratio(base: list[LayerPlan], r: float, r_mlp: float | None = None) -> list[LayerPlan]:
    plans = [p.copy() for p in base]
    for p in plans:
        greedy_cut([p], int(r * p.attn_params()), kinds=("group", "head"))
        greedy_cut([p], int((r if r_mlp is None else r_mlp) * p.mlp_params()), kinds=("ffn",))
    return plans


def _bisect(total_at, target: int) -> tuple[float, float]:
    """(lo, hi) around the ratio where total_at(r) (non-increasing) crosses target."""
    lo, hi = 0.0, 1.0
    for _ in range(25):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if total_at(mid) > target else (lo, mid)
    return lo, hi


@register_method("uniform", "same ratio in every layer, Taylor scores (LLM-Pruner baseline)",
                 {"batch_size": "calibration batch size (default 8)"})
def run(model: EdgeLM, *, target_params: int, calib: torch.Tensor, align: int, progress: bool = True,
        batch_size: int = 8, record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict]:
    cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size, progress=progress)
    base = plans_for(model, "taylor", cal, align)
    clear_grads(model)
    if model.spec.is_uniform:
        choice = closest_uniform(model.spec, target_params, align)
        a = choice.attn
        for p in base:
            p.keep_strongest(a.n_kv if a else 0, a.group if a else 0, choice.ffn)
        model = apply_plans(model, base, record)
        return model, {"uniform_layer": [choice.layer().n_heads, choice.layer().n_kv_heads, choice.ffn],
                       "target_miss": round(choice.miss, 5), "calibration_loss": cal.loss}
    fixed = model.spec.n_params - sum(p.params() for p in base)

    def total(plans):
        return fixed + sum(p.params() for p in plans)

    lo, hi = _bisect(lambda r: total(_at_ratio(base, r)), target_params)
    r_attn = lo  # attention at the last ratio that keeps the total above the target
    lo_m, hi_m = _bisect(lambda r: total(_at_ratio(base, r_attn, r)), target_params)
    plans = min((_at_ratio(base, r_attn, r) for r in (lo_m, hi_m)), key=lambda ps: abs(total(ps) - target_params))
    extra = total(plans) - target_params
    if extra > 0:  # round-off: a few more MLP chunks, weakest first
        greedy_cut(plans, extra, kinds=("ffn",))
    model = apply_plans(model, plans, record)
    return model, {"attention_ratio": round(r_attn, 4), "mlp_ratio": round(hi_m, 4), "calibration_loss": cal.loss}
