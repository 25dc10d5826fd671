"""`adapt-latency`: Adapt-Pruner's layer-wise adaptive sparsity, measured in *decode seconds on
the target device* instead of parameters.

The schedule is `adapt`'s (prune/adapt_schedule.py). What changes:
- P_l, the size a layer's sparsity is a fraction of, is the layer's predicted decode time on the
  device (prune/latency.py's target, the device's latency model), not its parameter count; Δ
  spreads the step's share of the seconds to remove.
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

from typing import TYPE_CHECKING, Optional, Union

import torch

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import EdgeLM

from ..adapt_schedule import BLOCK_KINDS, WIDTH_KINDS, LayerCost, run_schedule, step_count
from ..calibration import calibrate, clear_grads
from ..plan import apply_plans, greedy_cut
from .adapt import layer_params
from .registry import register_method

if TYPE_CHECKING:
    from ..latency import LatencyTarget
    from ..surgery import CutRecord


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
    if latency is None:
        raise PruneError("adapt-latency needs a device: --device NAME (and --quant, default Q4_0)")
    blocks = str(blocks).lower() not in ("0", "false", "no")
    A = float(A)
    spec0 = model.spec
    by_time = latency.decode_tps is not None
    measure = "seconds" if by_time else "params"

    def size(spec, i):  # layer i's size in the budget's unit
        if by_time:
            return latency.model.layer_decode_seconds(spec, spec.layers[i], latency.qtype)
        return layer_params(spec, i)

    def total(spec):
        return latency.model.decode_seconds(spec, latency.qtype) if by_time else spec.n_params

    cost = LayerCost(measure, size, dtype=torch.float64, policy="per_second", kinds=BLOCK_KINDS, latency=latency,
                     blocks=blocks,
                     step_log=lambda m, cal: {"predicted_decode_tps": round(latency.decode_tps_of(m.spec), 1)})
    goal = 1.0 / latency.decode_tps if by_time else target_params
    need = total(spec0) - goal
    n_steps = step_count(steps, need, total(spec0), step_fraction)
    done = run_schedule(model, calib, cost, need=need, n_steps=n_steps, A=A, align=align, batch_size=batch_size,
                        progress=progress, record=record, desc="adapt-latency")
    model, alive = done.model, done.alive
    final_fill = 0.0
    left = total(model.spec) - goal
    if left > 0:
        cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size, progress=progress)
        plans = cost.plans(model, cal, align)
        clear_grads(model)
        # never past the goal with whole blocks; the last stretch in fine chunks (lands on the target)
        final_fill = greedy_cut(plans, left, policy="per_second", measure=measure, overshoot=False, kinds=BLOCK_KINDS)
        final_fill += greedy_cut(plans, left - final_fill, policy="per_second", measure=measure, kinds=WIDTH_KINDS)
        if by_time and final_fill < left:  # a speed target is a floor: blocks / layers if widths are spent
            final_fill += greedy_cut(plans, left - final_fill, policy="per_second", measure=measure,
                                     overshoot="always", kinds=BLOCK_KINDS)
        gone = {p.index for p in plans if not p.groups and not p.ffn}
        model = apply_plans(model, plans, record)
        alive = [i0 for j, i0 in enumerate(alive) if j not in gone]
    dropped = sorted(set(range(spec0.n_layers)) - set(alive))
    return model, {"steps": n_steps, "A": A, "budget": measure, "blocks": blocks,
                   "target_sparsity": [round(v, 4) for v in done.sparsity.tolist()], "dropped_layers": dropped,
                   "final_fill": final_fill, "latency": latency.summary(spec0, model.spec), "history": done.history}
