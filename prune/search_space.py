"""The search space over every axis: whole layers, KV groups, query heads, FFN channels and the
hidden width, each candidate a uniform shape (one width set for every kept layer) sized to a
target.

Why uniform candidates: a file whose layers share their widths is a plain `llama` / `qwen2`
GGUF, which llama.cpp runs faster than `deci` at an equal shape and every app loads; the layers
that matter differently are handled by the depth axis (which layers stay), not by per-layer
widths. Why depth and heads are axes at all: on CPU a layer and a query head cost far more decode
time than their bytes (docs/DESIGN.md §7), so a speed target reached by FFN cuts alone removes
far more parameters than one that also drops layers or heads.

Pure arithmetic on the spec: `candidates` lists every shape on the grid that meets the target
(a parameter count, or a decode rate through the device's latency model), with its FFN width
chosen to sit on the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from edgeprune.shape.spec import ArchSpec, mlp_params

from .shapes import AttnWidth, attention_options, ffn_options, uniform_spec

DEPTH_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)  # kept layers / original layers
HIDDEN_MIN_FRACTION = 0.7  # narrowest residual width tried / original (Minitron keeps most of it)
HIDDEN_STEPS = 6  # at most this many hidden widths on the grid
AXES = ("depth", "heads", "ffn", "hidden")


@dataclass(frozen=True)
class Candidate:
    n_layers: int  # layers kept (the most important by block influence)
    hidden: int  # residual width kept
    attn: Optional[AttnWidth]  # KV groups x query heads per group kept in every layer
    ffn: int  # FFN width in every layer
    params: int
    decode_tps: Optional[float] = None  # predicted on the target device (speed targets / ranking)

    def spec(self, base: ArchSpec) -> ArchSpec:
        return uniform_spec(base, self.attn, self.ffn, n_layers=self.n_layers, hidden=self.hidden)

    def label(self) -> str:
        a = self.attn
        heads = f"{a.n_heads}h/{a.n_kv}kv" if a else "no attn"
        return f"L{self.n_layers} d{self.hidden} {heads} ffn{self.ffn}"


def depth_options(n_layers: int, axes: Sequence[str]) -> list[int]:
    if "depth" not in axes:
        return [n_layers]
    return sorted({max(1, round(n_layers * f)) for f in DEPTH_FRACTIONS}, reverse=True)


def hidden_options(hidden: int, align: int, axes: Sequence[str]) -> list[int]:
    if "hidden" not in axes:
        return [hidden]
    lo = max(align, -(-int(hidden * HIDDEN_MIN_FRACTION) // align) * align)
    widths = list(range((hidden // align) * align, lo - 1, -align))
    if len(widths) > HIDDEN_STEPS:  # evenly spaced, both ends kept
        widths = [widths[round(k * (len(widths) - 1) / (HIDDEN_STEPS - 1))] for k in range(HIDDEN_STEPS)]
    return sorted(set(widths) | {hidden}, reverse=True)


def _largest_meeting(widths: list[int], ok: Callable[[int], bool]) -> Optional[int]:
    """Largest width in `widths` (descending) with ok(width), assuming ok is monotone (true from
    some width down): bisection, a handful of predictions per candidate."""
    if not widths or not ok(widths[-1]):
        return None
    lo, hi = 0, len(widths) - 1  # ok(widths[hi]) holds; find the first index where it holds
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(widths[mid]):
            hi = mid
        else:
            lo = mid + 1
    return widths[lo]


def param_tolerance(base: ArchSpec, target: int, align: int, n_layers: int, hidden: int) -> int:
    """How far from a parameter target a uniform shape may land: 2%, or half of one FFN chunk in
    every layer when that step is coarser."""
    return max(int(0.02 * target), mlp_params(hidden, align) * n_layers // 2)


def candidates(base: ArchSpec, align: int, *, target_params: Optional[int] = None,
               decode_tps: Optional[float] = None, decode_tps_of: Optional[Callable[[ArchSpec], float]] = None,
               axes: Sequence[str] = AXES, depths: Optional[Sequence[int]] = None) -> list[Candidate]:
    """Every grid shape meeting the target (at `depths` kept layers instead of the depth grid
    when given). With `decode_tps` (and `decode_tps_of`, the device's
    prediction) the FFN is the widest that still decodes at that rate; else it is the width that
    lands closest to `target_params` (shapes further than `param_tolerance` are dropped)."""
    if (target_params is None) == (decode_tps is None):
        raise ValueError("give exactly one of target_params and decode_tps")
    if decode_tps is not None and decode_tps_of is None:
        raise ValueError("a decode target needs decode_tps_of")
    attn_opts: list[Any] = attention_options(base, align) if "heads" in axes else []
    if "heads" not in axes and base.layers[0].has_attention:
        lay = base.layers[0]
        attn_opts = [AttnWidth(lay.n_kv_heads, lay.group_size)]
    attn_opts = attn_opts or [None]
    ffn0 = base.layers[0].ffn_dim
    widths = ffn_options(ffn0, align) if "ffn" in axes else [ffn0]
    out: list[Candidate] = []
    for n in (depth_options(base.n_layers, axes) if depths is None else depths):
        for h in hidden_options(base.hidden_size, align, axes):
            for a in attn_opts:
                def spec_at(w: int) -> ArchSpec:
                    return uniform_spec(base, a, w, n_layers=n, hidden=h)

                if decode_tps is not None:
                    w = _largest_meeting(widths, lambda w: decode_tps_of(spec_at(w)) >= decode_tps)
                    if w is None:
                        continue
                    s = spec_at(w)
                    out.append(Candidate(n, h, a, w, s.n_params, decode_tps_of(s)))
                else:
                    w = min(widths, key=lambda w: (abs(spec_at(w).n_params - target_params), -w))
                    s = spec_at(w)
                    if abs(s.n_params - target_params) > param_tolerance(base, target_params, align, n, h):
                        continue
                    tps = decode_tps_of(s) if decode_tps_of else None
                    out.append(Candidate(n, h, a, w, s.n_params, tps))
    return out


__all__ = ["AXES", "Candidate", "candidates", "depth_options", "hidden_options", "param_tolerance"]
