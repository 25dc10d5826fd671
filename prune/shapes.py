"""Uniform shapes: one (KV groups, query heads per group, FFN width) for every kept layer.

A model whose layers all have the same widths is a plain `llama` / `qwen2` GGUF, which llama.cpp
runs faster than its `deci` arch at the same shape (per-layer head arrays cost ~5-10% on CPU,
docs/DESIGN.md §4) and which every app loads. `uniform` and `search` both pick their widths here:
the options are pure arithmetic on the spec, so the choice can be tested without a model.

Head counts are whole; an attention alignment that some head count reaches is honoured (o_proj
rows of n_heads·head_dim are whole quant blocks), else attention is cut at whole-head granularity.
FFN widths are multiples of `align` (at least `align`, at most the original width).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgeprune.shape.spec import ArchSpec, LayerSpec, attention_params, mlp_params
from edgeprune.shape.units import attn_width_reachable


@dataclass(frozen=True)
class AttnWidth:
    n_kv: int  # KV groups kept
    group: int  # query heads per group kept

    @property
    def n_heads(self) -> int:
        return self.n_kv * self.group


def attention_options(spec: ArchSpec, align: int) -> list[AttnWidth]:
    """Every (KV groups, heads per group) a uniform layer of `spec` can be cut to, largest first.
    GQA stays integral: a group keeps the same number of heads everywhere."""
    lay = spec.layers[0]
    if not lay.has_attention:
        return []
    strict = attn_width_reachable(lay.n_heads, spec.head_dim, align)
    out = [AttnWidth(kv, g) for kv in range(lay.n_kv_heads, 0, -1) for g in range(lay.group_size, 0, -1)
           if not strict or (kv * g * spec.head_dim) % align == 0]
    return sorted(out, key=lambda a: (-a.n_heads, -a.n_kv))


def ffn_options(ffn0: int, align: int) -> list[int]:
    """Aligned FFN widths from the original down to one alignment chunk (the original width
    itself is kept even when it is not a multiple)."""
    if ffn0 <= 0:
        return []
    widths = list(range((ffn0 // align) * align, 0, -align)) or [ffn0]
    return sorted(set(widths) | {ffn0}, reverse=True)


def uniform_spec(spec: ArchSpec, attn: Optional[AttnWidth], ffn: int, *, n_layers: Optional[int] = None,
                 hidden: Optional[int] = None) -> ArchSpec:
    """`spec` with every layer at (attn, ffn), `n_layers` of them and residual width `hidden`."""
    from dataclasses import replace

    lay = LayerSpec(attn.n_heads, attn.n_kv, ffn) if attn else LayerSpec(0, 0, ffn)
    return replace(spec, hidden_size=hidden or spec.hidden_size,
                   layers=(lay,) * (spec.n_layers if n_layers is None else n_layers))


def ffn_for_params(spec: ArchSpec, attn: Optional[AttnWidth], target: int, align: int, *,
                   n_layers: Optional[int] = None, hidden: Optional[int] = None) -> Optional[int]:
    """The aligned FFN width whose uniform spec lands closest to `target` parameters (None when
    even the smallest width is further above the target than one chunk)."""
    opts = ffn_options(spec.layers[0].ffn_dim, align)
    if not opts:
        return None
    return min(opts, key=lambda w: (abs(uniform_spec(spec, attn, w, n_layers=n_layers, hidden=hidden).n_params
                                         - target), -w))


def layer_params(spec: ArchSpec, attn: Optional[AttnWidth], ffn: int) -> int:
    bias = spec.has_bias
    a = attention_params(spec.hidden_size, spec.head_dim, attn.n_heads, attn.n_kv, bias) if attn else 0
    return a + mlp_params(spec.hidden_size, ffn)


@dataclass(frozen=True)
class UniformChoice:
    attn: Optional[AttnWidth]
    ffn: int
    params: int  # parameters of the whole model at this shape
    miss: float  # (params - target) / target

    def layer(self) -> LayerSpec:
        a = self.attn
        return LayerSpec(a.n_heads, a.n_kv, self.ffn) if a else LayerSpec(0, 0, self.ffn)


def closest_uniform(spec: ArchSpec, target: int, align: int) -> UniformChoice:
    """LLM-Pruner's same ratio in attention and MLP, at uniform widths: the attention width whose
    kept fraction is closest to the overall kept fraction of the layers, then the FFN width that
    brings the model closest to `target`. Attention options whose FFN would leave the aligned
    range are skipped (the ratio is then taken from the MLP side)."""
    lay0 = spec.layers[0]
    attn0 = attention_params(spec.hidden_size, spec.head_dim, lay0.n_heads, lay0.n_kv_heads, spec.has_bias)
    per_layer0 = layer_params(spec, AttnWidth(lay0.n_kv_heads, lay0.group_size) if lay0.has_attention else None,
                              lay0.ffn_dim)
    fixed = spec.n_params - spec.n_layers * per_layer0
    keep = max(0.0, (target - fixed) / max(1, spec.n_layers * per_layer0))
    opts = attention_options(spec, align) or [None]
    cands = []
    for a in opts:
        w = ffn_for_params(spec, a, target, align) if lay0.has_mlp else 0
        p = uniform_spec(spec, a, w or 0).n_params
        a_frac = (attention_params(spec.hidden_size, spec.head_dim, a.n_heads, a.n_kv, spec.has_bias) / attn0
                  if a else 0.0)
        cands.append((abs(p - target) / target, abs(a_frac - keep), a, w or 0, p))
    # closest ratio among the shapes that reach the target as well as any uniform shape can
    best_miss = min(c[0] for c in cands)
    step = mlp_params(spec.hidden_size, align) * spec.n_layers / max(1, target)
    near = [c for c in cands if c[0] <= best_miss + step / 2]
    _, _, a, w, p = min(near, key=lambda c: (c[1], c[0]))
    return UniformChoice(a, w, p, (p - target) / target)


__all__ = ["AttnWidth", "attention_options", "ffn_options", "uniform_spec", "ffn_for_params", "layer_params",
           "UniformChoice", "closest_uniform"]
