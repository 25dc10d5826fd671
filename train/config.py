"""Training configuration: one dataclass, every field described (as nanoGPT's and litgpt's configs).

A field's description, flag group, choices and shown default are its metadata (`_flag`): the
one source the training verbs' flags are generated from (train/cli_common.py) and a parsed
command line is read back through.

The fields that change a run's trajectory make up its fingerprint (`trajectory_fields`): a
resume directory written under another fingerprint is refused (resuming another run would
mix two trajectories). Fields that only change bookkeeping (logging, checkpoint cadence,
progress bar) may differ between the killed run and its resumption.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Optional

from edgeprune.base.errors import TrainError

SCHEDULES = ("cosine", "wsd", "constant")
PRECISIONS = ("auto", "bf16", "fp32")

# Which flag group a field's flag sits in (cli_common.py generates the flags from these fields):
TRAINING = "training"  # `--recipe` and one flag per field, in every training verb
DISTILL = "distill"  # beside --teacher (train, prune --incremental): the KD flags
VERB = "verb"  # written by the verb itself (--tokens is a required count with its own checks)


def _flag(default: Any, help: str, *, group: str = TRAINING, choices: Optional[tuple[str, ...]] = None,
          default_text: Optional[str] = None) -> Any:
    """A TrainConfig field and its flag in one place: `help` is the field's description and its
    --help text; `default_text` is what --help shows as the default when the verb computes it
    (from the model, the device or the recipe) instead of the field's value."""
    return field(default=default, metadata={"help": help, "group": group, "choices": choices,
                                            "default_text": default_text})


