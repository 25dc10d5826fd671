"""Training recipes: named sets of TrainConfig values (`--recipe NAME` or a TOML file), and the
defaults that follow the model and the device (`--seq-len` / `--micro-batch` left unset).

Precedence, lowest first: TrainConfig's field defaults < the verb's recipe < `--recipe` < flags.

Why the recovery values (docs/DESIGN.md §5, benchmarks/recovery_settings.md):
- lr: recovery continues training a model that is already trained, so its peak is below a
  pretraining peak: Sheared-LLaMA (Xia et al. 2023) continues at 1e-4 against LLaMA-2's 3e-4,
  Minitron (Sreenivas et al. 2024) distils at 1e-4 from 8B teachers; our reference teacher
  pretrained at 2e-3. In benchmarks/recovery_settings.md (CPU-sized: 12 steps, 24.6k tokens)
  3e-4 recovered the 50%-pruned reference teacher to ppl 24.9 where 1e-3 reached 31.0.
- schedule: WSD (Hu et al. 2024): constant after a short warmup and a decay at the end, so an
  incremental run's stages share one curve and the decay lands in the final recovery.
- KD: Minitron (Muralidharan et al. 2024, §4) finds logit-only distillation (forward KL, T = 1,
  no CE term) best for retraining a pruned model: `recover-kd` is that (kd_alpha 1.0), the default
  with a teacher (the best row of the CPU-sized sweep); `recover-mixed` is the classic Hinton mix
  (α 0.5, T 2), which beat KD-only at lr 1e-3 there (29.3 vs 31.0), and plain CE was worst (34.0).
- seq_len: the model's own context, capped at 1024, so the recovered model keeps the teacher's
  context. Not settled by measurement: in the CPU-sized sweep 8×256 windows beat 2×1024
  at equal tokens and steps (26.3 vs 31.0, scored on 1024-token windows); gpu_check.sh measures it
  at 8M tokens.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.errors import TrainError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_RECOVER = {"lr": 3e-4, "schedule": "wsd", "warmup_frac": 0.02, "decay_frac": 0.2, "min_lr_ratio": 0.1}

RECIPES: dict[str, dict[str, Any]] = {
    # from scratch: TrainConfig's own defaults (nanoGPT-like cosine)
    "pretrain": {},
    # recovery of a pruned model with the LM loss only
    "recover": dict(_RECOVER, kd_alpha=0.0),
    # recovery by logit-only distillation from the unpruned teacher (Minitron)
    "recover-kd": dict(_RECOVER, kd_alpha=1.0, kd_temp=1.0),
    # recovery with the Hinton mix of LM loss and distillation
    "recover-mixed": dict(_RECOVER, kd_alpha=0.5, kd_temp=2.0),
}



def recovery_recipe(with_teacher: bool) -> str:
    """The recipe recovery starts from (`train`, `prune --incremental`, `ship`): logit-only
    distillation when there is a teacher (Minitron), else the LM loss alone."""
    return "recover-kd" if with_teacher else "recover"


SEQ_LEN_CAP = 1024  # longest default window: attention cost and memory grow with it, quality gains flatten
CPU_TOKENS_PER_STEP = 2048  # CPU default batch: more optimizer steps per token where compute is scarce


def load_recipe(name: str) -> dict[str, Any]:
    """A named recipe, or a TOML file whose keys are TrainConfig fields."""
    from edgeprune.train.config import TrainConfig

    if name in RECIPES:
        return dict(RECIPES[name])
    path = Path(name).expanduser()
    if not path.is_file():
        raise TrainError(f"--recipe {name!r} is neither a recipe ({', '.join(RECIPES)}) nor a TOML file")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TrainError(f"recipe {path} is not valid TOML ({e})") from None
    known = {f.name for f in fields(TrainConfig)} - {"tokens"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TrainError(f"recipe {path}: unknown key(s) {unknown}; known: {sorted(known)}")
    return raw


def auto_seq_len(spec: Any) -> int:
    """The model's context, capped at SEQ_LEN_CAP."""
    return max(2, min(int(spec.max_position_embeddings), SEQ_LEN_CAP))


def auto_micro_batch(spec: Any, seq_len: int, device: Any, free_bytes: Optional[int] = None) -> int:
    """Windows per forward when --micro-batch is not given.

    CPU: CPU_TOKENS_PER_STEP tokens per step. CUDA: small models are launch-bound at a few
    thousand tokens per forward (measured: 3% MFU at 16×1024 for a 16M student), so aim at
    64k tokens per forward below 100M parameters, 32k below 500M, 16k above, within 40% of the
    free GPU memory by an activation estimate (bf16, no recompute: ~34·hidden bytes per token per
    layer, Korthikanti et al. 2022, plus ~10 bytes per logit for logits, their gradient and the
    teacher's) so the default never runs out of memory."""
    if getattr(device, "type", str(device)) != "cuda":
        return max(1, CPU_TOKENS_PER_STEP // seq_len)
    n = spec.n_params
    target = 65536 if n < 100e6 else 32768 if n < 500e6 else 16384
    per_token = 34 * spec.hidden_size * spec.n_layers + 10 * spec.vocab_size
    if free_bytes is None:
        import torch

        free_bytes, _ = torch.cuda.mem_get_info(device)
    fit = int(0.4 * free_bytes / (per_token * seq_len))
    return max(1, min(target // seq_len, fit))
