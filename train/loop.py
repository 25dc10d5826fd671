"""The one training loop: any EdgeLM spec, uniform or heterogeneous.

Lifecycle (torchtune-style recipe): setup model → optimizer → data → (resume) → train → final
checkpoint. Each optimizer step draws `micro_batch × grad_accum` windows per rank from the
resumable sampler, runs the micro-batches (bf16 autocast on CUDA, fp32 on CPU; DDP syncs only
on the last), optionally feeds the gradients to the pruning-aware saliency tracker, clips,
steps AdamW with the schedule's learning rate, and every N steps logs (JSONL + progress), evaluates
held-out perplexity and writes an atomic training checkpoint that `resume` continues exactly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from edgeprune.files.checkpoint import load_weights
from edgeprune.base.errors import TrainError
from edgeprune.base.hashing import json_digest
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec
from edgeprune.train import distributed as D
from edgeprune.train import sharded
from edgeprune.train.config import TrainConfig
from edgeprune.train.train_data import TrainData
from edgeprune.train.kd_distil import window_loss
from edgeprune.train.losses import lm_loss
from edgeprune.train.mfu import mfu, peak_flops
from edgeprune.train.optim import load_named_state, make_optimizer, named_state, sliced_state
from edgeprune.train.prune_aware import (RECONSTRUCT_WINDOWS, PruneAwareConfig, SaliencyTracker, choose_removals,
                                         cut_model, desired_params, event_steps, refit_after_cut, removal_summary)
from edgeprune.train.sampler import WindowSampler, fixed_windows
from edgeprune.train.schedule import lr_at
from edgeprune.train.state import (TrainState, check_fingerprint, load_train_checkpoint, resolve_resume_dir,
                                   plain_snapshot, restore_rng, save_train_checkpoint)

log = logging.getLogger(__name__)

LOG_FILE = "train_log.jsonl"
HIDDEN_KEPT = "reconstruct/hidden_kept"  # the checkpoint's tensor of the teacher channels kept


@dataclass
class TrainResult:
    model: EdgeLM  # the trained (possibly pruned) model, unwrapped, on its training device
    steps: int  # optimizer steps completed
    tokens_seen: int  # training tokens consumed across ranks
    train_loss: Optional[float]  # mean loss of the last logged interval
    valid_loss: Optional[float]  # held-out loss at the end
    work_dir: Path  # where checkpoints and the JSONL log live
    history: list[dict[str, Any]] = field(default_factory=list)  # every log record of this process

    @property
    def valid_ppl(self) -> Optional[float]:
        return None if self.valid_loss is None else math.exp(min(self.valid_loss, 50.0))


StepHook = Callable[["Trainer"], None]


def fingerprint_parts(spec: ArchSpec, data: TrainData, cfg: TrainConfig, world: int,
                      teacher: Optional[EdgeLM], prune_aware: Optional[PruneAwareConfig],
                      extra: Optional[dict[str, Any]] = None,
                      schedule: Optional["ScheduleSpan"] = None) -> dict[str, str]:
    """Per-component hashes of what decides a run's numbers (resume refuses any difference)."""
    def h(obj: Any) -> str:
        return json_digest(obj, n=12)

    parts = {"spec": h(spec.to_dict()), "data": h([data.fingerprint, data.tokenizer_fingerprint]),
             "config": h(cfg.trajectory_fields()), "world_size": str(world),
             "teacher": h(teacher.spec.to_dict()) if teacher is not None else "none",
             "prune_aware": h(prune_aware.to_dict()) if prune_aware else "none"}
    if extra:
        parts["extra"] = h(extra)
    if schedule is not None:
        parts["schedule_span"] = h([schedule.offset, schedule.total])
    return parts


@dataclass(frozen=True)
class ScheduleSpan:
    """This run's place in a longer learning-rate schedule: its step s uses the schedule's step
    `offset + s` of `total` (incremental pruning: every stage and the final recovery share one
    warmup and one decay, pipeline/stage_training.py)."""

    offset: int
    total: int


