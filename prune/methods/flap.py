"""`flap`: FLAP (An et al., AAAI 2024) — fluctuation scores, standardised per unit type,
selected globally.

Score of a query head = Σ over its o_proj input channels of Var(X_j)·‖W_o[:, j]‖²; of an MLP
channel = Var(X_j)·‖W_down[:, j]‖² (`scores.fluctuation`). Head scores of all layers are
standardised together, channel scores of all layers together, so the two compare; then the
weakest chunks (KV group, one query head per group, or an aligned run of MLP channels; chunk
value = mean standardised score of its units) go first, across all layers, until the target.

Bias compensation: FLAP adds mean(X_j)·W[:, j] of the removed channels to the output
projection's bias. Llama and Qwen2 have no o_proj / down_proj bias, and our spec, the GGUF
llama/deci layouts and plain transformers have nowhere to store one, so this implementation
does NOT compensate (the removed channels' mean contribution is lost; recovery training
absorbs it). The compensation each layer would have needed is reported in the log
(`compensation_norm`) so its size is visible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from edgeprune.shape.model import EdgeLM

from ..calibration import calibrate
from ..plan import apply_plans, greedy_cut, LayerPlan
from ..scores import standardise
from ..layer_scores import LayerScores, model_scores
from .registry import register_method

if TYPE_CHECKING:
    from ..surgery import CutRecord


def _standardised(scores: list[LayerScores]) -> list[LayerScores]:
    qs = [s.q for s in scores if s.q is not None]
    fs = [s.ffn for s in scores if s.ffn is not None]
    q_all = standardise(torch.cat(qs)) if qs else None
    f_all = standardise(torch.cat(fs)) if fs else None
    out, qi, fi = [], 0, 0
    for s in scores:
        q = ffn = None
        if s.q is not None:
            q = q_all[qi:qi + len(s.q)]
            qi += len(s.q)
        if s.ffn is not None:
            ffn = f_all[fi:fi + len(s.ffn)]
            fi += len(s.ffn)
        out.append(LayerScores(q=q, kv=torch.zeros_like(s.kv) if s.kv is not None else None, ffn=ffn))
    return out


@register_method("flap", "FLAP: fluctuation scores, standardised, global selection (no bias compensation)",
                 {"batch_size": "calibration batch size (default 8)"})
def run(model: EdgeLM, *, target_params: int, calib: torch.Tensor, align: int, progress: bool = True,
        batch_size: int = 8, record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict]:
    cal = calibrate(model, calib, grads=False, activations=True, batch_size=batch_size, progress=progress)
    scores = _standardised(model_scores(model, "fluctuation", cal))
    plans = [LayerPlan.of(model.spec, i, s, align) for i, s in enumerate(scores)]
    greedy_cut(plans, model.spec.n_params - target_params, policy="mean")
    comp = []
    for p, block in zip(plans, model.model.layers):
        c = 0.0
        if block.mlp is not None and len(p.ffn) < p.ffn0:
            gone = sorted(set(range(p.ffn0)) - set(p.ffn))
            mean = cal.down_in[p.index].mean[gone]  # (k,)
            c = float((block.mlp.down_proj.weight.detach()[:, gone].float() @ mean).norm())
        comp.append(round(c, 4))
    model = apply_plans(model, plans, record)
    return model, {"calibration_loss": cal.loss, "compensation_norm": comp, "bias_compensation": False}
