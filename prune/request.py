"""`PruneRequest`: what to prune to, as one value that `prune`, the incremental pruner and `ship`
all build and hand to `prune_model`.

A request is a method and ONE target: the fraction of parameters to remove (`ratio`), the count
to keep (`params`), a decode or prefill rate on a device (`decode_tps`, `prefill_tps`), or a
decode speed-up over the input there (`speedup`). The device and GGUF type it ships at set the
alignment of the widths and the latency model a speed target is read through.

`check()` validates what needs no model (called when the request is built, so a bad flag fails
before any file is read); `resolve(spec)` validates the rest against the model's shape and
returns the `ResolvedPrune` every caller uses: the parameter count to reach (or None when a
latency-aware method aims at the rate itself), the alignment, and the latency target. Alignment
is decided here only: the user's --align wins; otherwise the strictest block of the GGUF types
shipped and of the devices' kernels, relaxed to the model-size default only when the target
cannot be reached on that grid (with a warning: some rows then miss whole quant blocks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from edgeprune.base.errors import PruneError
from edgeprune.shape.spec import ArchSpec

from .plan import LayerPlan, min_layer_params, unscored

log = logging.getLogger(__name__)

TARGETS = ("ratio", "params", "decode_tps", "prefill_tps", "speedup")
SPEED_TARGETS = ("decode_tps", "prefill_tps", "speedup")


def min_params(spec: ArchSpec, align: int, removes_layers: bool = False) -> int:
    """The smallest model a method can reach: one head and the smallest aligned MLP per layer
    (or, for layer-dropping methods, that floor with all but one layer gone)."""
    plans = [LayerPlan.of(spec, i, s, align) for i, s in enumerate(unscored(spec))]
    floors = [min_layer_params(p) for p in plans]
    fixed = spec.n_params - sum(p.params() for p in plans)
    return fixed + (min(floors) if removes_layers else sum(floors))


@dataclass(frozen=True)
class PruneRequest:
    method: str = "adapt"
    ratio: Optional[float] = None  # fraction of the parameters to REMOVE, in (0, 1)
    params: Optional[int] = None  # parameters to keep
    decode_tps: Optional[float] = None  # decode at least this many tokens/s on `device` at `quant`
    prefill_tps: Optional[float] = None  # prefill at least this many tokens/s there
    speedup: Optional[float] = None  # decode this many times faster than the input model there
    align: Optional[int] = None  # the user's width multiple; None: decided by resolve()
    device: Any = None  # DeviceProfile (or its name) speed is predicted on
    quant: Optional[str] = None  # GGUF type shipped to `device` (default its first, else Q4_0)
    ship_to: tuple = ()  # further devices the model ships to: their kernels align the widths too
    quants: tuple = ()  # further GGUF types shipped: their blocks align the widths too
    options: Mapping[str, Any] = field(default_factory=dict)  # the method's own (--opt NAME=VALUE)
    incremental: bool = False  # pruned in stages: every stage needs a parameter count
    # after the cut, refit the consumers of what was cut by least squares (prune/reconstruct.py);
    # "none" returns the model exactly as the method cut it
    reconstruct: str = "layerwise"

    def __post_init__(self) -> None:
        if isinstance(self.device, str):
            from edgeprune.devices import load_device

            object.__setattr__(self, "device", load_device(self.device))
        object.__setattr__(self, "options", dict(self.options))
        self.check()

    # ----- what needs no model ------------------------------------------------------------------
    @property
    def speed_target(self) -> bool:
        return any(getattr(self, k) is not None for k in SPEED_TARGETS)

    @property
    def ship_quant(self) -> str:
        """The GGUF type speed is predicted at."""
        if self.quant:
            return self.quant.upper()
        dev_quants = getattr(self.device, "gguf_quants", ()) or ()
        return (dev_quants[0] if dev_quants else "Q4_0").upper()

    def method_info(self) -> Any:
        from .methods import get_method

        return get_method(self.method)

    def check(self) -> None:
        """Everything that can be judged without the model: one line (PruneError) when wrong."""
        m = self.method_info()
        given = [k for k in TARGETS if getattr(self, k) is not None]
        if len(given) != 1:
            raise PruneError("give exactly one target: ratio (fraction of parameters to remove, e.g. 0.5), "
                             "params (parameters to keep), decode_tps, prefill_tps or speedup"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.ratio is not None and not 0.0 < float(self.ratio) < 1.0:
            raise PruneError(f"ratio {self.ratio} is outside (0, 1): it is the fraction of parameters to REMOVE "
                             "(0.5 keeps half the model)")
        if self.params is not None and not int(self.params) > 0:
            raise PruneError(f"params {self.params} must be > 0 (the parameters to keep)")
        for k in ("decode_tps", "prefill_tps"):
            v = getattr(self, k)
            if v is not None and not float(v) > 0:
                raise PruneError(f"{k} {v} must be > 0 (tokens/s)")
        if self.speedup is not None and not float(self.speedup) > 1.0:
            raise PruneError(f"speedup {self.speedup} must be > 1 (it is how many times faster the pruned "
                             "model decodes)")
        if (self.speed_target or m.needs_device) and self.device is None:
            raise PruneError(f"--decode-tps / --prefill-tps / --speedup / {self.method} need --device NAME "
                             "(whose latency model is used)")
        if self.prefill_tps is not None and m.latency_aware and "prefill" not in m.rates and not self.incremental:
            raise PruneError(f"method {self.method!r} aims at a decode rate; for a prefill target use search "
                             "or a parameter-driven method (uniform, depth, adapt)")
        from .reconstruct import MODES

        if self.reconstruct not in MODES:
            raise PruneError(f"reconstruct {self.reconstruct!r}: choose from {', '.join(MODES)}")
        if self.align is not None and int(self.align) < 1:
            raise PruneError(f"align must be >= 1, got {self.align}")
        unknown = set(self.options) - set(m.options)
        if unknown:
            raise PruneError(f"method {self.method!r} has no option(s) {sorted(unknown)}; it takes {sorted(m.options)}")
        if self.quant is not None:
            from edgeprune.shape.units import quant_block

            quant_block(self.quant)  # an unknown type: one line before any work

    # ----- against the model ----------------------------------------------------------------------
    def resolve(self, spec: ArchSpec, vocab_size: Optional[int] = None) -> "ResolvedPrune":
        """The request made concrete for `spec`, or one PruneError before any pruning. `vocab_size`:
        the vocabulary the model will ship with when the user asked for trimming, so that a speed
        target counts the head rows a decoded token will read (a target that is relative, --speedup,
        stays relative to the untrimmed input)."""
        m = self.method_info()
        if m.needs_uniform and not spec.is_uniform:
            raise PruneError(f"method {self.method!r} cuts uniform models (equal widths in every layer); this one "
                             "has per-layer widths: use adapt or adapt-latency")
        latency = self._latency(spec)
        if latency is not None and vocab_size is not None:
            latency = latency.with_vocab(vocab_size)
        if self.align is not None:
            return self._at(spec, int(self.align), latency)
        from edgeprune.shape.units import alignment_for, default_align

        devices = [d for d in (self.device, *self.ship_to) if d is not None]
        # the GGUF types named; none named: every type the devices list (alignment_for's rule)
        quants = [q for q in (self.quant, *self.quants) if q]
        want = alignment_for(spec, quants=quants, devices=devices) if (devices or quants) else default_align(spec)
        try:
            return self._at(spec, want, latency)
        except PruneError:
            fallback = min(want, default_align(spec))
            if fallback == want:
                raise
            resolved = self._at(spec, fallback, latency)  # unreachable there too: its error stands
            log.warning("the target cannot be reached with widths aligned to %d (the devices' choice); "
                        "aligning to %d instead: some rows will not be whole quant blocks", want, fallback)
            return resolved

    def _latency(self, spec: ArchSpec) -> Any:
        """The LatencyTarget: with a device, always (the summary shows the predicted speed; a
        latency-aware method ranks its cuts by it), carrying the speed goal when there is one."""
        if self.device is None:
            return None
        from .latency import make_target

        return make_target(self.device, self.ship_quant, decode_tps=self.decode_tps, prefill_tps=self.prefill_tps,
                           speedup=self.speedup, spec=spec)

    def _params_to_keep(self, spec: ArchSpec) -> int:
        """The parameter target of a ratio or count (check() has judged both alone already)."""
        if self.ratio is not None:
            return int(round(spec.n_params * (1 - float(self.ratio))))
        if not int(self.params) < spec.n_params:
            raise PruneError(f"params {self.params} must be below the model's {spec.n_params} parameters")
        return int(self.params)

    def _at(self, spec: ArchSpec, align: int, latency: Any) -> "ResolvedPrune":
        m = self.method_info()
        by_time = latency is not None and latency.goal is not None
        if by_time and m.latency_aware and not self.incremental:
            return ResolvedPrune(self, None, align, latency)  # the method aims at the rate itself
        if by_time:
            from .latency import params_for_latency

            target = params_for_latency(spec, latency, align)
        else:
            target = self._params_to_keep(spec)
        floor = min_params(spec, align, m.removes_layers)
        if target < floor:
            raise PruneError(
                f"target of {target} parameters is below the {floor} that method {self.method!r} can reach "
                f"(one KV group with one query head and a {align}-aligned MLP per layer, embeddings kept); "
                "use a smaller ratio, a smaller --align, or the depth method")
        return ResolvedPrune(self, target, align, latency)


@dataclass(frozen=True)
class ResolvedPrune:
    """A request made concrete for one model: what `prune_model` and the incremental stages run."""

    request: PruneRequest
    target_params: Optional[int]  # None: a latency-aware method aims at `latency`'s rate
    align: int
    latency: Any = None  # prune.latency.LatencyTarget, or None without a device

    @property
    def by_time(self) -> bool:
        return self.latency is not None and self.latency.goal is not None


__all__ = ["PruneRequest", "ResolvedPrune", "min_params", "TARGETS", "SPEED_TARGETS"]
