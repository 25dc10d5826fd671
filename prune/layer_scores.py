"""Unit scores of one decoder layer: one number per query head, KV head and MLP channel.

Maps a named score (`taylor`, `magnitude`, `wanda`, `fluctuation`) onto the coupled weights of
each unit (heads: q rows + o columns, KV heads: k + v rows, channels: gate/up rows + down
column): Taylor through the unit module's slices (`edgeprune.shape.units`), the others through the pure
functions of `scores.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import DecoderLayer, EdgeLM
from edgeprune.shape.units import taylor_saliency

from . import scores as S
from .calibration import Calibration, taylor_scored


@dataclass
class LayerScores:
    q: Optional[torch.Tensor]  # (n_heads,) per query head, None when no attention
    kv: Optional[torch.Tensor]  # (n_kv_heads,) per KV head (k/v weights only)
    ffn: Optional[torch.Tensor]  # (ffn_dim,) per MLP channel, None when no MLP


def layer_scores(block: DecoderLayer, index: int, kind: str, calib: Optional[Calibration],
                 head_dim: int, saliency: Optional[dict] = None) -> LayerScores:
    """Scores of every unit of `block` (current layer `index`) with score `kind`. Taylor scores
    come from `edgeprune.shape.units.taylor_saliency` (`saliency`, computed once for the model) so they
    are reduced along exactly the slices surgery cuts."""
    q = kv = ffn = None
    d = head_dim
    attn, mlp = block.self_attn, block.mlp
    if kind == "taylor":
        if saliency is None:
            raise PruneError("Taylor scores need the model's saliency: use model_scores(model, 'taylor', ...)")
        if attn is not None:
            q, kv = saliency[f"q.{index}"], saliency[f"kvh.{index}"]
        if mlp is not None:
            ffn = saliency[f"ffn.{index}"]
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


def model_scores(model: EdgeLM, kind: str, calib: Optional[Calibration]) -> list[LayerScores]:
    saliency = None
    if kind == "taylor":
        params = dict(model.named_parameters())
        if any(p.grad is None for n, p in params.items() if taylor_scored(n)):
            raise PruneError("Taylor scores need gradients: run calibrate(..., grads=True) first")
        saliency = {k: v.cpu() for k, v in taylor_saliency(params, model.spec).items()}
    return [layer_scores(b, i, kind, calib, model.spec.head_dim, saliency)
            for i, b in enumerate(model.model.layers)]


__all__ = ["LayerScores", "layer_scores", "model_scores"]
