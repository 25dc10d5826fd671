"""Training for prune/'s IncrementalPruner, as Adapt-Pruner runs it: prune → train stages, then a
final recovery, all on one device, with one configuration and ONE learning-rate schedule.

    st = StageTraining(data, cfg, stages=K, stage_steps=s, recover_steps=r, work_root=out / "train",
                       teacher=teacher, env=env)
    IncrementalPruner(model, out_dir=out, ..., train_fn=st.train_fn, distil=search_distil()).run()
    final = st.recover(model)

The schedule spans K·s + r optimizer steps: stage k trains steps (k-1)·s .. k·s - 1 of it and the
final recovery the last r, so the warmup happens once, at the start of stage 1, and a WSD decay
(cfg.schedule "wsd") lands in the final recovery (Hu et al. 2024; Adapt-Pruner trains between
pruning steps without restarting its schedule). `build_incremental` is the one place the CLI
verbs (`prune --incremental`, `ship --incremental`) wire this.

Stage k trains in `work_root/stage-k` with its own fault-tolerant checkpoints. After a kill the
pruner restarts stage k from stage k-1's checkpoint and prunes it again; when that gives the same
model (same spec and weights: the fingerprint checks both), training continues from the stage's
last checkpoint instead of starting over. If it does not (a nondeterministic pruning method), the
stale stage directory is set aside and the stage trains from its start. The final recovery
(`work_root/recover`) resumes the same way.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

from edgeprune.base.errors import ResumeMismatch, TrainError
from edgeprune.base.hashing import state_dict_digest
from edgeprune.shape.model import EdgeLM
from edgeprune.train import distributed as D
from edgeprune.train.config import TrainConfig
from edgeprune.train.train_data import TrainData
from edgeprune.train.loop import ScheduleSpan, StepHook, Trainer, TrainResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageBudget:
    """Optimizer steps per stage and for the final recovery; tokens = steps × tokens_per_step."""

    stages: int
    stage_steps: int
    recover_steps: int
    tokens_per_step: int

    @property
    def total_steps(self) -> int:
        return self.stages * self.stage_steps + self.recover_steps

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    def to_dict(self) -> dict[str, int]:
        return {"stages": self.stages, "stage_steps": self.stage_steps, "recover_steps": self.recover_steps,
                "tokens_per_step": self.tokens_per_step, "stage_tokens": self.stage_steps * self.tokens_per_step,
                "recover_tokens": self.recover_steps * self.tokens_per_step, "total_tokens": self.total_tokens}

    @classmethod
    def per_stage(cls, stages: int, tokens_per_stage: int, recover_tokens: int, tokens_per_step: int
                  ) -> "StageBudget":
        """`tokens_per_stage` between stages plus `recover_tokens` at the end (prune --incremental)."""
        if tokens_per_stage <= 0:
            raise TrainError(f"--tokens-per-stage {tokens_per_stage} must be > 0")
        if recover_tokens < 0:
            raise TrainError(f"--recover-tokens {recover_tokens} must be >= 0")
        return cls(stages, math.ceil(tokens_per_stage / tokens_per_step),
                   math.ceil(recover_tokens / tokens_per_step), tokens_per_step)

    @classmethod
    def split_total(cls, stages: int, total_tokens: int, tokens_per_step: int, stage_share: float = 0.5
                    ) -> "StageBudget":
        """A total budget (ship's --recover-tokens) spread as `stage_share` over the stages and the
        rest for the final recovery; never more than `total_tokens` (whole steps, rounded down)."""
        if not 0 < stage_share < 1:
            raise TrainError(f"stage share {stage_share} must be in (0, 1)")
        total = total_tokens // tokens_per_step
        if total < stages + 1:
            raise TrainError(f"a budget of {total_tokens} tokens is {total} steps of {tokens_per_step} tokens: "
                             f"too few for {stages} stages and a final recovery (need >= {stages + 1} steps); "
                             f"raise --recover-tokens or lower --stages / --seq-len / --batch-size")
        stage_steps = max(1, int(total * stage_share) // stages)
        return cls(stages, stage_steps, total - stages * stage_steps, tokens_per_step)


class StageTraining:
    """The training half of incremental pruning: `train_fn` for the stages, `recover` at the end."""

    def __init__(self, data: TrainData, cfg: TrainConfig, budget: StageBudget, *, work_root: Union[str, Path],
                 teacher: Optional[EdgeLM] = None, env: Optional[D.DistEnv] = None,
                 on_step: Optional[StepHook] = None):
        self.data, self.budget, self.root = data, budget, Path(work_root)
        self.env = env or D.DistEnv()
        world_step = cfg.tokens_per_step(self.env.world)
        if world_step != budget.tokens_per_step:
            raise TrainError(f"budget counts {budget.tokens_per_step} tokens per step, the config {world_step}")
        self.cfg, self.teacher, self.on_step = cfg, teacher, on_step
        self.results: list[TrainResult] = []

    def stage_config(self, steps: int) -> TrainConfig:
        return replace(self.cfg, tokens=steps * self.budget.tokens_per_step)

    def span(self, stage: Optional[int]) -> ScheduleSpan:
        """Stage k (1-based), or the final recovery (None), in the shared schedule."""
        b = self.budget
        offset = b.stages * b.stage_steps if stage is None else (stage - 1) * b.stage_steps
        return ScheduleSpan(offset, b.total_steps)

    def _run(self, model: EdgeLM, work: Path, steps: int, span: ScheduleSpan, extra: dict[str, Any]) -> TrainResult:
        extra = {**extra, "weights": state_dict_digest(model.state_dict())}  # the stage's starting weights

        def trainer() -> Trainer:
            return Trainer(model, self.data, self.stage_config(steps), work, teacher=self.teacher, env=self.env,
                           on_step=self.on_step, fingerprint_extra=extra, schedule=span)

        try:
            result = trainer().fit(resume="auto")
        except ResumeMismatch as e:
            stale = work.with_name(work.name + ".stale")
            shutil.rmtree(stale, ignore_errors=True)
            work.rename(stale)
            log.warning("%s: %s; set it aside as %s and training from its start", work.name, e, stale)
            result = trainer().fit(resume=None)
        self.results.append(result)
        return result

    def train_fn(self, model: EdgeLM, stage: int) -> EdgeLM:
        """IncrementalPruner's callback: train stage `stage` (1-based); the model comes back on
        the CPU in fp32, where the next pruning step scores it."""
        if self.budget.stage_steps == 0:
            return model
        result = self._run(model, self.root / f"stage-{stage:03d}", self.budget.stage_steps, self.span(stage),
                           {"mode": "incremental", "stage": stage})
        log.info("stage %d trained on %s: %d steps, valid ppl %.3f", stage, self.env.device, result.steps,
                 result.valid_ppl or float("nan"))
        return result.model.float().cpu().eval()

    def recover(self, model: EdgeLM) -> Optional[TrainResult]:
        """The final recovery: the last `recover_steps` of the schedule (its decay). None when the
        budget has no final recovery."""
        if self.budget.recover_steps == 0:
            return None
        result = self._run(model, self.root / "recover", self.budget.recover_steps, self.span(None),
                           {"mode": "incremental-recover"})
        log.info("final recovery on %s: %d steps, valid ppl %.3f", self.env.device, result.steps,
                 result.valid_ppl or float("nan"))
        return result


def make_train_callback(data: TrainData, tokens_per_stage: int, cfg: TrainConfig, *,
                        work_root: Union[str, Path], teacher: Optional[EdgeLM] = None,
                        on_step: Optional[StepHook] = None, stages: int = 1,
                        env: Optional[D.DistEnv] = None) -> Callable[[EdgeLM, int], EdgeLM]:
    """A `train_fn(model, stage) -> model` for `stages` stages of `tokens_per_stage` tokens sharing
    one schedule, without a final recovery (the Python API's short form of StageTraining)."""
    env = env or D.DistEnv()
    per_step = cfg.tokens_per_step(env.world)
    budget = StageBudget.per_stage(stages, tokens_per_stage, 0, per_step)
    return StageTraining(data, cfg, budget, work_root=work_root, teacher=teacher, env=env, on_step=on_step).train_fn


def make_stage_training(data: TrainData, cfg: TrainConfig, stages: int, *, work_root: Union[str, Path],
                        tokens_per_stage: Optional[int] = None, recover_tokens: int = 0,
                        total_tokens: Optional[int] = None, stage_share: float = 0.5,
                        teacher: Optional[EdgeLM] = None, env: Optional[D.DistEnv] = None) -> StageTraining:
    """StageTraining for `stages` stages. Budget: `tokens_per_stage` per stage + `recover_tokens`
    at the end, or `total_tokens` split (`stage_share` over the stages, the rest at the end)."""
    env = env or D.DistEnv()
    per_step = cfg.tokens_per_step(env.world)
    if total_tokens:
        budget = StageBudget.split_total(stages, total_tokens, per_step, stage_share)
    elif tokens_per_stage:
        budget = StageBudget.per_stage(stages, tokens_per_stage, recover_tokens, per_step)
    else:
        raise TrainError("stage training needs a budget: tokens per stage or a total")
    log.info("incremental: %d stages × %d steps + %d recovery steps of %d tokens (%d tokens) on %s",
             budget.stages, budget.stage_steps, budget.recover_steps, per_step, budget.total_tokens, env.device)
    return StageTraining(data, cfg, budget, work_root=work_root, teacher=teacher, env=env)


def stage_inputs(cfg: TrainConfig, data_source: Any, tokenizer_dir: Any, *, teacher: Optional[Any] = None,
                 student_spec: Any = None, progress: bool = True) -> tuple[TrainData, Optional[EdgeLM]]:
    """(training data, KD teacher or None): the text tokenized with `tokenizer_dir`'s tokenizer and
    split at cfg's held-out fraction, and the teacher checkpoint `teacher` (None: no distillation)
    after checking it shares the student's vocabulary. What `prune --incremental` and ship's
    recovery both hand to the stage training."""
    from edgeprune.train.teacher import load_teacher
    from edgeprune.train.train_data import load_data

    teacher_model = load_teacher(str(teacher), student_spec, tokenizer_dir) if teacher is not None else None
    return load_data(data_source, tokenizer_dir, cfg.valid_fraction, progress=progress), teacher_model


def build_incremental(model: EdgeLM, request: Any, *, out_dir: Union[str, Path], calib: Any,
                      stages: Optional[int], seed: int, source: Any = None, progress: bool = True,
                      data: Optional[TrainData] = None, cfg: Optional[TrainConfig] = None,
                      **budget: Any) -> tuple[Any, Optional[StageTraining]]:
    """(IncrementalPruner, StageTraining or None): the one wiring of prune → train stages, used
    by `prune --incremental` and `ship --incremental`. `request`: the PruneRequest (prune/request.py).
    `budget`: make_stage_training's keywords (tokens / teacher / env). Without data, a config or a
    budget the stages only prune. Training runs in `out_dir/train`. Both trainers are handed to
    the pruner when it is built: the stage training (sized by `stage_plan`, the stages the pruner
    will run) and train's KD step for a method that distils while it chooses (the search)."""
    from edgeprune.prune import IncrementalPruner, stage_plan

    plan, n_stages = stage_plan(model.spec, request, stages)
    st = None
    if data is not None and cfg is not None and (budget.get("tokens_per_stage") or budget.get("total_tokens")):
        st = make_stage_training(data, cfg, n_stages, work_root=Path(out_dir) / "train", **budget)
    pruner = IncrementalPruner(model, plan, out_dir=out_dir, calib=calib, stages=n_stages, seed=seed, source=source,
                               progress=progress, train_fn=st.train_fn if st is not None else None,
                               distil=search_distil())
    return pruner, st


def search_distil() -> Any:
    """The trainer a pruning method distils its candidates with (prune's `DistilFn`): train's own
    KD step at recovery's settings (train/kd_distil.py), so the search ranks its finalists by
    what recovery does. The method keeps deciding its batches and token budget."""
    from edgeprune.train.kd_distil import TrainKD

    return TrainKD()
