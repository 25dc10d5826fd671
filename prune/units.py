"""Unit scores of one decoder layer: one number per query head, KV head and MLP channel.

Maps a named score (`taylor`, `magnitude`, `wanda`, `fluctuation`) onto the coupled weights of
each unit (heads: q rows + o columns, KV heads: k + v rows, channels: gate/up rows + down
column) using the pure functions of `scores.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from edgeprune.errors import PruneError
from edgeprune.model import DecoderLayer

from . import scores as S
from .calibration import Calibration


@dataclass
class LayerScores:
    q: Optional[torch.Tensor]  # (n_heads,) per query head, None when no attention
    kv: Optional[torch.Tensor]  # (n_kv_heads,) per KV head (k/v weights only)
    ffn: Optional[torch.Tensor]  # (ffn_dim,) per MLP channel, None when no MLP


def _wg(lin: torch.nn.Linear, dim: int, bias: bool = True):
    """[(W, grad, dim)] for a Linear, plus its bias when cutting rows."""
    if lin.weight.grad is None:
        raise PruneError("Taylor scores need gradients: run calibrate(..., grads=True) first")
    out = [(lin.weight, lin.weight.grad, dim)]
    if bias and dim == 0 and lin.bias is not None:
        out.append((lin.bias, lin.bias.grad, 0))
    return out


def layer_scores(block: DecoderLayer, index: int, kind: str, calib: Optional[Calibration],
                 head_dim: int) -> LayerScores:
    """Scores of every unit of `block` (current layer `index`) with score `kind`."""
    q = kv = ffn = None
    d = head_dim
    attn, mlp = block.self_attn, block.mlp
    if kind == "taylor":
        if attn is not None:
            q = S.taylor(_wg(attn.q_proj, 0) + _wg(attn.o_proj, 1), d)
            kv = S.taylor(_wg(attn.k_proj, 0) + _wg(attn.v_proj, 0), d)
        if mlp is not None:
            ffn = S.taylor(_wg(mlp.gate_proj, 0) + _wg(mlp.up_proj, 0) + _wg(mlp.down_proj, 1), 1)
    elif kind == "magnitude":
        if attn is not None:
            q = S.magnitude([(attn.q_proj.weight, 0), (attn.o_proj.weight, 1)], d)
            kv = S.magnitude([(attn.k_proj.weight, 0), (attn.v_proj.weight, 0)], d)
        if mlp is not None:
            ffn = S.magnitude([(mlp.gate_proj.weight, 0), (mlp.up_proj.weight, 0), (mlp.down_proj.weight, 1)], 1)
    elif kind in ("fluctuation", "wanda"):
        if calib is None:
            raise PruneError(f"{kind} scores need calibration activations")
        # these score an output projection's input channels; KV heads get 0 (a group's score is
        # then the sum of its query heads, as FLAP scores heads through o_proj)
        if attn is not None:
            st = calib.o_in[index]
            q = (S.fluctuation(attn.o_proj.weight, st.var, d) if kind == "fluctuation"
                 else S.wanda(attn.o_proj.weight, st.norm, d))
            kv = torch.zeros(attn.n_kv_heads)
        if mlp is not None:
            st = calib.down_in[index]
            ffn = (S.fluctuation(mlp.down_proj.weight, st.var, 1) if kind == "fluctuation"
                   else S.wanda(mlp.down_proj.weight, st.norm, 1))
    else:
        raise PruneError(f"unknown score {kind!r}; choose from {sorted(S.SCORES)}")
    return LayerScores(q=q, kv=kv, ffn=ffn)


def model_scores(model, kind: str, calib: Optional[Calibration]) -> list[LayerScores]:
    return [layer_scores(b, i, kind, calib, model.spec.head_dim) for i, b in enumerate(model.model.layers)]


__all__ = ["LayerScores", "layer_scores", "model_scores"]
