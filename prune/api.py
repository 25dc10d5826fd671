"""`prune_model`: the one public entry point of prune/ (ModelOpt style: one function, the
constraint as plain data, calibration passed in).

Targets: `ratio` is the fraction of parameters REMOVED (0.5 → half of the parameters remain;
embeddings and the head count as parameters and are never pruned here), or `params` is the
parameter count to keep. Exactly one of them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from edgeprune.errors import PruneError
from edgeprune.model import EdgeLM
from edgeprune.spec import ArchSpec

from .calibration import check_calib
from .methods import get_method
from edgeprune.units import default_align

from .plan import LayerPlan, min_layer_params, unscored

log = logging.getLogger(__name__)

TARGET_TOLERANCE = 0.02  # methods land within 2% of the parameter target (tested)


@dataclass
class PruneResult:
    model: EdgeLM  # the pruned model; model.spec describes its widths
    spec_before: ArchSpec
    method: str
    target_params: Optional[int]  # None when a latency-aware method aimed at a decode rate instead
    align: int
    seconds: float
    log: dict[str, Any] = field(default_factory=dict)  # the method's decisions (e.g. adapt's steps)
    cuts: Optional[dict] = None  # param name -> cuts, when record_cuts=True (optimizer state)

    @property
    def spec(self) -> ArchSpec:
        return self.model.spec

    @property
    def params_before(self) -> int:
        return self.spec_before.n_params

    @property
    def params_after(self) -> int:
        return self.spec.n_params

    @property
    def ratio_removed(self) -> float:
        return 1 - self.params_after / self.params_before

    def layer_rows(self) -> list[list[Any]]:
        """Per layer: heads, kv heads, ffn before → after and parameters before → after. Layers
        removed by `depth` show as '-' after (matched by the method's dropped_layers)."""
        dropped = set(self.log.get("dropped_layers", []))
        after = iter(range(self.spec.n_layers))
        rows = []
        for i, b in enumerate(self.spec_before.layers):
            pb = sum(self.spec_before.layer_param_counts(i).values())
            if i in dropped:
                rows.append([i, f"{b.n_heads}→-", f"{b.n_kv_heads}→-", f"{b.ffn_dim}→-", pb, 0])
                continue
            j = next(after)
            a = self.spec.layers[j]
            pa = sum(self.spec.layer_param_counts(j).values())
            rows.append([i, f"{b.n_heads}→{a.n_heads}", f"{b.n_kv_heads}→{a.n_kv_heads}",
                         f"{b.ffn_dim}→{a.ffn_dim}", pb, pa])
        return rows

    def table(self) -> str:
        from edgeprune.table import human_count, markdown_table

        t = markdown_table(["layer", "heads", "kv heads", "ffn", "params before", "params after"],
                           self.layer_rows())
        out = (f"{t}\n\nparameters: {human_count(self.params_before)} → {human_count(self.params_after)} "
               f"({self.ratio_removed:.1%} removed; target "
               f"{human_count(self.target_params) if self.target_params else 'a decode rate'}, "
               f"method {self.method}, align {self.align})")
        if self.target_params and "target_miss" in self.log:
            out += (f"\nequal widths in every layer ({self.spec.is_uniform and 'plain llama/qwen2 file' or 'per layer'}): "
                    f"{self.log['target_miss']:+.1%} from the parameter target, the closest uniform widths allow")
        lat = self.log.get("latency")
        if lat:
            goal = f", target {lat['target_decode_tps']:.1f}" if lat.get("target_decode_tps") else ""
            out += (f"\npredicted on {lat['device']} at {lat['quant']} ({lat['model']} latency model): decode "
                    f"{lat['predicted_decode_tps_before']:.1f} → {lat['predicted_decode_tps']:.1f} tokens/s "
                    f"(×{lat['predicted_speedup']:.2f}{goal}), prefill {lat['predicted_prefill_tps_before']:.0f} → "
                    f"{lat['predicted_prefill_tps']:.0f} tokens/s")
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-able record (goes into edgeprune.json under "pruning")."""
        return {"method": self.method, "ratio_removed": round(self.ratio_removed, 6),
                "params_before": self.params_before, "params_after": self.params_after,
                "target_params": self.target_params, "align": self.align, "seconds": round(self.seconds, 2),
                "widths": [[lay.n_heads, lay.n_kv_heads, lay.ffn_dim] for lay in self.spec.layers],
                "log": {k: v for k, v in self.log.items() if k != "history"}}


def resolve_target(spec: ArchSpec, ratio: Optional[float], params: Optional[int]) -> int:
    """Parameters to keep, from a removal ratio or an absolute count."""
    if (ratio is None) == (params is None):
        raise PruneError("give exactly one target: ratio (fraction of parameters to remove, e.g. 0.5) "
                         "or params (parameters to keep)")
    if ratio is not None:
        if not 0.0 < float(ratio) < 1.0:
            raise PruneError(f"ratio {ratio} is outside (0, 1): it is the fraction of parameters to REMOVE "
                             "(0.5 keeps half the model)")
        return int(round(spec.n_params * (1 - float(ratio))))
    if not 0 < int(params) < spec.n_params:
        raise PruneError(f"params {params} must be between 1 and the model's {spec.n_params} parameters")
    return int(params)


def min_params(spec: ArchSpec, align: int, removes_layers: bool = False) -> int:
    """The smallest model a method can reach: one head and the smallest aligned MLP per layer
    (or, for layer-dropping methods, that floor with all but one layer gone)."""
    plans = [LayerPlan.of(spec, i, s, align) for i, s in enumerate(unscored(spec))]
    floors = [min_layer_params(p) for p in plans]
    fixed = spec.n_params - sum(p.params() for p in plans)
    return fixed + (min(floors) if removes_layers else sum(floors))


def validate(spec: ArchSpec, method: str, ratio: Optional[float], params: Optional[int],
             align: Optional[int], by_time: bool = False) -> tuple[Optional[int], int]:
    """Check a request before any work: returns (target params, align) or raises PruneError.
    `by_time`: a latency-aware method aims at a decode rate, so there is no parameter target."""
    m = get_method(method)
    if m.needs_uniform and not spec.is_uniform:
        raise PruneError(f"method {method!r} cuts uniform models (equal widths in every layer); this one has "
                         "per-layer widths: use adapt or adapt-latency")
    align = default_align(spec) if align is None else int(align)
    if align < 1:
        raise PruneError(f"align must be >= 1, got {align}")
    if by_time and m.latency_aware and ratio is None and params is None:
        return None, align
    target = resolve_target(spec, ratio, params)
    floor = min_params(spec, align, m.removes_layers)
    if target < floor:
        raise PruneError(
            f"target of {target} parameters is below the {floor} that method {method!r} can reach "
            f"(one KV group with one query head and a {align}-aligned MLP per layer, embeddings kept); "
            "use a smaller ratio, a smaller --align, or the depth method")
    return target, align


def prune_model(model: EdgeLM, *, method: str, ratio: Optional[float] = None, params: Optional[int] = None,
                calib: torch.Tensor, align: Optional[int] = None, seed: int = 0, progress: bool = True,
                record_cuts: bool = False, latency: Any = None, **method_options: Any) -> PruneResult:
    """Prune `model` (in place; also returned in the result) to `ratio` removed, `params` kept, or
    the decode rate of `latency` (a prune.latency.LatencyTarget with `decode_tps`).

    `calib` is a (n_samples, seq_len) LongTensor of calibration tokens (see
    `edgeprune.data.calibration_batch`). `method_options` go to the method (see METHODS[name].options).
    Latency-aware methods receive `latency` and reach its rate through the device's latency model;
    the others get the parameter count of the uniformly shrunk shape predicted to meet it. With a
    `latency`, the result's log carries the predicted speed before and after.
    With `record_cuts`, `result.cuts` maps parameter names to the index cuts made (for slicing
    optimizer state with `surgery.apply_cuts`)."""
    spec0 = model.spec
    m = get_method(method)
    by_time = latency is not None and getattr(latency, "decode_tps", None) is not None
    if by_time and ratio is None and params is None and not m.latency_aware:
        from .latency import params_for_latency

        params = params_for_latency(spec0, latency, align if align is not None else default_align(spec0))
    if m.needs_device and latency is None:
        raise PruneError(f"method {method!r} prunes for a device: give one (--device NAME, --quant Q)")
    target, align = validate(spec0, method, ratio, params, align, by_time)
    check_calib(calib, spec0.vocab_size)
    unknown = set(method_options) - set(m.options)
    if unknown:
        raise PruneError(f"method {method!r} has no option(s) {sorted(unknown)}; it takes {sorted(m.options)}")
    torch.manual_seed(seed)
    record: Optional[dict] = {} if record_cuts else None
    t0 = time.perf_counter()
    extra = {"latency": latency} if m.latency_aware else {}
    model, mlog = m.fn(model, target_params=target, calib=calib, align=align, progress=progress,
                       record=record, **extra, **method_options)
    if latency is not None:
        mlog["latency"] = latency.summary(spec0, model.spec)
    result = PruneResult(model=model, spec_before=spec0, method=method, target_params=target, align=align,
                         seconds=time.perf_counter() - t0, log=mlog, cuts=record)
    if by_time:
        got = mlog["latency"]["predicted_decode_tps"]
        if got < latency.decode_tps * (1 - TARGET_TOLERANCE):
            log.warning("%s: predicted %.1f tokens/s on %s, below the target %.1f (a parameter-driven method "
                        "reaches a rate only approximately: adapt-latency aims at it)", method, got, latency.device,
                        latency.decode_tps)
    elif abs(result.params_after - target) / target > TARGET_TOLERANCE and not m.latency_aware:
        miss = abs(result.params_after - target) / target
        why = ("the closest shape with equal widths in every layer" if "target_miss" in mlog
               else "alignment too coarse?")
        log.warning("%s reached %d parameters, %.1f%% from the target %d at align %d (%s)",
                    method, result.params_after, 100 * miss, target, align, why)
    return result


__all__ = ["prune_model", "PruneResult", "resolve_target", "validate", "min_params", "TARGET_TOLERANCE"]
