"""`adapt-latency`: Adapt-Pruner's layer-wise adaptive sparsity, measured in *decode seconds on
the target device* instead of parameters (issue 12).

Same schedule as `adapt` (adapt.py): before each of many small steps the layer importance Î_l
(−mean cos(x_in, x_out), centred and scaled) updates the per-layer sparsity
s_l ← clip(s_l + Δ − A·Î_l, 0, 0.99). What changes:
- P_l, the size a layer's sparsity is a fraction of, is the layer's predicted decode time on the
  device (runtime_bench/latency_model.py), not its parameter count; Δ spreads the step's share of
  the seconds to remove.
- Inside a layer, chunks (a KV group, a query head per group, an aligned run of MLP channels, and
  — unlike adapt — the whole attention or MLP block) are valued by Taylor importance per second
  they save (`chunk_value(..., "per_second")`), so a unit the device pays much for and the loss
  needs little goes first. A layer left without attention and MLP is removed (its fixed per-layer
  cost goes too).
- The target is a decode rate (`--decode-tps` / `--speedup`): pruning stops when the predicted
  rate meets it. With a parameter target instead, the budget is parameters but the ranking is
  still per second, so the result is the fastest shape the importance allows at that size.
Widths stay aligned exactly as in every method (LayerPlan chunks).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional, Union

import torch

from edgeprune.errors import PruneError
from edgeprune.model import EdgeLM

from ..calibration import calibrate, clear_grads
from ..plan import apply_plans, greedy_cut, plans_for
from ..scores import centre_scale
from .registry import register_method
from .adapt import solve_delta

if TYPE_CHECKING:
    from ..latency import LatencyTarget
    from ..surgery import CutRecord


def _plans(model: EdgeLM, cal, align: int, latency, blocks: bool):
    plans = plans_for(model, "taylor", cal, align)
    fn = latency.layer_fn(model.spec)
    for p in plans:
        p.lat, p.blocks = fn, blocks
    return plans


@register_method("adapt-latency",
                 "Adapt-Pruner's adaptive sparsity in decode seconds on the device; cuts ranked by importance per second",
                 {"steps": "number of inner steps (default: one per step_fraction of the budget)",
                  "step_fraction": "share of the budget removed per step (default 0.02)",
                  "A": "importance strength in s_l <- clip(s_l + delta - A*I_l) (default 0.02)",
                  "blocks": "may remove whole attention / MLP blocks and empty layers (default true)",
                  "batch_size": "calibration batch size (default 8)"}, latency_aware=True)
def run(model: EdgeLM, *, target_params: int, calib: torch.Tensor, align: int, progress: bool = True,
        latency: Optional[LatencyTarget] = None, steps: int | None = None, step_fraction: float = 0.02,
        A: float = 0.02, blocks: Union[bool, str] = True, batch_size: int = 8,
        record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict]:
    from tqdm.auto import tqdm

    if latency is None:
        raise PruneError("adapt-latency needs a device: --device NAME (and --quant, default Q4_0)")
    blocks = str(blocks).lower() not in ("0", "false", "no")
    A, step_fraction = float(A), float(step_fraction)
    spec0 = model.spec
    by_time = latency.decode_tps is not None
    measure = "seconds" if by_time else "params"

    def size_of(spec, i):  # layer i's size in the budget's unit
        if by_time:
            return latency.model.layer_decode_seconds(spec, spec.layers[i], latency.qtype)
        return sum(spec.layer_param_counts(i).values())

    def total(spec):
        return latency.model.decode_seconds(spec, latency.qtype) if by_time else spec.n_params

    goal = 1.0 / latency.decode_tps if by_time else target_params
    need = total(spec0) - goal
    sizes = torch.tensor([float(size_of(spec0, i)) for i in range(spec0.n_layers)], dtype=torch.float64)
    n_steps = int(steps) if steps else max(1, math.ceil(need / (step_fraction * total(spec0))))
    alive = list(range(spec0.n_layers))  # original index of each current layer
    s = torch.zeros(len(sizes), dtype=torch.float64)
    history = []
    for k in tqdm(range(1, n_steps + 1), desc="adapt-latency", unit="step", disable=not progress):
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size)
        imp = torch.zeros(len(sizes), dtype=torch.float64)
        imp[alive] = centre_scale(cal.layer_importance).double()
        done = torch.ones(len(sizes), dtype=torch.float64)  # removed layers: fully sparse
        for j, i0 in enumerate(alive):
            done[i0] = 1 - size_of(model.spec, j) / float(sizes[i0])
        s = solve_delta(s, imp, sizes, need * k / n_steps, A, floor=done)
        plans = _plans(model, cal, align, latency, blocks)
        clear_grads(model)
        for p, i0 in zip(plans, alive):
            now = p.seconds() if by_time else p.params()
            over = now - (1 - float(s[i0])) * float(sizes[i0])
            if over > 0:
                greedy_cut([p], over, policy="per_second", overshoot=False, measure=measure,
                           kinds=("group", "head", "ffn", "attn_block", "mlp_block"))
        gone = {p.index for p in plans if not p.groups and not p.ffn}
        model = apply_plans(model, plans, record)
        alive = [i0 for j, i0 in enumerate(alive) if j not in gone]
        history.append({"step": k, "loss": round(cal.loss, 4), "sparsity": [round(v, 4) for v in s.tolist()],
                        "params": model.spec.n_params,
                        "predicted_decode_tps": round(latency.decode_tps_of(model.spec), 1)})
    final_fill = 0.0
    left = total(model.spec) - goal
    if left > 0:
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size)
        plans = _plans(model, cal, align, latency, blocks)
        clear_grads(model)
        # never past the goal with whole blocks; the last stretch in fine chunks (lands on the target)
        final_fill = greedy_cut(plans, left, policy="per_second", measure=measure, overshoot=False,
                                kinds=("group", "head", "ffn", "attn_block", "mlp_block"))
        final_fill += greedy_cut(plans, left - final_fill, policy="per_second", measure=measure,
                                 kinds=("group", "head", "ffn"))
        if by_time and final_fill < left:  # a speed target is a floor: blocks / layers if widths are spent
            final_fill += greedy_cut(plans, left - final_fill, policy="per_second", measure=measure,
                                     overshoot="always", kinds=("group", "head", "ffn", "attn_block", "mlp_block"))
        gone = {p.index for p in plans if not p.groups and not p.ffn}
        model = apply_plans(model, plans, record)
        alive = [i0 for j, i0 in enumerate(alive) if j not in gone]
    dropped = sorted(set(range(spec0.n_layers)) - set(alive))
    return model, {"steps": n_steps, "A": A, "budget": measure, "blocks": blocks,
                   "target_sparsity": [round(v, 4) for v in s.tolist()], "dropped_layers": dropped,
                   "final_fill": final_fill, "latency": latency.summary(spec0, model.spec), "history": history}
