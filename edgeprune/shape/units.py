"""Prunable units of a model, read off its ArchSpec alone (DESIGN §4; Torch-Pruning's lesson:
one place knows which tensor slices move together).

Unit kinds, with the key of the group of units they belong to:

| kind      | group key      | one unit is                                              | alignment rule      |
|-----------|----------------|----------------------------------------------------------|---------------------|
| q_head    | `q.{i}`        | a query head: head_dim rows of q (+bias), cols of o      | n_heads·head_dim    |
| kv_group  | `kv.{i}`       | a K and a V head plus the query heads that read them     | n_heads·head_dim    |
| ffn       | `ffn.{i}`      | a SwiGLU channel: gate/up row + down column              | ffn_dim             |
| hidden    | `hidden`       | a residual channel across the model (embedding column,   | hidden_size         |
|           |                | every norm entry, q/k/v/gate/up cols, o/down rows, head) |                     |
| attention | `attention.{i}`| the whole attention block (+ its input norm)             | none (rows vanish)  |
| mlp       | `mlp.{i}`      | the whole MLP block (+ its norm)                         | none                |
| layer     | `layer.{i}`    | the whole decoder layer                                  | none                |

Query heads go one per KV group at a time (GQA stays integral). The *alignment rule* names the
row length a removal changes: llama.cpp quantizes each matrix row in blocks (32 elements for
Q4_0/Q8_0, 256 for k-quants), and a row that is not a whole number of blocks falls back to a
bigger type. Those row lengths are hidden_size (q/k/v/gate/up and the embedding),
n_heads·head_dim (o_proj) and ffn_dim (down_proj); k/v output widths never are.

`alignment_for` is the one function that decides the width multiple for a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional, Sequence

import torch

from edgeprune.base.errors import SpecError
from edgeprune.shape.spec import ArchSpec, attention_params, mlp_params

UNIT_KINDS = ("q_head", "kv_group", "ffn", "hidden", "attention", "mlp", "layer")

LARGE_HIDDEN = 1024  # at or above: k-quant alignment (256) by default; below: 32-block quants
MEDIUM_HIDDEN = 256  # below: toy models, align 8 (repack kernels); keeps tests' targets reachable


@dataclass(frozen=True)
class Slice:
    """The part of one parameter a unit of `group` owns: `span` contiguous indices along `dim`."""

    group: str  # "q.{i}", "kvh.{i}" (K/V heads alone), "kv.{i}", "ffn.{i}" or "hidden"
    dim: int  # tensor dimension the unit indexes
    span: int  # contiguous elements per unit along `dim` (head_dim for a head, g·head_dim for a group)


@dataclass(frozen=True)
class UnitGroup:
    """All units of one kind in one place of the model."""

    key: str  # "q.3", "kv.3", "ffn.3", "hidden", "attention.3", "mlp.3", "layer.3"
    kind: str  # one of UNIT_KINDS
    layer: Optional[int]  # decoder layer (None for hidden)
    count: int  # units present now
    cost: int  # parameters one unit removes (exact: the change of spec.n_params)
    aligns: str  # the width the alignment rule applies to: "attn_width", "ffn_dim", "hidden_size", ""
    step: int = 1  # units removed together at the finest legal granularity (q heads: one per group)


# ----- parameter slices and exact costs --------------------------------------------------------

def param_slices(spec: ArchSpec) -> dict[str, list[Slice]]:
    """Parameter name -> the slices that units cut (tied lm_head omitted: it is the embedding).

    Query heads and K/V heads are listed separately (`q.{i}`, `kvh.{i}`); a KV group's slices are
    their union (`kv_group_slices`). Surgery (prune/surgery.py) cuts exactly these slices."""
    d = spec.head_dim
    out: dict[str, list[Slice]] = {
        "model.embed_tokens.weight": [Slice("hidden", 1, 1)],
        "model.norm.weight": [Slice("hidden", 0, 1)],
    }
    if not spec.tie_word_embeddings:
        out["lm_head.weight"] = [Slice("hidden", 1, 1)]
    for i, lay in enumerate(spec.layers):
        p = f"model.layers.{i}."
        if lay.has_attention:
            q, kv = f"q.{i}", f"kvh.{i}"
            out[p + "input_layernorm.weight"] = [Slice("hidden", 0, 1)]
            out[p + "self_attn.q_proj.weight"] = [Slice(q, 0, d), Slice("hidden", 1, 1)]
            out[p + "self_attn.k_proj.weight"] = [Slice(kv, 0, d), Slice("hidden", 1, 1)]
            out[p + "self_attn.v_proj.weight"] = [Slice(kv, 0, d), Slice("hidden", 1, 1)]
            out[p + "self_attn.o_proj.weight"] = [Slice(q, 1, d), Slice("hidden", 0, 1)]
            if spec.has_bias:
                out[p + "self_attn.q_proj.bias"] = [Slice(q, 0, d)]
                out[p + "self_attn.k_proj.bias"] = [Slice(kv, 0, d)]
                out[p + "self_attn.v_proj.bias"] = [Slice(kv, 0, d)]
        if lay.has_mlp:
            f = f"ffn.{i}"
            out[p + "post_attention_layernorm.weight"] = [Slice("hidden", 0, 1)]
            out[p + "mlp.gate_proj.weight"] = [Slice(f, 0, 1), Slice("hidden", 1, 1)]
            out[p + "mlp.up_proj.weight"] = [Slice(f, 0, 1), Slice("hidden", 1, 1)]
            out[p + "mlp.down_proj.weight"] = [Slice(f, 1, 1), Slice("hidden", 0, 1)]
    return out


def q_head_cost(spec: ArchSpec) -> int:
    """Parameters of one query head: head_dim rows of q (+ bias) and head_dim columns of o."""
    return 2 * spec.hidden_size * spec.head_dim + (spec.head_dim if spec.has_bias else 0)


def kv_group_cost(spec: ArchSpec, layer: int) -> int:
    """Parameters of one KV group of `layer`: its K and V heads and its query heads."""
    lay, h, d = spec.layers[layer], spec.hidden_size, spec.head_dim
    return lay.group_size * q_head_cost(spec) + 2 * h * d + (2 * d if spec.has_bias else 0)


def hidden_channel_cost(spec: ArchSpec) -> int:
    """Parameters of one residual channel (embedding column, norms, every projection's row or
    column, the untied head's column): the exact change of n_params."""
    return spec.n_params - replace(spec, hidden_size=spec.hidden_size - 1).n_params


def unit_groups(spec: ArchSpec) -> list[UnitGroup]:
    """Every unit group of the model, finest kinds first, then blocks and layers.

    `cost` is exact for a unit that leaves its block non-empty; removing the last unit of a
    block also removes the block's norm (that is the `attention` / `mlp` unit's cost)."""
    out = [UnitGroup("hidden", "hidden", None, spec.hidden_size, hidden_channel_cost(spec), "hidden_size")]
    for i, lay in enumerate(spec.layers):
        c = spec.layer_param_counts(i)
        if lay.has_attention:
            out.append(UnitGroup(f"q.{i}", "q_head", i, lay.n_heads, q_head_cost(spec), "attn_width",
                                 step=lay.n_kv_heads))
            out.append(UnitGroup(f"kv.{i}", "kv_group", i, lay.n_kv_heads, kv_group_cost(spec, i), "attn_width"))
            out.append(UnitGroup(f"attention.{i}", "attention", i, 1, c["attention"], ""))
        if lay.has_mlp:
            # one FFN channel is a row of gate and of up and a column of down
            out.append(UnitGroup(f"ffn.{i}", "ffn", i, lay.ffn_dim, 3 * spec.hidden_size, "ffn_dim"))
            out.append(UnitGroup(f"mlp.{i}", "mlp", i, 1, c["mlp"], ""))
        out.append(UnitGroup(f"layer.{i}", "layer", i, 1, c["attention"] + c["mlp"], ""))
    return out


def group_sizes(spec: ArchSpec) -> dict[str, int]:
    """Units per *cut* group (the ones pruning-aware training removes a few at a time): hidden
    channels, KV groups per attention layer, FFN channels per MLP."""
    return {g.key: g.count for g in unit_groups(spec) if g.kind in ("hidden", "kv_group", "ffn")}


def unit_param_cost(spec: ArchSpec, group: str) -> int:
    """Parameters removed with one unit of `group` (the exact change of spec.n_params)."""
    for g in unit_groups(spec):
        if g.key == group:
            return g.cost
    raise SpecError(f"no unit group {group!r} in this spec")


# ----- first-order Taylor saliency per unit ----------------------------------------------------

@torch.no_grad()
def taylor_saliency(named_params: dict[str, torch.nn.Parameter], spec: ArchSpec) -> dict[str, torch.Tensor]:
    """First-order Taylor saliency Σ|w·∂L/∂w| per unit (LLM-Pruner element-wise, Adapt-Pruner,
    EfficientLLM), reduced along exactly the slices surgery cuts: one fp32 vector per group,
    `q.{i}` (per query head), `kvh.{i}` (K/V heads alone), `kv.{i}` (whole KV groups: K/V plus
    their query heads), `ffn.{i}` and `hidden`. Parameters without a gradient contribute nothing."""
    dev = next(iter(named_params.values())).device
    sizes = {"hidden": spec.hidden_size}
    for i, lay in enumerate(spec.layers):
        if lay.has_attention:
            sizes[f"q.{i}"], sizes[f"kvh.{i}"] = lay.n_heads, lay.n_kv_heads
        if lay.has_mlp:
            sizes[f"ffn.{i}"] = lay.ffn_dim
    out = {g: torch.zeros(n, dtype=torch.float32, device=dev) for g, n in sizes.items()}
    for name, slices in param_slices(spec).items():
        p = named_params.get(name)
        if p is None or p.grad is None:
            continue
        # |w·∂L/∂w| is the first-order estimate of |ΔL| when w is set to zero
        s = (p.detach().float() * p.grad.detach().float()).abs()  # same shape as p
        for sl in slices:
            other = [k for k in range(s.dim()) if k != sl.dim]
            per_index = s.sum(dim=other) if other else s  # (p.shape[sl.dim],)
            out[sl.group] += per_index.view(-1, sl.span).sum(1)  # (units,)
    for i, lay in enumerate(spec.layers):
        if lay.has_attention:  # a group = its K/V heads + its query heads (GQA order: group-major)
            q = out[f"q.{i}"].view(lay.n_kv_heads, lay.group_size).sum(1)  # (n_kv_heads,)
            out[f"kv.{i}"] = out[f"kvh.{i}"] + q
    return out


# ----- alignment --------------------------------------------------------------------------------

def quant_block(qtype: str) -> int:
    """Row-length multiple a llama.cpp ftype / GGML type needs for its target type (Q4_K_M -> Q4_K
    -> 256, Q4_0 / Q8_0 -> 32, F16 / F32 -> 1). An ftype is looked up in the GGUF preset table
    (edgeprune/shape/quant_presets.py), a GGML type in gguf's own; unknown names raise SpecError."""
    from edgeprune.shape.quant_presets import gguf_base_type, ggml_block

    try:
        return ggml_block(gguf_base_type(qtype))
    except KeyError:
        raise SpecError(f"unknown quant type {qtype!r} (e.g. Q4_0, Q8_0, Q4_K_M, F16)") from None


def default_align(spec: ArchSpec) -> int:
    """The width multiple when neither --align nor a device / quant type says: 256 when
    hidden_size >= 1024 (rows of 256 let k-quants apply), 32 when hidden_size >= 256 (Q4_0 / Q8_0
    blocks), else 8 (toy models)."""
    if spec.hidden_size >= LARGE_HIDDEN:
        return 256
    return 32 if spec.hidden_size >= MEDIUM_HIDDEN else 8


def alignment_for(spec: ArchSpec, *, align: Optional[int] = None, quants: Iterable[str] = (),
                  devices: Sequence[Any] = ()) -> int:
    """THE width multiple of a run. `align` (the user's --align) wins. Otherwise the strictest of
    what the target quant types need (their block size: 256 for k-quants, 32 for Q4_0 / Q8_0) and
    what the devices' profiles ask for (`align`: their repack kernels' row multiple, and the
    blocks of every GGUF type they list when no quant type is named); with none of those, the
    model-size default (`default_align`).

    A block that does not divide hidden_size cannot be honoured (q/k/v/gate/up and the embedding
    have rows of hidden_size, which width pruning keeps): llama.cpp then falls back to a 32-block
    type for those rows anyway, so such a type asks for 32, not for a coarser grid that buys
    nothing."""
    if align is not None:
        if int(align) < 1:
            raise SpecError(f"align must be >= 1, got {align}")
        return int(align)
    def block(q: str) -> int:
        b = quant_block(q)
        return b if spec.hidden_size % b == 0 else min(b, 32)

    quants = [q for q in quants if q]
    wants = [block(q) for q in quants]
    for dev in devices:
        if getattr(dev, "align", None):
            wants.append(int(dev.align))
        if not quants:
            wants += [block(q) for q in getattr(dev, "gguf_quants", ())]
    if not wants:
        return default_align(spec)
    return math.lcm(*wants)


def attn_width_reachable(n_heads: int, head_dim: int, align: int) -> bool:
    """Whether some head count <= n_heads gives an o_proj row (heads·head_dim) that is a whole
    number of `align` blocks; when none does, attention is cut at whole-head granularity."""
    return any((n * head_dim) % align == 0 for n in range(1, n_heads + 1))


def misaligned_rows(spec: ArchSpec, align: int) -> list[str]:
    """Every row length of the spec that is not a multiple of `align` (empty = every matrix row
    is whole quant blocks of that size)."""
    bad = []
    if spec.hidden_size % align:
        bad.append(f"hidden_size {spec.hidden_size}")
    for i, lay in enumerate(spec.layers):
        if lay.has_attention and (lay.n_heads * spec.head_dim) % align:
            bad.append(f"layer {i} heads·head_dim {lay.n_heads * spec.head_dim}")
        if lay.has_mlp and lay.ffn_dim % align:
            bad.append(f"layer {i} ffn_dim {lay.ffn_dim}")
    return bad


__all__ = ["UNIT_KINDS", "Slice", "UnitGroup", "param_slices", "unit_groups", "group_sizes", "unit_param_cost",
           "q_head_cost", "kv_group_cost", "hidden_channel_cost", "taylor_saliency", "quant_block",
           "default_align", "alignment_for", "attn_width_reachable", "misaligned_rows",
           "attention_params", "mlp_params"]
