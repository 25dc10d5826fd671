"""Block-wise healing: cheap recovery on a CPU after reconstruction.

Each kept layer is trained, in order, to reproduce the original model's hidden state after the run
of layers it stands for (prune.reconstruct.walk_layers: its inputs are the already healed layers'
outputs, its target the teacher's), with no LM head in the loop: one layer's forward and backward
per token instead of the whole model's plus a vocabulary-wide softmax. The loss is the relative
error ‖h_s − h_t‖² / ‖h_t‖² per token (every reader of the residual stream normalises it first),
as in the reconstruction's weighting.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from edgeprune.prune import peak_rss_mb, walk_layers
from edgeprune.shape.model import EdgeLM

log = logging.getLogger(__name__)


def _relative_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((out - target).pow(2).sum(-1) / target.pow(2).sum(-1).clamp(min=1e-12)).mean()


def heal_blockwise(student: EdgeLM, teacher: EdgeLM, tokens: torch.Tensor, *, epochs: int = 1, lr: float = 1e-4,
                   batch_size: int = 8, progress: bool = True) -> dict[str, Any]:
    """Train each layer of `student` (in place) towards `teacher`'s states on `tokens` (n, T), `epochs`
    passes per layer, AdamW at `lr`. Returns the record: tokens, seconds, tokens/s (tokens × epochs
    over the whole time: one full forward+backward of the model per token, as end-to-end KD counts),
    peak memory and each layer's relative error before → after."""
    from edgeprune.base.progress import progress_bar

    t0 = time.perf_counter()
    was_training = student.training
    teacher.eval()
    rows = []
    steps = walk_layers(student, teacher, tokens, batch_size)
    for step in progress_bar(steps, total=student.spec.n_layers, desc="heal (block-wise)", unit="layer",
                     disable=not progress):
        layer = step.layer
        params = [p for p in layer.parameters() if p.requires_grad]
        if not params:
            continue

        def error() -> float:
            with torch.no_grad():
                return sum(float(_relative_error(layer(x, *rope, None, None)[0], y))
                           for x, rope, y in zip(step.inputs, step.rope, step.end_target)) / len(step.inputs)

        before = error()
        saved = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        layer.train()
        for _ in range(max(1, epochs)):
            for x, rope, y in zip(step.inputs, step.rope, step.end_target):
                loss = _relative_error(layer(x, *rope, None, None)[0], y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        layer.eval()
        after = error()
        if not after < before:  # never leave a layer worse than reconstruction did on its own tokens
            layer.load_state_dict(saved)
            after = before
        rows.append({"layer": step.index, "error": [round(before, 5), round(after, 5)]})
    student.train(was_training)
    seconds = time.perf_counter() - t0
    n = int(tokens.numel())
    return {"tokens": n, "epochs": epochs, "lr": lr, "seconds": round(seconds, 2),
            "tokens_per_s": round(n * max(1, epochs) / max(seconds, 1e-9), 1), "peak_rss_mb": round(peak_rss_mb(), 1),
            "layers": rows}


__all__ = ["heal_blockwise"]