@dataclass
class TrainConfig:
    # --- how much -------------------------------------------------------------------------------
    tokens: int = _flag(MISSING, "training tokens to consume (across all ranks); steps = ceil(tokens / tokens_per_step)",
                        group=VERB)
    seq_len: int = _flag(256, "tokens per window (the model sees seq_len inputs predicting seq_len targets)",
                         default_text="the model's context, at most 1024")
    micro_batch: int = _flag(8, "windows per forward/backward on one rank",
                             default_text="2048 tokens per step on CPU; on CUDA ~64k tokens per forward for small "
                                          "models, within the free memory")
    grad_accum: int = _flag(1, "micro-batches summed before one optimizer step (global batch = micro*accum*world)")
    # --- optimiser (AdamW; fused on CUDA) -----------------------------------------------------------
    lr: float = _flag(3e-4, "peak learning rate")
    min_lr_ratio: float = _flag(0.1, "final lr as a fraction of the peak (cosine floor / WSD end)")
    weight_decay: float = _flag(0.1, "decoupled decay on matrices only (norms and biases excluded), as nanoGPT")
    beta1: float = _flag(0.9, "AdamW first-moment decay")
    beta2: float = _flag(0.95, "AdamW second-moment decay (0.95: the usual LM choice, stabler than 0.999)")
    eps: float = _flag(1e-8, "AdamW epsilon")
    grad_clip: float = _flag(1.0, "max global grad L2 norm; 0 disables clipping")
    schedule: str = _flag("cosine", '"cosine" (warmup + cosine), "wsd" (warmup-stable-decay) or "constant"',
                          choices=SCHEDULES)
    warmup_frac: float = _flag(0.05, "fraction of steps spent warming up linearly from 0")
    decay_frac: float = _flag(0.2, "WSD only: fraction of steps in the final linear decay")
    # --- distillation (KL(teacher || student), Hinton et al. 2015) ----------------------------------
    # 0 = no teacher; the verbs' recipes set it (recover-kd: 1.0 with --teacher)
    kd_alpha: float = _flag(0.0, "KD weight: (1-a)*CE + a*T^2*KL; 1.0 = logit-only distillation (Minitron)",
                            group=DISTILL, default_text="the recipe's; recover-kd with --teacher")
    # one temperature softens both the teacher's and the student's logits
    kd_temp: float = _flag(1.0, "distillation temperature T", group=DISTILL, default_text="the recipe's")
    # --- numerics / speed ------------------------------------------------------------------------
    precision: str = _flag("auto", '"auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" or "fp32"',
                           choices=PRECISIONS)
    compile: bool = _flag(False, "torch.compile the model (CUDA; recompiled after pruning surgery)")
    activation_checkpointing: bool = _flag(False, "recompute each decoder layer in backward (saves memory)")
    fsdp: bool = _flag(False, "under torchrun: shard with FSDP instead of replicating with DDP")
    # --- data / determinism ----------------------------------------------------------------------
    seed: int = _flag(0, "seeds model init (pretrain), window order and every RNG")
    valid_fraction: float = _flag(0.05, "tail of the token array held out for validation perplexity")
    # --- bookkeeping (not part of the fingerprint) -----------------------------------------------
    eval_every: int = _flag(200, "steps between held-out perplexity evaluations (0 = only at the end)")
    eval_windows: int = _flag(32, "held-out windows per evaluation (fixed set: curves are comparable)")
    ckpt_every: int = _flag(200, "steps between fault-tolerance checkpoints (0 = only at the end)")
    keep_ckpts: int = _flag(2, "newest training checkpoints kept on disk")
    log_every: int = _flag(10, "steps between JSONL log records (the progress bar updates every step)")
    progress: bool = _flag(True, "show progress on rank 0 (a bar on a terminal, a line every ~10 s in a log)")

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.tokens, int) or self.tokens <= 0:
            problems.append(f"tokens={self.tokens!r} must be a positive integer (e.g. --tokens 5e6)")
        for name in ("seq_len", "micro_batch", "grad_accum"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                problems.append(f"{name}={v!r} must be an integer >= 1")
        if not self.lr > 0:
            problems.append(f"lr={self.lr} must be > 0")
        if not 0 <= self.min_lr_ratio <= 1:
            problems.append(f"min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule={self.schedule!r} not in {SCHEDULES}")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.decay_frac <= 1:
            problems.append("warmup_frac must be in [0, 1) and decay_frac in [0, 1]")
        if not 0 <= self.kd_alpha <= 1:
            problems.append(f"kd_alpha={self.kd_alpha} must be in [0, 1]")
        if not self.kd_temp > 0:
            problems.append(f"kd_temp={self.kd_temp} must be > 0")
        if self.precision not in PRECISIONS:
            problems.append(f"precision={self.precision!r} not in {PRECISIONS}")
        if not 0 < self.valid_fraction < 1:
            problems.append(f"valid_fraction={self.valid_fraction} must be in (0, 1)")
        if self.grad_clip < 0:
            problems.append(f"grad_clip={self.grad_clip} must be >= 0")
        if problems:
            raise TrainError("invalid training config: " + "; ".join(problems))

    # fields that do not change the numbers a run produces
    BOOKKEEPING = ("eval_every", "eval_windows", "ckpt_every", "keep_ckpts", "log_every", "progress")

    def tokens_per_step(self, world: int = 1) -> int:
        """Tokens one optimizer step consumes across `world` ranks: each rank runs grad_accum
        micro-batches of micro_batch windows of seq_len tokens."""
        return self.micro_batch * self.seq_len * self.grad_accum * world

    def trajectory_fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self.BOOKKEEPING}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def field_help() -> dict[str, str]:
    """field name -> its description (the --help text of its flag)."""
    return {f.name: f.metadata["help"] for f in fields(TrainConfig)}


def parse_count(text: str) -> int:
    """'5e6', '2_000_000', '10M', '1.5B' -> int (CLI token / parameter counts)."""
    t = str(text).strip().replace("_", "").replace(",", "")
    mult = {"k": 10 ** 3, "m": 10 ** 6, "b": 10 ** 9, "g": 10 ** 9}.get(t[-1:].lower(), 1)
    if mult != 1:
        t = t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        raise TrainError(f"{text!r} is not a count (examples: 5000000, 5e6, 5M)") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise TrainError(f"{text!r} is not a finite count")
    return int(round(value))

