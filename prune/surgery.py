"""Surgery: remove units from an EdgeLM and its spec together (docs/DESIGN.md §4).

Every function here cuts tensors in place of the old ones, assigns a NEW `model.spec` that
describes the new widths, and returns the model. None of them decides *which* units go (that is
the scores' and methods' job). When the removed units contribute exactly nothing (e.g. the
o_proj columns of a removed head are zero), the cut model's logits equal the uncut model's.

Optimizer state: the new tensors are new `nn.Parameter` objects. Pass a `record` dict and each
function appends, per parameter name, the cut it made as `(dim, kept_indices)` (indices into the
tensor *as it was before that cut*); a removed tensor is recorded as `None`. The trainer replays
the cuts on AdamW's exp_avg / exp_avg_sq with `apply_cuts` (pruning-aware training).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import DecoderLayer, EdgeLM

# param name -> list of cuts in order; a cut is (dim, LongTensor of kept indices) or None (removed)
CutRecord = dict[str, list[Optional[tuple[int, torch.Tensor]]]]


# ----- helpers ------------------------------------------------------------------------------------

def _kept(n: int, removed: Iterable[int], what: str) -> torch.Tensor:
    removed = sorted(set(int(r) for r in removed))
    bad = [r for r in removed if not 0 <= r < n]
    if bad:
        raise PruneError(f"cannot remove {what} {bad}: valid indices are 0..{n - 1}")
    keep = [i for i in range(n) if i not in set(removed)]
    return torch.tensor(keep, dtype=torch.long)


def _note(record: Optional[CutRecord], name: str, dim: Optional[int], kept: Optional[torch.Tensor]) -> None:
    if record is not None:
        record.setdefault(name, []).append(None if dim is None else (dim, kept.clone()))


def _cut_param(module: nn.Module, attr: str, dim: int, kept: torch.Tensor,
               name: str, record: Optional[CutRecord]) -> None:
    """Replace module.<attr> by its slice along `dim` (a fresh Parameter, same requires_grad)."""
    old = getattr(module, attr)
    new = nn.Parameter(old.detach().index_select(dim, kept.to(old.device)).clone(),
                       requires_grad=old.requires_grad)
    setattr(module, attr, new)
    _note(record, name, dim, kept)


def _cut_linear(lin: nn.Linear, dim: int, kept: torch.Tensor, name: str,
                record: Optional[CutRecord]) -> None:
    """Cut a Linear's rows (dim 0: outputs, bias too) or columns (dim 1: inputs)."""
    _cut_param(lin, "weight", dim, kept, f"{name}.weight", record)
    if dim == 0:
        lin.out_features = len(kept)
        if lin.bias is not None:
            _cut_param(lin, "bias", 0, kept, f"{name}.bias", record)
    else:
        lin.in_features = len(kept)


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """Row indices of whole heads: head h owns rows h*head_dim .. (h+1)*head_dim-1."""
    # heads: (k,) -> (k * head_dim,)
    return (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)


def _layer(model: EdgeLM, layer: int) -> DecoderLayer:
    if not 0 <= layer < len(model.model.layers):
        raise PruneError(f"layer {layer} does not exist: the model has {len(model.model.layers)} layers")
    return model.model.layers[layer]


def _drop_params(record: Optional[CutRecord], prefix: str, module: Optional[nn.Module]) -> None:
    if record is not None and module is not None:
        for n, _ in module.named_parameters():
            _note(record, f"{prefix}.{n}", None, None)


# ----- attention ----------------------------------------------------------------------------------

def _cut_heads(model: EdgeLM, layer: int, kept_q: torch.Tensor, kept_kv: torch.Tensor,
               record: Optional[CutRecord]) -> EdgeLM:
    spec = model.spec
    attn = _layer(model, layer).self_attn
    d, p = spec.head_dim, f"model.layers.{layer}.self_attn"
    if len(kept_q) < attn.n_heads:
        _cut_linear(attn.q_proj, 0, _head_rows(kept_q, d), f"{p}.q_proj", record)
        _cut_linear(attn.o_proj, 1, _head_rows(kept_q, d), f"{p}.o_proj", record)
    if len(kept_kv) < attn.n_kv_heads:
        _cut_linear(attn.k_proj, 0, _head_rows(kept_kv, d), f"{p}.k_proj", record)
        _cut_linear(attn.v_proj, 0, _head_rows(kept_kv, d), f"{p}.v_proj", record)
    attn.n_heads, attn.n_kv_heads = len(kept_q), len(kept_kv)
    model.spec = spec.with_layer(layer, n_heads=len(kept_q), n_kv_heads=len(kept_kv))
    return model


