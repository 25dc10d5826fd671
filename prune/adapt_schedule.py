"""Adapt-Pruner's schedule (Pan et al. 2025), written once for any measure of a layer's size.

Before each of many small steps, with Î_l the layer importance (−mean cos(x_in, x_out) on the
calibration tokens, measured on the *current* model) centred on its mean and scaled into [−1, 1]:

    s_l ← clip(s_l + Δ − A·Î_l, 0, 0.99)

s_l is layer l's target sparsity relative to its original size P_l; Δ is solved (bisection) so
that Σ_l s_l·P_l equals this step's share of the total to remove (step k of K: k/K of it); A sets
how strongly importance skews the widths. Each layer is then cut to (1 − s_l)·P_l with first-order
Taylor scores recomputed every step.

What a layer's size is comes from a `LayerCost`: its parameters (`adapt`, paper-faithful) or its
decode seconds on a device (`adapt-latency`, through prune/latency.py). The methods differ only
in that cost, in the cuts a layer may take, and in the final pass that lands on their target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec

from .calibration import Calibration, calibrate, clear_grads
from .plan import LayerPlan, apply_plans, greedy_cut, plans_for
from .scores import centre_scale

if TYPE_CHECKING:
    from .latency import LatencyTarget
    from .surgery import CutRecord

SPARSITY_CAP = 0.99  # a layer keeps at least 1% of its size inside the schedule (the floors of its plan hold)
WIDTH_KINDS = ("group", "head", "ffn")
BLOCK_KINDS = (*WIDTH_KINDS, "attn_block", "mlp_block")


def solve_delta(s: torch.Tensor, imp: torch.Tensor, sizes: torch.Tensor, goal: float, a: float,
                cap: float = SPARSITY_CAP, floor: torch.Tensor | None = None) -> torch.Tensor:
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


@dataclass
class LayerCost:
    """What the schedule measures a layer in, and how it cuts one inside its share."""

    measure: str  # "params" or "seconds": the unit of P_l and of greedy_cut's budget
    size: Callable[[ArchSpec, int], float]  # layer i of a spec, in that unit
    # parameters are whole: a layer's share is rounded (adapt); seconds are not
    whole: bool = False
    # float64 for seconds (a layer's decode time is ~1e-5 s); float32 for parameters, as adapt always ran
    dtype: torch.dtype = torch.float32
    policy: str = "per_param"  # chunk_value policy ranking a layer's cuts
    kinds: tuple[str, ...] = WIDTH_KINDS  # the cuts a layer may take
    latency: Optional[LatencyTarget] = None  # gives plans their decode seconds (per-second ranking)
    blocks: bool = False  # plans may remove whole attention / MLP blocks
    step_log: Callable[[EdgeLM, Calibration], dict[str, Any]] = field(default=lambda model, cal: {})

    def plans(self, model: EdgeLM, cal: Calibration, align: int) -> list[LayerPlan]:
        plans = plans_for(model, "taylor", cal, align)
        if self.latency is not None:
            fn = self.latency.layer_fn(model.spec)
            for p in plans:
                p.lat, p.blocks = fn, self.blocks
        return plans

    def of_plan(self, plan: LayerPlan) -> float:
        return plan.seconds() if self.measure == "seconds" else plan.params()


def step_count(steps: Optional[int], need: float, total: float, step_fraction: float) -> int:
    """`steps` when given, else one step per `step_fraction` of the original total removed."""
    return int(steps) if steps else max(1, math.ceil(need / (float(step_fraction) * total)))


@dataclass
class Schedule:
    """Where the schedule left the model: the last sparsities, each current layer's original
    index (`alive`; emptied layers are gone) and one history record per step."""

    model: EdgeLM
    sparsity: torch.Tensor  # (n_layers of the original model,)
    alive: list[int]
    history: list[dict[str, Any]]


def run_schedule(model: EdgeLM, calib: torch.Tensor, cost: LayerCost, *, need: float, n_steps: int, A: float,
                 align: int, batch_size: int, progress: bool, record: Optional[CutRecord], desc: str) -> Schedule:
    """`n_steps` steps removing `need` (in the cost's unit) along the sparsity schedule."""
    from edgeprune.base.progress import progress_bar

    spec0 = model.spec
    sizes = torch.tensor([float(cost.size(spec0, i)) for i in range(spec0.n_layers)], dtype=cost.dtype)  # P_l
    alive = list(range(spec0.n_layers))  # original index of each current layer
    s = torch.zeros(len(sizes), dtype=cost.dtype)
    history = []
    for k in progress_bar(range(1, n_steps + 1), desc=desc, unit="step", disable=not progress):
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size)
        imp = torch.zeros(len(sizes), dtype=cost.dtype)
        imp[alive] = centre_scale(cal.layer_importance).to(cost.dtype)
        done = torch.ones(len(sizes), dtype=cost.dtype)  # sparsity reached so far; removed layers: all of it
        for j, i0 in enumerate(alive):
            done[i0] = 1 - cost.size(model.spec, j) / float(sizes[i0])
        s = solve_delta(s, imp, sizes, need * k / n_steps, A, floor=done)
        plans = cost.plans(model, cal, align)
        clear_grads(model)
        for p, i0 in zip(plans, alive):
            keep = (1 - float(s[i0])) * float(sizes[i0])
            over = cost.of_plan(p) - (int(round(keep)) if cost.whole else keep)
            if over > 0:  # never past the layer's share: the method's final pass settles the total
                greedy_cut([p], over, policy=cost.policy, kinds=cost.kinds, overshoot=False, measure=cost.measure)
        gone = {p.index for p in plans if not p.groups and not p.ffn}
        model = apply_plans(model, plans, record)
        alive = [i0 for j, i0 in enumerate(alive) if j not in gone]
        history.append({"step": k, "loss": round(cal.loss, 4), "sparsity": [round(v, 4) for v in s.tolist()],
                        "params": model.spec.n_params, **cost.step_log(model, cal)})
    return Schedule(model, s, alive, history)
