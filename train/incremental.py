"""The training callback for prune/'s IncrementalPruner (Adapt-Pruner prune → train stages).

    train_fn = make_train_callback(data, tokens_per_stage, cfg, work_root=out / "train")
    IncrementalPruner(model, out_dir=out, ..., train_fn=train_fn).run()

Stage k trains in `work_root/stage-k` with its own fault-tolerant checkpoints. After a kill
the pruner restarts stage k from stage k-1's checkpoint and prunes it again; when that gives the
same model (same spec and weights: the fingerprint checks both), training continues from the
stage's last checkpoint instead of starting over. If it does not (a nondeterministic pruning
method), the stale stage directory is set aside and the stage trains from its start.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable, Optional, Union

import torch

from edgeprune.errors import TrainError
from edgeprune.model import EdgeLM
from edgeprune.train.config import TrainConfig
from edgeprune.train.data_source import TrainData
from edgeprune.train.loop import StepHook, Trainer

log = logging.getLogger(__name__)


def weights_digest(model: EdgeLM) -> str:
    """sha256 prefix over every parameter's bytes (identifies a stage's starting weights)."""
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def make_train_callback(data: TrainData, tokens_per_stage: int, cfg: TrainConfig, *,
                        work_root: Union[str, Path], teacher: Optional[EdgeLM] = None,
                        on_step: Optional[StepHook] = None) -> Callable[[EdgeLM, int], EdgeLM]:
    """A `train_fn(model, stage) -> model` that trains `tokens_per_stage` tokens per stage."""
    if tokens_per_stage <= 0:
        raise TrainError(f"--tokens-per-stage {tokens_per_stage} must be > 0")
    stage_cfg = replace(cfg, tokens=int(tokens_per_stage))
    root = Path(work_root)

    def train_fn(model: EdgeLM, stage: int) -> EdgeLM:
        work = root / f"stage-{stage:03d}"
        extra = {"mode": "incremental", "stage": stage, "weights": weights_digest(model)}

        def trainer() -> Trainer:
            return Trainer(model, data, stage_cfg, work, teacher=teacher, on_step=on_step, fingerprint_extra=extra)

        try:
            result = trainer().fit(resume="auto")
        except TrainError as e:
            if "another run" not in str(e):
                raise
            stale = work.with_name(work.name + ".stale")
            shutil.rmtree(stale, ignore_errors=True)
            work.rename(stale)
            log.warning("stage %d: %s; set it aside as %s and training the stage from its start", stage, e, stale)
            result = trainer().fit(resume=None)
        log.info("stage %d trained: %d steps, valid ppl %.3f", stage, result.steps, result.valid_ppl or float("nan"))
        return result.model.float().cpu().eval()

    return train_fn
