"""The module we trace for ONNX: EdgeLM with its KV cache as flat, named tensors (DESIGN §6).

ONNX graphs take and return flat tensor lists, so the per-layer `(k, v)` cache of EdgeLM becomes
`past_key_values.{i}.key|value` inputs and `present.{i}.key|value` outputs, in the names and
order optimum's `ORTModelForCausalLM` expects (it pairs the `.key`/`.value` inputs in graph order).

KV numbering: `{i}` is the model's layer index. A layer without attention (0 heads) has no cache,
so it has no entries and its index is skipped (a hetero model with an attention-free layer 2 has
`past_key_values.1.*` then `past_key_values.3.*`). For uniform models this is exactly optimum's
numbering 0..n_layers-1. Per-layer shapes: entry i is (batch_size, n_kv_heads[i],
past_sequence_length, head_dim). `kv_layers(spec)` is the single source of that list.
"""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec

INPUT_IDS, ATTENTION_MASK, POSITION_IDS, LOGITS = "input_ids", "attention_mask", "position_ids", "logits"


def kv_layers(spec: ArchSpec) -> list[int]:
    """Indices of the layers that carry a KV cache (those with attention)."""
    return [i for i, lay in enumerate(spec.layers) if lay.has_attention]


def past_names(spec: ArchSpec) -> list[str]:
    return [f"past_key_values.{i}.{kind}" for i in kv_layers(spec) for kind in ("key", "value")]


def present_names(spec: ArchSpec) -> list[str]:
    return [f"present.{i}.{kind}" for i in kv_layers(spec) for kind in ("key", "value")]


def input_names(spec: ArchSpec) -> list[str]:
    return [INPUT_IDS, ATTENTION_MASK, POSITION_IDS, *past_names(spec)]


def output_names(spec: ArchSpec) -> list[str]:
    return [LOGITS, *present_names(spec)]


def kv_shape(spec: ArchSpec, layer: int, batch: int, past_len: int) -> tuple[int, int, int, int]:
    """Shape of one past key/value tensor: (B, n_kv_heads of that layer, T_past, head_dim)."""
    return (batch, spec.layers[layer].n_kv_heads, past_len, spec.head_dim)


class FlatKVModel(nn.Module):
    """forward(input_ids, attention_mask, position_ids, *past_flat) -> (logits, *present_flat).

    past_flat holds (key, value) for each layer of `kv_layers(spec)`, in that order.
    attention_mask covers past + current tokens (B, T_past + T), as in HF/optimum.
    """

    def __init__(self, model: EdgeLM):
        super().__init__()
        self.lm = model
        self.kv_layers = kv_layers(model.spec)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                *past_flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        past: list = [None] * self.lm.spec.n_layers
        for j, layer in enumerate(self.kv_layers):
            past[layer] = (past_flat[2 * j], past_flat[2 * j + 1])  # each (B, KV_l, T_past, D)
        out = self.lm(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      past_key_values=past, use_cache=True)
        presents: list[torch.Tensor] = []
        for layer in self.kv_layers:
            k, v = out.past_key_values[layer]  # (B, KV_l, T_past + T, D)
            presents += [k, v]
        return (out.logits, *presents)  # logits (B, T, vocab)
