"""A latency target for pruning: "decode at least N tokens/s on device D at quant Q",
or "X times faster than the input model there", reached through the device's latency model
(devices/latency_model.py: measured when `edgeprune devices calibrate D` has run, else the
roofline plus default overheads), not through the parameter count.

Latency-aware methods (`adapt-latency`) prune until the model's predicted decode time meets the
target, valuing each cut by importance per second saved. Parameter-driven methods (uniform, flap,
depth, adapt) get a parameter count instead: the size at which a uniformly shrunk copy of the
model is predicted to meet the target (`params_for_latency`); the summary then shows the
predicted speed of the shape they really produced.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

from edgeprune.base.errors import PruneError
from edgeprune.shape.spec import ArchSpec, LayerSpec


@dataclass
class LatencyTarget:
    """What a latency-aware prune aims at on one device."""

    model: Any  # devices.latency_model.LatencyModel of the device
    qtype: str  # GGUF type the model will ship at (decode cost depends on it)
    decode_tps: Optional[float] = None  # tokens/s to reach (None: a parameter target rules, latency ranks)
    prefill_tps: Optional[float] = None  # or a prefill rate to reach instead
    head_type: Optional[str] = None  # the head's GGUF type when decided (the search may lower it), else the preset's
    # the vocabulary the model will ship with when the user asked for trimming (the head's rows a
    # decoded token reads), else None: the spec's own; the model is cut before it is trimmed
    vocab_size: Optional[int] = None

    @property
    def device(self) -> str:
        return self.model.device.name

    @property
    def metric(self) -> str:
        return "prefill" if self.prefill_tps is not None else "decode"

    @property
    def goal(self) -> Optional[float]:
        """The rate aimed at (tokens/s of `metric`), or None when latency only ranks."""
        return self.prefill_tps if self.prefill_tps is not None else self.decode_tps

    def rate_of(self, spec: ArchSpec) -> float:
        """Predicted tokens/s of `spec` in the metric the goal is set in."""
        return self.prefill_tps_of(spec) if self.metric == "prefill" else self.decode_tps_of(spec)

    def priced(self, spec: ArchSpec) -> ArchSpec:
        """`spec` as it will ship: with the trimmed vocabulary when there is one."""
        if self.vocab_size is None or self.vocab_size == spec.vocab_size:
            return spec
        return replace(spec, vocab_size=int(self.vocab_size))

    def decode_tps_of(self, spec: ArchSpec) -> float:
        return self.model.decode_tps(self.priced(spec), self.qtype, head_type=self.head_type)

    def with_head(self, head_type: Optional[str]) -> "LatencyTarget":
        """The same target with the head stored at `head_type` (None: the preset's type)."""
        return replace(self, head_type=head_type)

    def with_vocab(self, vocab_size: Optional[int]) -> "LatencyTarget":
        """The same target with the model shipped at `vocab_size` tokens (None: untrimmed)."""
        return replace(self, vocab_size=None if vocab_size is None else int(vocab_size))

    def prefill_tps_of(self, spec: ArchSpec) -> float:
        return self.model.prefill_tps(self.priced(spec), self.qtype)

    def layer_fn(self, spec: ArchSpec) -> Callable[[int, int, int], float]:
        """Decode seconds of one layer of `spec` at (n_heads, n_kv_heads, ffn_dim); an empty layer
        is removed (apply_plans), so it costs nothing: emptying a layer also saves its fixed
        per-layer cost."""
        def seconds(n_heads: int, n_kv: int, ffn: int) -> float:
            if n_heads == 0 and ffn == 0:
                return 0.0
            return self.model.layer_decode_seconds(spec, LayerSpec(n_heads, n_kv if n_heads else 0, ffn), self.qtype)
        return seconds

    def summary(self, spec_before: ArchSpec, spec_after: ArchSpec) -> dict[str, Any]:
        """Predicted speeds before (the input as the preset stores it, untrimmed) and after (at this
        target's head type and vocabulary)."""
        orig = self.with_head(None).with_vocab(None)
        before, after = orig.decode_tps_of(spec_before), self.decode_tps_of(spec_after)
        return {"device": self.device, "quant": self.qtype, "model": self.model.source, "head_type": self.head_type,
                "vocab_size": self.priced(spec_after).vocab_size,
                "target_decode_tps": self.decode_tps, "target_prefill_tps": self.prefill_tps,
                "predicted_decode_tps_before": round(before, 1), "predicted_decode_tps": round(after, 1),
                "predicted_speedup": round(after / before, 3),
                "predicted_prefill_tps_before": round(orig.prefill_tps_of(spec_before), 1),
                "predicted_prefill_tps": round(self.prefill_tps_of(spec_after), 1)}


def make_target(device: Any, qtype: str, *, decode_tps: Optional[float] = None, speedup: Optional[float] = None,
                prefill_tps: Optional[float] = None, spec: Optional[ArchSpec] = None) -> LatencyTarget:
    """A LatencyTarget for `device` from an absolute decode or prefill rate or a decode speed-up
    over `spec`."""
    from edgeprune.devices.latency_model import latency_model_for
    from edgeprune.shape.units import quant_block

    quant_block(qtype)  # an unknown type is an error before any work
    lat = latency_model_for(device)
    if speedup is not None:
        if not speedup > 1.0:
            raise PruneError(f"--speedup {speedup} must be > 1 (it is how many times faster the pruned model decodes)")
        decode_tps = lat.decode_tps(spec, qtype) * float(speedup)
    target = LatencyTarget(model=lat, qtype=qtype.upper(), decode_tps=decode_tps, prefill_tps=prefill_tps)
    goal = target.goal
    if goal is not None:
        if not goal > 0:
            raise PruneError(f"{target.metric} target {goal} tokens/s must be > 0")
        if spec is not None:
            now = target.rate_of(spec)
            if now >= goal:
                verb = "prefill" if target.metric == "prefill" else "decode"
                raise PruneError(f"{device.name} is already predicted to {verb} this model at {now:.1f} tokens/s "
                                 f"at {qtype} (target {goal:.1f}): nothing to prune for that target")
    return target


def shrunk(spec: ArchSpec, keep: float, align: int) -> ArchSpec:
    """`spec` with every layer's heads and FFN scaled by `keep` (aligned, at least one KV group with
    one head): the shape uniform pruning would give at that ratio."""
    from edgeprune.shape.units import attn_width_reachable

    layers = []
    for lay in spec.layers:
        if not lay.has_attention:
            heads = kv = 0
        else:
            g = lay.group_size
            kv = max(1, round(lay.n_kv_heads * keep))
            g_new = max(1, round(lay.n_heads * keep / kv))
            g_new = min(g, g_new)
            if attn_width_reachable(lay.n_heads, spec.head_dim, align):
                while g_new > 1 and (kv * g_new * spec.head_dim) % align:
                    g_new -= 1
            heads = kv * g_new
        ffn = max(min(align, lay.ffn_dim), int(round(lay.ffn_dim * keep / align)) * align) if lay.has_mlp else 0
        layers.append(LayerSpec(heads, kv, ffn))
    return replace(spec, layers=tuple(layers))


def params_for_latency(spec: ArchSpec, target: LatencyTarget, align: int) -> int:
    """Parameters a parameter-driven method should keep: those of the uniformly shrunk shape
    predicted to decode at the target rate (bisection on the keep ratio)."""
    goal = target.goal
    if goal is None:
        raise PruneError("params_for_latency needs a decode or prefill target")
    lo, hi = 0.0, 1.0  # keep ratios: lo always meets the target, hi (the whole model) does not
    if target.rate_of(shrunk(spec, 0.02, align)) < goal:
        raise PruneError(f"{goal:.1f} tokens/s on {target.device} at {target.qtype} is out of reach by width pruning "
                         f"(predicted {target.rate_of(shrunk(spec, 0.02, align)):.1f} at the smallest widths; "
                         "the embedding / head and per-layer costs remain): try search, adapt-latency or depth")
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if target.rate_of(shrunk(spec, mid, align)) >= goal else (lo, mid)
    return shrunk(spec, lo, align).n_params


# kept for callers of the roofline-era API (ship, bench): predicted decode rate of a spec
def predicted_decode_tps(spec: ArchSpec, device: Any, qtype: str = "Q4_0") -> float:
    from edgeprune.devices.latency_model import latency_model_for

    return latency_model_for(device).decode_tps(spec, qtype)


__all__ = ["LatencyTarget", "make_target", "shrunk", "params_for_latency", "predicted_decode_tps"]