class Trainer:
    """One run. `fit()` trains to `cfg.tokens` and returns a TrainResult."""

    def __init__(self, model: EdgeLM, data: TrainData, cfg: TrainConfig, work_dir: Union[str, Path], *,
                 teacher: Optional[EdgeLM] = None, prune_aware: Optional[PruneAwareConfig] = None,
                 env: Optional[D.DistEnv] = None, on_step: Optional[StepHook] = None,
                 fingerprint_extra: Optional[dict[str, Any]] = None, schedule: Optional[ScheduleSpan] = None):
        self.cfg = cfg
        self.env = env or D.DistEnv()
        self.work_dir = Path(work_dir)
        self.data = data
        self.prune_aware = prune_aware
        self.on_step = on_step
        data.check_vocab(model.spec.vocab_size)
        if teacher is not None and cfg.kd_alpha == 0:
            log.warning("a teacher was given but kd_alpha is 0: it is not used")
        if prune_aware is not None:
            prune_aware.validate(model.spec)
            if cfg.fsdp:
                raise TrainError("pruning-aware training cannot run under FSDP (surgery needs whole "
                                 "tensors); use DDP (drop --fsdp)")
        self.tokens_per_step = cfg.tokens_per_step(self.env.world)
        self.total_steps = max(1, math.ceil(cfg.tokens / self.tokens_per_step))
        self.start_spec = model.spec
        self.schedule = schedule or ScheduleSpan(0, self.total_steps)
        if self.schedule.offset + self.total_steps > self.schedule.total:
            raise TrainError(f"schedule span {self.schedule} is shorter than this run's {self.total_steps} steps")
        self.parts = fingerprint_parts(model.spec, data, cfg, self.env.world, teacher, prune_aware,
                                       fingerprint_extra, schedule)
        self.fingerprint = json_digest(self.parts)
        dev = self.env.device
        self.use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and dev.type == "cuda")
        self.model = model.to(dev).train()
        self.teacher = None
        if teacher is not None and cfg.kd_alpha > 0:
            # bf16 weights on CUDA: the teacher only runs forward under bf16 autocast anyway, so this
            # halves its memory and weight traffic and its logits come out bf16
            dtype = torch.bfloat16 if self.use_bf16 and dev.type == "cuda" else None
            self.teacher = teacher.to(device=dev, dtype=dtype).eval().requires_grad_(False)
        # the teacher never changes shape: compiled once, like the student (forward only)
        self.teacher_runner = torch.compile(self.teacher) if self.teacher is not None and cfg.compile else self.teacher
        self.sampler = WindowSampler(data.train, cfg.seq_len, seed=cfg.seed, rank=self.env.rank, world=self.env.world)
        self.valid_windows = fixed_windows(data.valid, cfg.seq_len, cfg.eval_windows)  # (n, seq_len + 1)
        self.tracker = SaliencyTracker(prune_aware.ema) if prune_aware else None
        self.events = event_steps(prune_aware, self.total_steps) if prune_aware else []
        # with a KD teacher, each surgery is followed by reconstruction towards it
        self.refits = prune_aware is not None and prune_aware.reconstruct != "none" and self.teacher is not None
        self.last_refit: Optional[dict[str, Any]] = None  # the record of the latest surgery's refit
        self.calib_windows: Optional[torch.Tensor] = None  # its tokens, drawn at the first surgery
        # the teacher's residual channels the student still has (a cut hidden width is refitted on them)
        same_width = self.refits and self.teacher.spec.hidden_size == model.spec.hidden_size
        self.hidden_kept = torch.arange(model.spec.hidden_size) if same_width else None
        self._tag_layers()
        self.step = 0
        self.tokens_seen = 0
        self.history: list[dict[str, Any]] = []
        self.last_loss: Optional[float] = None
        self.last_valid: Optional[float] = None
        self.peak = peak_flops(dev)
        # FSDP shards the model in place, once: its runtime is built in fit(), after a resume has
        # put whole checkpoint tensors into the still-unsharded model
        self.sharding = cfg.fsdp and self.env.distributed
        if cfg.fsdp and not self.env.distributed:
            log.warning("--fsdp shards across torchrun ranks; in one process it has no effect")
        self.runtime_ready = False
        self.pending_optimizer_state: Optional[dict[str, torch.Tensor]] = None
        if not self.sharding:
            self._build_runtime(optimizer_state=None)

    # ----- setup ----------------------------------------------------------------------------------

    def _tag_layers(self) -> None:
        """Each layer names its origin before any surgery, so reconstruction maps it to the
        teacher's layer of the same index (pruning-aware surgery keeps the layer modules)."""
        if self.refits:
            from edgeprune.prune import tag_sources

            tag_sources(self.model)

    def _build_runtime(self, optimizer_state: Optional[dict[str, torch.Tensor]]) -> None:
        """(Re)build everything that holds parameter references: checkpointing hooks, the
        DDP/FSDP wrapper, torch.compile, AdamW. Called at setup and after each surgery."""
        if self.cfg.activation_checkpointing:
            _checkpoint_layers(self.model)
        self.wrapped = D.wrap(self.model, self.env, fsdp=self.cfg.fsdp)  # DDP / sharded / the model
        self.runner = torch.compile(self.wrapped) if self.cfg.compile else self.wrapped
        self.optimizer, self.param_order = make_optimizer(self.model, self.cfg)
        if optimizer_state and self.sharding:
            sharded.load_optimizer_state(self.model, self.optimizer, self.param_order, optimizer_state)
        elif optimizer_state:
            load_named_state(self.optimizer, self.param_order, optimizer_state)
        self.param_names = {p: n for n, p in self.model.named_parameters()}
        self.runtime_ready = True

    def _autocast(self):
        if self.use_bf16:
            return torch.autocast(self.env.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ----- resume ---------------------------------------------------------------------------------

    def resume(self, path: Union[str, Path]) -> None:
        loaded = load_train_checkpoint(resolve_resume_dir(Path(path)))
        check_fingerprint(loaded, self.fingerprint, self.parts)
        spec = ArchSpec.from_dict(loaded.state.spec)
        if spec != self.model.spec:  # pruning-aware runs resume at their current (smaller) shape
            p0 = next(self.model.parameters())
            self.model = EdgeLM(spec).to(device=p0.device, dtype=p0.dtype).train()
            self._tag_layers()
        load_weights(self.model, loaded.model_state, where=str(loaded.path))
        self.sampler.load_state_dict(loaded.state.sampler)
        self.step, self.tokens_seen = loaded.state.step, loaded.state.tokens_seen
        if self.tracker is not None:
            self.tracker.load_state_tensors(loaded.extra_tensors, self.env.device)
        if self.hidden_kept is not None:
            kept = loaded.extra_tensors.get(HIDDEN_KEPT)
            self.hidden_kept = kept.long().cpu() if kept is not None else self.hidden_kept
            if len(self.hidden_kept) != self.model.spec.hidden_size:
                self.hidden_kept = None  # not recorded: which channels survive is unknown, so no refit
        if self.sharding:  # sharded once, in fit(), from these weights and this optimizer state
            self.pending_optimizer_state = loaded.optimizer
        else:
            self._build_runtime(optimizer_state=loaded.optimizer)
        restore_rng(loaded)
        self._trim_log(self.step)
        log.info("resumed %s at step %d/%d (%d tokens)", loaded.path, self.step, self.total_steps, self.tokens_seen)

    def _has_checkpoints(self) -> bool:
        return (self.work_dir / "latest").is_file()

    # ----- one optimizer step ----------------------------------------------------------------------

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        lr = self.lr_at(self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        windows = self.sampler.next_batch(cfg.micro_batch * cfg.grad_accum).to(self.env.device)  # (mb*acc, T+1)
        totals = self.forward_backward(windows)
        if self.tracker is not None and self._tracking():
            self.tracker.update(self.model)
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            totals["grad_norm"] = D.local(norm.detach())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        totals["lr"] = torch.tensor(lr)
        return totals

    def lr_at(self, step: int) -> float:
        """Learning rate of this run's optimizer step `step` (its place in the shared schedule)."""
        cfg = self.cfg
        return lr_at(self.schedule.offset + step, self.schedule.total, cfg.lr, cfg.schedule, cfg.warmup_frac,
                     cfg.decay_frac, cfg.min_lr_ratio)

    def forward_backward(self, windows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Accumulate one step's gradients over `grad_accum` micro-batches of `windows`
        (mb*acc, T+1); returns the step's mean loss parts (detached)."""
        cfg = self.cfg
        totals: dict[str, torch.Tensor] = {}
        for k in range(cfg.grad_accum):
            # a window holds T+1 tokens so that inputs and their next-token targets are both T long
            w = windows[k * cfg.micro_batch:(k + 1) * cfg.micro_batch]  # (mb, T+1)
            last = k == cfg.grad_accum - 1
            with D.grad_sync(self.wrapped, last):
                with self._autocast():
                    # the one step loss (train/kd_distil.py): the search's proxy distils through it too
                    loss, parts = window_loss(self.runner, self.teacher_runner, w, cfg)
                # mean of equal-size micro-batch means = mean over the whole step's tokens
                (loss / cfg.grad_accum).backward()
            for name, v in {"loss": loss.detach(), **parts}.items():
                totals[name] = totals.get(name, 0) + v / cfg.grad_accum
        return totals

    def _tracking(self) -> bool:
        """Saliency is accumulated from a warm-up window before the first event until the last."""
        if not self.events:
            return False
        lead = max(1, self.events[0] // 2)
        return self.events[0] - lead <= self.step + 1 <= self.events[-1]

    # ----- pruning-aware surgery --------------------------------------------------------------------

    def _maybe_prune(self) -> Optional[str]:
        self.last_refit = None
        if self.step not in self.events:
            return None
        goal = desired_params(self.prune_aware, self.start_spec.n_params, self.step, self.events)
        keep_units = None
        if self.env.is_main:
            keep_units = choose_removals(self.model.spec, self.tracker.ema, goal, self.prune_aware)
            keep_units = {g: u.tolist() for g, u in keep_units.items()}
        keep_units = D.broadcast_object(keep_units, self.env)  # one decision for all ranks
        keep_units = {g: torch.tensor(u, dtype=torch.long) for g, u in keep_units.items()}
        if not keep_units:
            return None
        before = self.model.spec
        opt_state = named_state(self.optimizer, self.param_order)
        new_model, keep = cut_model(self.model, keep_units)
        self.model = new_model
        self.tracker.cut(keep_units)
        if self.hidden_kept is not None and "hidden" in keep_units:
            self.hidden_kept = self.hidden_kept[keep_units["hidden"]]
        summary = removal_summary(before, self.model.spec)
        log.info("step %d: pruned to %d params (goal %d): %s", self.step, self.model.spec.n_params, goal, summary)
        if self.refits:  # before the runtime is rebuilt: DDP then broadcasts rank 0's refitted weights
            self.last_refit = refit_after_cut(self.model, self.teacher, self._calibration_windows(),
                                              self.prune_aware.reconstruct, self.hidden_kept)
            log.info("step %d: reconstruction %s", self.step, self.last_refit)
        self._build_runtime(optimizer_state=sliced_state(opt_state, keep))
        return summary

    def _calibration_windows(self) -> torch.Tensor:
        """The refit's tokens (RECONSTRUCT_WINDOWS, seq_len): fixed windows of the training text."""
        if self.calib_windows is None:
            self.calib_windows = fixed_windows(self.data.train, self.cfg.seq_len, RECONSTRUCT_WINDOWS)[:, :-1]
        return self.calib_windows

    # ----- evaluation -------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean next-token loss on the fixed held-out windows (every rank, same numbers)."""
        self.runner.eval()
        total, n = 0.0, 0
        for i in range(0, len(self.valid_windows), self.cfg.micro_batch):
            w = self.valid_windows[i:i + self.cfg.micro_batch].to(self.env.device)  # (b, T+1)
            with self._autocast():
                logits = self.runner(w[:, :-1]).logits  # (b, T, V)
            total += float(lm_loss(logits, w[:, 1:])) * len(w)
            n += len(w)
        self.runner.train()
        return total / max(1, n)

    # ----- bookkeeping ------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.work_dir / LOG_FILE

    def _trim_log(self, step: int) -> None:
        """Drop records a killed run wrote after the checkpoint we resume from."""
        if not self.env.is_main or not self.log_path.is_file():
            return
        keep = [line for line in self.log_path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.log_path.write_text("".join(line + "\n" for line in keep))

    def _write_log(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        if self.env.is_main:
            with self.log_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def save(self) -> Optional[Path]:
        if self.sharding:  # collective: every rank helps gather, rank 0 gets the whole tensors
            model_state = sharded.full_model_state(self.model)
            opt_tensors, hyper = sharded.full_optimizer_state(self.model, self.optimizer)
        elif self.env.is_main:
            model_state, opt_tensors, hyper = plain_snapshot(self.model, self.optimizer, self.param_names)
        if not self.env.is_main:
            D.barrier(self.env)
            return None
        state = TrainState(step=self.step, tokens_seen=self.tokens_seen, sampler=self.sampler.state_dict(),
                           spec=self.model.spec.to_dict(), fingerprint=self.fingerprint,
                           fingerprint_parts=self.parts, config=self.cfg.to_dict(),
                           extra={"total_steps": self.total_steps, "events": self.events})
        extra = self.tracker.state_tensors() if self.tracker is not None else {}
        if self.hidden_kept is not None:
            extra[HIDDEN_KEPT] = self.hidden_kept
        path = save_train_checkpoint(self.work_dir, state, model_state, opt_tensors, hyper, extra,
                                     keep=self.cfg.keep_ckpts)
        D.barrier(self.env)
        return path

    def _say_plan(self) -> None:
        """The run's plan before its first step: how much, where, how often it checkpoints."""
        cfg = self.cfg
        left = self.total_steps - self.step
        where = f"resuming at step {self.step}: " if self.step else ""
        ckpt = f"a checkpoint every {cfg.ckpt_every} steps" if cfg.ckpt_every else "a checkpoint at the end"
        log.info("train plan: %s%d steps of %d tokens (%s tokens) on %s, %s in %s; an ETA follows the first %d "
                 "steps", where, left, self.tokens_per_step, f"{left * self.tokens_per_step:,}", self.env.device,
                 ckpt, self.work_dir, max(1, cfg.log_every))

    def _say_eta(self, tokens_per_s: float) -> None:
        """The measured rate and what it means for the rest of the run."""
        from edgeprune.base.progress import human_duration

        left = (self.total_steps - self.step) * self.tokens_per_step
        log.info("train: %s tokens/s over the first steps: ETA %s for the %d steps left (%s tokens)",
                 f"{tokens_per_s:,.0f}", human_duration(left / max(tokens_per_s, 1e-9)),
                 self.total_steps - self.step, f"{left:,}")

    # ----- the run ------------------------------------------------------------------------------------

    def fit(self, resume: Union[str, Path, None] = None) -> TrainResult:
        """Train to the token budget. `resume`: a work / step directory, or "auto" (continue the
        run in `work_dir` if it has checkpoints, else start fresh)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if resume == "auto":
            resume = self.work_dir if self._has_checkpoints() else None
        if resume is not None:
            self.resume(resume)
        elif self._has_checkpoints():
            raise TrainError(f"{self.work_dir} already holds checkpoints of a run; pass --resume "
                             f"{self.work_dir} to continue it, or remove it to start over")
        elif self.env.is_main and self.log_path.exists():
            self.log_path.unlink()
        if not self.runtime_ready:
            self._build_runtime(optimizer_state=self.pending_optimizer_state)
            self.pending_optimizer_state = None
        cfg = self.cfg
        bar = None
        eta_due = cfg.progress and self.env.is_main and self.step < self.total_steps
        if cfg.progress and self.env.is_main:
            from edgeprune.base.progress import progress_bar

            self._say_plan()
            bar = progress_bar(total=self.total_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        window: dict[str, torch.Tensor] = {}  # summed on device; read back only when logging
        n_window, t0, tok0 = 0, time.perf_counter(), self.tokens_seen
        while self.step < self.total_steps:
            parts = self.train_step()
            for k, v in parts.items():
                window[k] = window.get(k, 0) + v.to(self.env.device)
            n_window += 1
            pruned = self._maybe_prune() if self.prune_aware else None
            done = self.step == self.total_steps
            record: Optional[dict[str, Any]] = None
            if done or self.step % max(1, cfg.log_every) == 0 or pruned:
                dt = max(1e-9, time.perf_counter() - t0)
                tps = (self.tokens_seen - tok0) / dt
                # only the loss parts differ between ranks (each sees its own data); grad_norm is taken
                # after the gradient all-reduce and lr is shared, so they need no collective
                means = {k: float(D.all_mean(v / n_window, self.env) if k in ("loss", "ce", "kd") else v / n_window)
                         for k, v in window.items()}
                record = {"step": self.step, "tokens": self.tokens_seen, **means,
                          "tokens_per_s": tps, "params": self.model.spec.n_params}
                u = mfu(self.model.spec, cfg.seq_len, tps, self.peak, self.env.world)
                if u is not None:
                    record["mfu"] = u
                if pruned:
                    record["pruned"] = pruned
                if self.last_refit is not None:
                    record["reconstruction"] = self.last_refit
                self.last_loss = record["loss"]
                if not math.isfinite(self.last_loss):  # checked at log points: no per-step GPU sync
                    raise TrainError(f"training loss became {self.last_loss} by step {self.step}; the "
                                     f"checkpoints in {self.work_dir} precede it: lower --lr, or check the "
                                     "data and the model's weights")
                window, n_window, t0, tok0 = {}, 0, time.perf_counter(), self.tokens_seen
            paused = time.perf_counter()  # evaluation and checkpoints do not count as throughput
            if done or (cfg.eval_every and self.step % cfg.eval_every == 0):
                self.last_valid = self.evaluate()
                record = record or {"step": self.step, "tokens": self.tokens_seen}
                record["valid_loss"] = self.last_valid
                record["valid_ppl"] = math.exp(min(self.last_valid, 50.0))  # finite in JSON when diverged
            if record is not None:
                self._write_log(record)
                if eta_due and "tokens_per_s" in record and self.step < self.total_steps:
                    eta_due = False
                    self._say_eta(record["tokens_per_s"])
                if bar is not None:
                    shown = {k: record[k] for k in ("loss", "valid_ppl", "tokens_per_s", "mfu") if k in record}
                    bar.set_postfix({k: (f"{v:.3g}" if k != "tokens_per_s" else f"{v:,.0f}") for k, v in shown.items()})
            if bar is not None:
                bar.update(1)
            if done or (cfg.ckpt_every and self.step % cfg.ckpt_every == 0):
                self.save()
            t0 += time.perf_counter() - paused
            if self.on_step is not None:
                self.on_step(self)
        if bar is not None:
            bar.close()
        if self.prune_aware and self.model.spec.n_params > self.prune_aware.target_params * 1.02:
            log.warning("pruning-aware run ended at %d params, above the target %d", self.model.spec.n_params,
                        self.prune_aware.target_params)
        if self.last_valid is None:  # resumed a finished run
            self.last_valid = self.evaluate()
        if self.sharding:  # hand back an ordinary model, whole on every rank
            self.model = sharded.plain_copy(self.model, self.env.device)
        return TrainResult(model=self.model, steps=self.step, tokens_seen=self.tokens_seen,
                           train_loss=self.last_loss, valid_loss=self.last_valid, work_dir=self.work_dir,
                           history=self.history)


def _checkpoint_layers(model: EdgeLM) -> None:
    """Recompute each decoder layer in backward (activation checkpointing) without renaming
    parameters: the layer's bound forward is replaced by a checkpointed call of itself."""
    from torch.utils.checkpoint import checkpoint

    for layer in model.model.layers:
        if getattr(layer, "_ckpt_wrapped", False):
            continue
        inner = layer.forward

        def fwd(x, cos, sin, mask, past, _inner=inner):
            if past is None and torch.is_grad_enabled():
                return checkpoint(_inner, x, cos, sin, mask, past, use_reentrant=False)
            return _inner(x, cos, sin, mask, past)

        layer.forward = functools.wraps(inner)(fwd)
        layer._ckpt_wrapped = True


def train(model: EdgeLM, data: TrainData, cfg: TrainConfig, work_dir: Union[str, Path], *,
          teacher: Optional[EdgeLM] = None, prune_aware: Optional[PruneAwareConfig] = None,
          resume: Union[str, Path, None] = None, env: Optional[D.DistEnv] = None,
          on_step: Optional[StepHook] = None) -> TrainResult:
    """Python API: train `model` on `data` for `cfg.tokens` tokens, checkpointing into `work_dir`."""
    trainer = Trainer(model, data, cfg, work_dir, teacher=teacher, prune_aware=prune_aware, env=env,
                      on_step=on_step)
    return trainer.fit(resume=resume)


CHECKPOINTS_PER_RUN = 10  # a run the user did not configure checkpoints for: a kill loses at most ~10% of it


def checkpoint_every(cfg: TrainConfig, world: int = 1, checkpoints: int = CHECKPOINTS_PER_RUN) -> int:
    """Steps between checkpoints that spread `checkpoints` of them over cfg's run."""
    steps = max(1, math.ceil(cfg.tokens / cfg.tokens_per_step(world)))
    return max(1, steps // checkpoints)


def train_resuming(model: EdgeLM, data: TrainData, cfg: TrainConfig, work_dir: Union[str, Path], *,
                   teacher: Optional[EdgeLM] = None, env: Optional[D.DistEnv] = None,
                   on_step: Optional[StepHook] = None) -> TrainResult:
    """`train` that continues from the last checkpoint in `work_dir` after a kill (same step,
    weights, optimizer state, data position and RNG: the result equals an uninterrupted run's).
    Checkpoints of a run with other settings cannot be resumed: they are discarded and the run
    starts over. The run's own stages (ship's recovery, the embedded teacher, compare's
    from-scratch row) call this rather than `train`."""
    import shutil

    from edgeprune.base.errors import ResumeMismatch

    try:
        return train(model, data, cfg, work_dir, teacher=teacher, resume="auto", env=env, on_step=on_step)
    except ResumeMismatch:
        log.info("training checkpoints in %s are from other settings; starting over", work_dir)
        shutil.rmtree(work_dir, ignore_errors=True)
        return train(model, data, cfg, work_dir, teacher=teacher, env=env, on_step=on_step)
