"""Flags shared by `edgeprune pretrain` and `edgeprune train`, and the run skeleton they share.

Every TrainConfig field is a flag whose help is the field's comment; heavy imports stay
inside functions so `edgeprune --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Optional

from edgeprune.errors import TrainError
from edgeprune.train.config import TrainConfig, parse_count

log = logging.getLogger(__name__)

# A run beyond these is a typo (`--tokens 1e30` never ends), not a plan: refused unless --force.
MAX_TOKENS = 10 ** 13  # 10T tokens: far beyond any run of a 10M-1B model on this toolchain
MAX_EPOCHS = 1000  # passes over the training data


def add_training_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainConfig(tokens=1)
    p.add_argument("--data", help="training text: .txt/.jsonl/.parquet file or folder, or hf:NAME[:split]")
    p.add_argument("--tokens", required=True, help="training tokens (5000000, 5e6, 5M)")
    p.add_argument("--out", required=True, type=Path, help="output checkpoint directory (written atomically)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="training checkpoints + JSONL log (default: OUT.train beside --out)")
    p.add_argument("--resume", type=Path, default=None, help="continue the run whose work dir (or step dir) this is")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per training window")
    p.add_argument("--micro-batch", type=int, default=d.micro_batch, help="windows per forward/backward per GPU")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio, help="final lr / peak lr")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW decay on matrices")
    p.add_argument("--schedule", choices=("cosine", "wsd", "constant"), default=d.schedule, help="lr schedule")
    p.add_argument("--warmup-frac", type=float, default=d.warmup_frac, help="fraction of steps warming up")
    p.add_argument("--decay-frac", type=float, default=d.decay_frac, help="WSD: fraction of steps decaying")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip, help="max grad norm (0 = off)")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=d.precision,
                   help="auto = bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--activation-checkpointing", action="store_true", help="recompute layers in backward")
    p.add_argument("--fsdp", action="store_true", help="under torchrun: shard with FSDP2 instead of replicating with DDP")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for init, data order, RNGs")
    p.add_argument("--valid-fraction", type=float, default=d.valid_fraction, help="held-out tail of the data")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="steps between held-out evaluations")
    p.add_argument("--eval-windows", type=int, default=d.eval_windows, help="held-out windows per evaluation")
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every, help="steps between training checkpoints")
    p.add_argument("--keep-ckpts", type=int, default=d.keep_ckpts, help="newest training checkpoints kept")
    p.add_argument("--log-every", type=int, default=d.log_every, help="steps between JSONL records")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: the local GPU if any)")
    p.add_argument("--force", action="store_true",
                   help=f"accept --tokens above {MAX_TOKENS:.0e} or more than {MAX_EPOCHS} passes over the data")


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    tokens = parse_count(args.tokens)
    if tokens <= 0:
        raise TrainError(f"--tokens {args.tokens} must be > 0")
    if tokens > MAX_TOKENS and not getattr(args, "force", False):
        raise TrainError(f"--tokens {args.tokens} ({tokens:.3g}) is beyond any sane run (> {MAX_TOKENS:.0e}); "
                         "pass --force if you mean it")
    kw = dict(tokens=tokens, seq_len=args.seq_len, micro_batch=args.micro_batch, grad_accum=args.grad_accum,
              lr=args.lr, min_lr_ratio=args.min_lr_ratio, weight_decay=args.weight_decay,
              schedule=args.schedule, warmup_frac=args.warmup_frac, decay_frac=args.decay_frac,
              grad_clip=args.grad_clip, precision=args.precision, compile=args.compile,
              activation_checkpointing=args.activation_checkpointing, fsdp=args.fsdp, seed=args.seed,
              valid_fraction=args.valid_fraction, eval_every=args.eval_every, eval_windows=args.eval_windows,
              ckpt_every=args.ckpt_every, keep_ckpts=args.keep_ckpts, log_every=args.log_every,
              progress=not args.no_progress)
    kw.update(overrides)
    return TrainConfig(**kw)


def check_data_arg(args: argparse.Namespace) -> None:
    """Fail before any model is loaded (one line, exit 2)."""
    from edgeprune.data import is_hf_source

    if not args.data:
        raise TrainError("no training data: pass --data PATH (text, jsonl, parquet, a folder of them) "
                         "or --data hf:NAME")
    if not is_hf_source(args.data) and not Path(args.data).expanduser().exists():
        raise TrainError(f"training data {args.data!r} does not exist")


def check_epochs(args: argparse.Namespace, tokens: int, n_train_tokens: int) -> None:
    """Refuse (unless --force) a token count that would loop over the data more than MAX_EPOCHS times."""
    if n_train_tokens > 0 and tokens / n_train_tokens > MAX_EPOCHS and not getattr(args, "force", False):
        raise TrainError(f"--tokens {args.tokens} is {tokens / n_train_tokens:.3g} passes over the "
                         f"{n_train_tokens} training tokens of --data (more than {MAX_EPOCHS}); "
                         "use more data, fewer tokens, or --force")


def work_dir_of(args: argparse.Namespace) -> Path:
    if args.work_dir is not None:
        return args.work_dir
    if args.resume is not None:
        from edgeprune.train.state import resolve_resume_dir

        step = resolve_resume_dir(args.resume)
        return step.parent if step.name.startswith("step-") else args.resume
    out: Path = args.out
    return out.parent / f"{out.name}.train"


def training_outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """What train / pretrain write: the final checkpoint and the run's work folder (checked,
    locked and guarded by edgeprune.cli: two runs never share a log or checkpoints)."""
    return [(Path(args.out), "dir"), (Path(work_dir_of(args)), "work")]


def summary_table(result, spec_before, extra_rows: Optional[list[list[str]]] = None) -> str:
    from edgeprune.table import human_count, markdown_table

    rows = [["steps", str(result.steps)], ["tokens", human_count(result.tokens_seen)],
            ["params", f"{human_count(spec_before.n_params)} -> {human_count(result.model.spec.n_params)}"
             if spec_before.n_params != result.model.spec.n_params else human_count(spec_before.n_params)],
            ["train loss", f"{result.train_loss:.4f}" if result.train_loss is not None else "-"],
            ["valid ppl", f"{result.valid_ppl:.3f}" if result.valid_ppl is not None else "-"],
            ["work dir", str(result.work_dir)]]
    rows += extra_rows or []
    return markdown_table(["", "value"], rows)


def copy_log(result, out: Path) -> None:
    """The JSONL log beside the final checkpoint too (it describes how the model was made)."""
    from edgeprune.checkpoint import atomic_write_text
    from edgeprune.train.loop import LOG_FILE

    src = result.work_dir / LOG_FILE
    if src.is_file():
        atomic_write_text(out / LOG_FILE, src.read_text())


def env_device(args: argparse.Namespace):
    from edgeprune.train import distributed as D

    return D.setup(args.device or os.environ.get("EDGEPRUNE_DEVICE") or None)
