"""Incremental pruning: Adapt-Pruner's prune → train stages.

The way from the model's size to the target is split into stages of about `stage_fraction`
(default 4%) of the ORIGINAL parameters each. Every stage prunes to its share with a registered
method, calls `train_fn(model, stage)` (the train/ stage plugs recovery training in; None = no
training between stages), then writes the stage's checkpoint atomically and a small JSON state.
After a kill the next run with the same out_dir and settings resumes after the last finished
stage: a stage is finished exactly when its checkpoint and the state naming it are on disk.

    out_dir/state.json            {"done": k, "stages": K, "targets": [...], ...}
    out_dir/stage-001 ... -00K     checkpoints (HF directories, edgeprune.json has "pruning")
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from edgeprune.base.atomic_io import atomic_write_text
from edgeprune.files.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, save_derived
from edgeprune.base.errors import PruneError
from edgeprune.shape.model import EdgeLM

from .api import PruneResult, prune_model, request_of
from .request import PruneRequest, ResolvedPrune
from .training_seam import DistilFn, StageTrainFn

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
CalibFn = Callable[[int], torch.Tensor]


def stage_plan(spec: Any, request: Union[PruneRequest, ResolvedPrune], stages: Optional[int] = None,
               stage_fraction: float = 0.04) -> tuple[ResolvedPrune, int]:
    """(the request resolved for stages, the number of stages) for a model of `spec`: what the
    pruner will run, known before it is built, so a caller can size the training it hands in."""
    if isinstance(request, ResolvedPrune):
        plan = request
    else:
        if not request.incremental:
            from dataclasses import replace

            request = replace(request, incremental=True)
        plan = request.resolve(spec)
    if plan.target_params is None:
        raise PruneError("incremental stages need a parameter count: resolve the request with incremental=True")
    if stages is None:
        if not 0 < stage_fraction < 1:
            raise PruneError(f"stage_fraction {stage_fraction} must be in (0, 1), e.g. 0.04")
        stages = max(1, math.ceil((spec.n_params - plan.target_params) / (stage_fraction * spec.n_params)))
    if int(stages) < 1:
        raise PruneError(f"stages must be >= 1, got {stages}")
    return plan, int(stages)


class IncrementalPruner:
    """Prune `model` as `request` asks (or its fields as keywords, as for prune_model) in stages,
    training in between. A speed target becomes the parameter count of the shape predicted to
    meet it (request.incremental): every stage aims at a share of the parameters.

    `train_fn` trains each stage (None: the stages only prune); `distil` is handed to every
    stage's pruning (`prune_model(distil=...)`: the search's finalists). Both come from the layer
    that sees train/ (pipeline/stage_training.py, `build_incremental`), sized by `stage_plan`."""

    def __init__(self, model: EdgeLM, request: Union[PruneRequest, ResolvedPrune, None] = None, *,
                 out_dir: Union[str, Path],
                 calib: Union[torch.Tensor, CalibFn], stages: Optional[int] = None, stage_fraction: float = 0.04,
                 train_fn: Optional[StageTrainFn] = None, seed: int = 0, source: Optional[Checkpoint] = None,
                 progress: bool = True, distil: Optional[DistilFn] = None, **fields: Any):
        if request is None:
            request = request_of({"incremental": True, **fields})
        elif fields:
            raise PruneError(f"give a PruneRequest or its fields, not both (got {sorted(fields)})")
        plan, stages = stage_plan(model.spec, request, stages, stage_fraction)
        request = plan.request
        self.request, self.model, self.out_dir, self.method = request, model, Path(out_dir), request.method
        self.spec0 = model.spec
        self.params0 = model.spec.n_params
        self.target, self.align, self.latency = plan.target_params, plan.align, plan.latency
        self.stages = stages
        # stage k ends at params0 - k/K of the way to the target
        self.targets = [round(self.params0 - (self.params0 - self.target) * k / self.stages)
                        for k in range(1, self.stages + 1)]
        self.calib, self.train_fn, self.seed, self.source = calib, train_fn, seed, source
        self.distil = distil
        self.progress, self.method_options = progress, dict(request.options)
        self.history: list[dict[str, Any]] = []

    # ----- state ----------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"method": self.method, "params0": self.params0, "target_params": self.target,
                "stages": self.stages, "targets": self.targets, "align": self.align, "seed": self.seed,
                "method_options": {k: str(v) for k, v in sorted(self.method_options.items())}}

    def stage_dir(self, k: int) -> Path:
        return self.out_dir / f"stage-{k:03d}"

    def _read_state(self) -> Optional[dict[str, Any]]:
        path = self.out_dir / STATE_FILE
        if not path.is_file():
            return None
        state = json.loads(path.read_text())
        mine = self._settings()
        if {k: state.get(k) for k in mine} != mine:
            raise PruneError(f"{path} belongs to a different incremental run ({state.get('method')}, "
                             f"{state.get('stages')} stages, target {state.get('target_params')}); "
                             "use another --out or delete it")
        return state

    def _write_state(self, done: int) -> None:
        state = dict(self._settings(), done=done, history=self.history,
                     final=str(self.stage_dir(done)) if done == self.stages else None)
        atomic_write_text(self.out_dir / STATE_FILE, json.dumps(state, indent=2))

    def _calib(self, stage: int) -> torch.Tensor:
        return self.calib(stage) if callable(self.calib) else self.calib

    # ----- run ------------------------------------------------------------------------------------
    def run(self) -> PruneResult:
        """Run (or resume) every stage; the result's model is the final one (also in stage-K)."""
        import time

        from edgeprune.base.progress import progress_bar

        t0 = time.perf_counter()
        state = self._read_state()
        done = 0
        if state is not None and state.get("done", 0) > 0:
            done = int(state["done"])
            self.history = list(state.get("history", []))
            self.model = load_checkpoint(self.stage_dir(done)).model
            log.info("resuming after stage %d/%d from %s", done, self.stages, self.stage_dir(done))
        for k in progress_bar(range(done + 1, self.stages + 1), desc="incremental", unit="stage",
                      initial=done, total=self.stages, disable=not self.progress):
            goal = self.targets[k - 1]
            entry: dict[str, Any] = {"stage": k, "target_params": goal}
            if self.model.spec.n_params > goal:
                stage = PruneRequest(method=self.method, params=goal, align=self.align, options=self.method_options,
                                     reconstruct=self.request.reconstruct)
                res = prune_model(self.model, stage, calib=self._calib(k), seed=self.seed + k, progress=False,
                                  distil=self.distil)
                self.model = res.model
                entry["pruning"] = res.summary()
            if self.train_fn is not None:
                self.model = self.train_fn(self.model, k)
                entry["trained"] = True
            entry["params"] = self.model.spec.n_params
            self.history.append(entry)
            self._save(k, entry)
            self._write_state(k)
        return self._result(time.perf_counter() - t0, stage_history=self.history)

    def _result(self, seconds: float, **log: Any) -> PruneResult:
        mlog: dict[str, Any] = {"incremental": True, "stages": self.stages, **log}
        if self.latency is not None:
            mlog["latency"] = self.latency.summary(self.spec0, self.model.spec)
        return PruneResult(model=self.model, spec_before=self.spec0, method=self.method, target_params=self.target,
                           align=self.align, seconds=seconds, log=mlog)

    def _save(self, k: int, entry: dict[str, Any]) -> None:
        meta = {"pruning": self._result(0.0, stage=k).summary()}
        if self.source is not None:
            save_derived(self.model, self.stage_dir(k), self.source, meta=meta)
        else:
            save_checkpoint(self.model, self.stage_dir(k), meta=meta)


__all__ = ["IncrementalPruner"]
