"""Minimal prunable groups of an EdgeLM and the tensor slices each one owns.

Three kinds of unit (EfficientLLM's minimal groups, DESIGN §4 surgery units):
- `ffn.{i}`: one SwiGLU channel of layer i = gate/up row + down column;
- `kv.{i}`: one KV group of layer i = a K and V head plus the query heads that read it (rows of
  q/k/v and their biases, columns of o_proj); GQA stays integral;
- `hidden`: one residual-stream channel across the whole model (embedding column, every norm
  entry, q/k/v/gate/up columns, o/down rows, untied head column).

`param_slices(spec)` says, per parameter name, which dimension each group kind indexes and how
many contiguous elements one unit spans there; the Taylor saliency per unit is reduced along
exactly the slices prune/'s surgery cuts (remove_kv_groups, remove_mlp_channels,
remove_hidden_channels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeprune.spec import ArchSpec


@dataclass(frozen=True)
class Slice:
    group: str  # "ffn.{i}", "kv.{i}" or "hidden"
    dim: int  # tensor dimension the unit indexes
    span: int  # contiguous elements per unit along `dim` (head_dim for a KV head, g*head_dim for q)


def param_slices(spec: ArchSpec) -> dict[str, list[Slice]]:
    """parameter name -> the group slices that cut it (tied lm_head omitted: it is the embedding)."""
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
            g, kv = lay.group_size, f"kv.{i}"
            out[p + "input_layernorm.weight"] = [Slice("hidden", 0, 1)]
            out[p + "self_attn.q_proj.weight"] = [Slice(kv, 0, g * d), Slice("hidden", 1, 1)]
            out[p + "self_attn.k_proj.weight"] = [Slice(kv, 0, d), Slice("hidden", 1, 1)]
            out[p + "self_attn.v_proj.weight"] = [Slice(kv, 0, d), Slice("hidden", 1, 1)]
            out[p + "self_attn.o_proj.weight"] = [Slice(kv, 1, g * d), Slice("hidden", 0, 1)]
            if spec.has_bias:
                out[p + "self_attn.q_proj.bias"] = [Slice(kv, 0, g * d)]
                out[p + "self_attn.k_proj.bias"] = [Slice(kv, 0, d)]
                out[p + "self_attn.v_proj.bias"] = [Slice(kv, 0, d)]
        if lay.has_mlp:
            f = f"ffn.{i}"
            out[p + "post_attention_layernorm.weight"] = [Slice("hidden", 0, 1)]
            out[p + "mlp.gate_proj.weight"] = [Slice(f, 0, 1), Slice("hidden", 1, 1)]
            out[p + "mlp.up_proj.weight"] = [Slice(f, 0, 1), Slice("hidden", 1, 1)]
            out[p + "mlp.down_proj.weight"] = [Slice(f, 1, 1), Slice("hidden", 0, 1)]
    return out


def group_sizes(spec: ArchSpec) -> dict[str, int]:
    """Units per group: hidden channels, KV groups per attention layer, FFN channels per MLP."""
    sizes = {"hidden": spec.hidden_size}
    for i, lay in enumerate(spec.layers):
        if lay.has_attention:
            sizes[f"kv.{i}"] = lay.n_kv_heads
        if lay.has_mlp:
            sizes[f"ffn.{i}"] = lay.ffn_dim
    return sizes


def unit_param_cost(spec: ArchSpec, group: str) -> int:
    """Parameters removed with one unit of `group` (the exact change of spec.n_params)."""
    if group == "hidden":
        smaller = _with_hidden(spec, spec.hidden_size - 1)
        return spec.n_params - smaller.n_params
    kind, i = group.split(".")
    lay = spec.layers[int(i)]
    if kind == "ffn":
        return 3 * spec.hidden_size
    g, d, h = lay.group_size, spec.head_dim, spec.hidden_size
    per = 2 * g * d * h + 2 * d * h  # q rows + o cols, k + v rows
    if spec.has_bias:
        per += g * d + 2 * d
    return per


def _with_hidden(spec: ArchSpec, hidden: int) -> ArchSpec:
    from dataclasses import replace

    return replace(spec, hidden_size=hidden)


@torch.no_grad()
def taylor_saliency(named_params: dict[str, torch.nn.Parameter], spec: ArchSpec) -> dict[str, torch.Tensor]:
    """First-order Taylor saliency Σ|w·∂L/∂w| per unit (LLM-Pruner element-wise, EfficientLLM),
    one fp32 vector per group. Parameters without a gradient contribute nothing."""
    sizes = group_sizes(spec)
    dev = next(iter(named_params.values())).device
    out = {g: torch.zeros(n, dtype=torch.float32, device=dev) for g, n in sizes.items()}
    for name, slices in param_slices(spec).items():
        p = named_params.get(name)
        if p is None or p.grad is None:
            continue
        s = (p.detach().float() * p.grad.detach().float()).abs()  # element-wise |w·g|
        for sl in slices:
            other = [k for k in range(s.dim()) if k != sl.dim]
            per_index = s.sum(dim=other) if other else s  # (size along sl.dim,)
            out[sl.group] += per_index.view(-1, sl.span).sum(1)  # (units,)
    return out