def remove_kv_groups(model: EdgeLM, layer: int, groups: Sequence[int],
                     record: Optional[CutRecord] = None) -> EdgeLM:
    """Remove KV heads `groups` of `layer` together with the query heads that read them (so
    the group size stays whole). Removing every group is refused: use `remove_attention`."""
    lay = model.spec.layers[layer] if 0 <= layer < model.spec.n_layers else None
    if lay is None or not lay.has_attention:
        raise PruneError(f"layer {layer} has no attention to remove KV groups from")
    if not groups:
        return model
    kept_kv = _kept(lay.n_kv_heads, groups, f"KV groups of layer {layer}")
    if len(kept_kv) == 0:
        raise PruneError(f"removing all {lay.n_kv_heads} KV groups of layer {layer} would delete its "
                         "attention: call remove_attention for that explicitly")
    g = lay.group_size
    kept_q = (kept_kv[:, None] * g + torch.arange(g)[None, :]).reshape(-1)  # HF repeat_kv order
    return _cut_heads(model, layer, kept_q, kept_kv, record)


def remove_query_heads(model: EdgeLM, layer: int, heads: Sequence[int],
                       record: Optional[CutRecord] = None) -> EdgeLM:
    """Remove single query heads; every KV group must lose the same number (GQA stays
    integral: repeat_kv maps query head h to KV head h // group_size)."""
    lay = model.spec.layers[layer] if 0 <= layer < model.spec.n_layers else None
    if lay is None or not lay.has_attention:
        raise PruneError(f"layer {layer} has no attention to remove query heads from")
    if not heads:
        return model
    kept_q = _kept(lay.n_heads, heads, f"query heads of layer {layer}")
    g = lay.group_size
    per_group = [sum(1 for h in kept_q.tolist() if h // g == j) for j in range(lay.n_kv_heads)]
    if len(set(per_group)) != 1 or per_group[0] == 0:
        raise PruneError(
            f"layer {layer}: removing query heads {sorted(heads)} leaves {per_group} heads per KV group; "
            "each group must keep the same number (>= 1) of query heads; remove whole groups with "
            "remove_kv_groups")
    return _cut_heads(model, layer, kept_q, torch.arange(lay.n_kv_heads), record)


def remove_attention(model: EdgeLM, layer: int, record: Optional[CutRecord] = None) -> EdgeLM:
    """Delete the whole attention block of `layer` (and its input_layernorm): an explicit choice."""
    block = _layer(model, layer)
    if block.self_attn is None:
        raise PruneError(f"layer {layer} has no attention block")
    _drop_params(record, f"model.layers.{layer}.self_attn", block.self_attn)
    _drop_params(record, f"model.layers.{layer}.input_layernorm", block.input_layernorm)
    block.self_attn = block.input_layernorm = None
    model.spec = model.spec.with_layer(layer, n_heads=0, n_kv_heads=0)
    return model


# ----- MLP ----------------------------------------------------------------------------------------

def remove_mlp_channels(model: EdgeLM, layer: int, channels: Sequence[int],
                        record: Optional[CutRecord] = None) -> EdgeLM:
    """Remove SwiGLU channels: gate/up rows and down columns. Never leaves width 0: removing
    the whole MLP is `remove_mlp`, an explicit choice."""
    block = _layer(model, layer)
    if block.mlp is None:
        raise PruneError(f"layer {layer} has no MLP to remove channels from")
    if not channels:
        return model
    kept = _kept(block.mlp.gate_proj.out_features, channels, f"MLP channels of layer {layer}")
    if len(kept) == 0:
        raise PruneError(f"removing every MLP channel of layer {layer} would delete the MLP: "
                         "call remove_mlp for that explicitly")
    p = f"model.layers.{layer}.mlp"
    _cut_linear(block.mlp.gate_proj, 0, kept, f"{p}.gate_proj", record)
    _cut_linear(block.mlp.up_proj, 0, kept, f"{p}.up_proj", record)
    _cut_linear(block.mlp.down_proj, 1, kept, f"{p}.down_proj", record)
    model.spec = model.spec.with_layer(layer, ffn_dim=len(kept))
    return model


def remove_mlp(model: EdgeLM, layer: int, record: Optional[CutRecord] = None) -> EdgeLM:
    """Delete the whole MLP of `layer` (and its post_attention_layernorm)."""
    block = _layer(model, layer)
    if block.mlp is None:
        raise PruneError(f"layer {layer} has no MLP block")
    _drop_params(record, f"model.layers.{layer}.mlp", block.mlp)
    _drop_params(record, f"model.layers.{layer}.post_attention_layernorm", block.post_attention_layernorm)
    block.mlp = block.post_attention_layernorm = None
    model.spec = model.spec.with_layer(layer, ffn_dim=0)
    return model


# ----- layers -------------------------------------------------------------------------------------

def remove_layers(model: EdgeLM, layers: Sequence[int], record: Optional[CutRecord] = None) -> EdgeLM:
    """Delete whole decoder layers; later layers are renumbered (record maps old names)."""
    n = len(model.model.layers)
    kept = _kept(n, layers, "layers").tolist()
    if not kept:
        raise PruneError(f"removing all {n} layers leaves no model")
    if record is not None:
        for i in sorted(set(layers)):
            _drop_params(record, f"model.layers.{i}", model.model.layers[i])
        for new_i, old_i in enumerate(kept):  # renames: record as a marker the trainer can read
            if new_i != old_i:
                record.setdefault("__renamed_layers__", []).append((old_i, new_i))  # type: ignore[arg-type]
    model.model.layers = nn.ModuleList(model.model.layers[i] for i in kept)
    model.spec = model.spec.with_layers([model.spec.layers[i] for i in kept])
    return model


# ----- hidden (embedding) channels -----------------------------------------------------------------

def remove_hidden_channels(model: EdgeLM, channels: Sequence[int],
                           record: Optional[CutRecord] = None) -> EdgeLM:
    """EfficientLLM's "stem" cut: remove residual-stream channels everywhere: embedding
    columns, every RMSNorm weight, every q/k/v/gate/up input column, every o/down output row and
    the LM head's columns.

    RMSNorm averages x² over the hidden width, so dropping channels changes the denominator
    from d to d'. To keep the cut exact when the removed channels are zero, each norm weight is
    scaled by sqrt(d/d') and the spec's rms_norm_eps by d/d' (mean' + eps' = d/d'·(mean + eps)).
    """
    spec = model.spec
    d = spec.hidden_size
    kept = _kept(d, channels, "hidden channels")
    if len(kept) == d:
        return model
    d_new = len(kept)
    if d_new == 0:
        raise PruneError("removing every hidden channel leaves no model")
    scale = math.sqrt(d / d_new)

    def cut_norm(norm, name):
        _cut_param(norm, "weight", 0, kept, f"{name}.weight", record)
        with torch.no_grad():
            norm.weight.mul_(scale)
        norm.eps = spec.rms_norm_eps * d / d_new

    emb = model.model.embed_tokens
    _cut_param(emb, "weight", 1, kept, "model.embed_tokens.weight", record)
    emb.embedding_dim = d_new
    for i, block in enumerate(model.model.layers):
        p = f"model.layers.{i}"
        if block.self_attn is not None:
            cut_norm(block.input_layernorm, f"{p}.input_layernorm")
            for proj in ("q_proj", "k_proj", "v_proj"):
                _cut_linear(getattr(block.self_attn, proj), 1, kept, f"{p}.self_attn.{proj}", record)
            _cut_linear(block.self_attn.o_proj, 0, kept, f"{p}.self_attn.o_proj", record)
        if block.mlp is not None:
            cut_norm(block.post_attention_layernorm, f"{p}.post_attention_layernorm")
            for proj in ("gate_proj", "up_proj"):
                _cut_linear(getattr(block.mlp, proj), 1, kept, f"{p}.mlp.{proj}", record)
            _cut_linear(block.mlp.down_proj, 0, kept, f"{p}.mlp.down_proj", record)
    cut_norm(model.model.norm, "model.norm")
    if spec.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        model.lm_head.in_features = d_new
    else:
        _cut_linear(model.lm_head, 1, kept, "lm_head", record)
    from dataclasses import replace

    model.spec = replace(spec, hidden_size=d_new, rms_norm_eps=spec.rms_norm_eps * d / d_new)
    return model


# ----- several unit groups at once ------------------------------------------------------------------

def remove_units(model: EdgeLM, removed: dict[str, Sequence[int]], record: Optional[CutRecord] = None) -> EdgeLM:
    """Remove units of several cut groups in one go (`units.group_sizes` names them: `hidden`,
    `kv.{i}` whole KV groups with their query heads, `ffn.{i}` MLP channels), each a list of unit
    indices into the model as it is now. The per-layer cuts go first and the hidden channels last,
    so every group's indices refer to the tensors before any of these cuts (the record keeps the
    order for `apply_cuts`). Pruning-aware training cuts through this."""
    for group in sorted(removed, key=lambda g: g == "hidden"):
        units = list(removed[group])
        if not units:
            continue
        if group == "hidden":
            model = remove_hidden_channels(model, units, record=record)
            continue
        kind, _, i = group.partition(".")
        if kind not in ("ffn", "kv") or not i.isdigit():
            raise PruneError(f"unknown unit group {group!r}: hidden, kv.<layer> or ffn.<layer>")
        fn = remove_mlp_channels if kind == "ffn" else remove_kv_groups
        model = fn(model, int(i), units, record=record)
    return model


# ----- optimizer state ----------------------------------------------------------------------------

def apply_cuts(tensor: torch.Tensor, cuts: Sequence[Optional[tuple[int, torch.Tensor]]]) -> Optional[torch.Tensor]:
    """Replay recorded cuts on a tensor shaped like the parameter before surgery (e.g. AdamW's
    exp_avg). Returns None when the parameter was removed."""
    for cut in cuts:
        if cut is None:
            return None
        dim, kept = cut
        tensor = tensor.index_select(dim, kept.to(tensor.device))
    return tensor


__all__ = ["remove_kv_groups", "remove_query_heads", "remove_attention", "remove_mlp_channels",
           "remove_mlp", "remove_layers", "remove_hidden_channels", "remove_units", "apply_cuts", "CutRecord"]
