"""Training configuration: one dataclass, every field commented (STYLE.md, nanoGPT/litgpt).

The fields that change a run's trajectory make up its fingerprint (`trajectory_fields`): a
resume directory written under another fingerprint is refused (issue 5, "resume dir from
another run"). Fields that only change bookkeeping (logging, checkpoint cadence, progress bar)
may differ between the killed run and its resumption.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from edgeprune.errors import TrainError

SCHEDULES = ("cosine", "wsd", "constant")


@dataclass
class TrainConfig:
    # --- how much -------------------------------------------------------------------------------
    tokens: int  # training tokens to consume (across all ranks); steps = ceil(tokens / tokens_per_step)
    seq_len: int = 256  # tokens per window (the model sees seq_len inputs predicting seq_len targets)
    micro_batch: int = 8  # windows per forward/backward on one rank
    grad_accum: int = 1  # micro-batches summed before one optimizer step (global batch = micro*accum*world)
    # --- optimiser (AdamW; fused on CUDA) -----------------------------------------------------------
    lr: float = 3e-4  # peak learning rate
    min_lr_ratio: float = 0.1  # final lr as a fraction of the peak (cosine floor / WSD end)
    weight_decay: float = 0.1  # decoupled decay on matrices only (norms and biases excluded), as nanoGPT
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay (0.95: the usual LM choice, stabler than 0.999)
    eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # max global grad L2 norm; 0 disables clipping
    schedule: str = "cosine"  # "cosine" (warmup + cosine), "wsd" (warmup-stable-decay) or "constant"
    warmup_frac: float = 0.05  # fraction of steps spent warming up linearly from 0
    decay_frac: float = 0.2  # WSD only: fraction of steps in the final linear decay
    # --- distillation (KL(teacher || student), Hinton et al. 2015) ----------------------------------
    kd_alpha: float = 0.0  # weight of the KD term; loss = (1-a)*CE + a*T^2*KL; 0 = no teacher
    kd_temp: float = 1.0  # softmax temperature for both teacher and student logits
    # --- numerics / speed ------------------------------------------------------------------------
    precision: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU), "bf16" or "fp32"
    compile: bool = False  # torch.compile the model (CUDA; recompiled after pruning surgery)
    activation_checkpointing: bool = False  # recompute each decoder layer in backward (saves memory)
    fsdp: bool = False  # under torchrun: shard with FSDP instead of replicating with DDP
    # --- data / determinism ----------------------------------------------------------------------
    seed: int = 0  # seeds model init (pretrain), window order and every RNG
    valid_fraction: float = 0.05  # tail of the token array held out for validation perplexity
    # --- bookkeeping (not part of the fingerprint) -----------------------------------------------
    eval_every: int = 200  # steps between held-out perplexity evaluations (0 = only at the end)
    eval_windows: int = 32  # held-out windows per evaluation (fixed set: curves are comparable)
    ckpt_every: int = 200  # steps between fault-tolerance checkpoints (0 = only at the end)
    keep_ckpts: int = 2  # newest training checkpoints kept on disk
    log_every: int = 10  # steps between JSONL log records (the progress bar updates every step)
    progress: bool = True  # show a tqdm progress bar on rank 0

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
        if self.precision not in ("auto", "bf16", "fp32"):
            problems.append(f"precision={self.precision!r} not in ('auto', 'bf16', 'fp32')")
        if not 0 < self.valid_fraction < 1:
            problems.append(f"valid_fraction={self.valid_fraction} must be in (0, 1)")
        if self.grad_clip < 0:
            problems.append(f"grad_clip={self.grad_clip} must be >= 0")
        if problems:
            raise TrainError("invalid training config: " + "; ".join(problems))

    # fields that do not change the numbers a run produces
    BOOKKEEPING = ("eval_every", "eval_windows", "ckpt_every", "keep_ckpts", "log_every", "progress")

    def trajectory_fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in self.BOOKKEEPING}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def field_help() -> dict[str, str]:
    """field name -> its trailing comment in TrainConfig's source (the CLI's --help text: the
    comment is written once, beside the field)."""
    import re

    src = Path(__file__).read_text()
    body = src[src.index("class TrainConfig"):src.index("def __post_init__")]
    pattern = re.compile(r"^    (\w+): [^=#]+(?:=[^#]*)?#\s*(.+)$", re.M)
    return {m.group(1): m.group(2).strip() for m in pattern.finditer(body)}


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


def optional_int(v: Optional[str]) -> Optional[int]:
    return None if v is None else parse_count(v)
