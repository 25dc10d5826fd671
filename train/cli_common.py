"""Flags shared by `edgeprune pretrain` and `edgeprune train`, and the run skeleton they share.

Every TrainConfig field is a flag generated from the field (name, type, choices, help); heavy imports stay
inside functions so `edgeprune --help` stays fast.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import Field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgeprune.base.errors import TrainError
from edgeprune.train.teacher_settings import SamplingSettings as SamplingDefaults
from edgeprune.train.config import DISTILL, TRAINING, VERB, TrainConfig, parse_count
from edgeprune.base.cli_flags import model_help

if TYPE_CHECKING:
    from edgeprune.shape.spec import ArchSpec
    from edgeprune.train.distributed import DistEnv
    from edgeprune.train.loop import TrainResult

log = logging.getLogger(__name__)

# A run beyond these is a typo (`--tokens 1e30` never ends), not a plan: refused unless --force.
MAX_TOKENS = 10 ** 13  # 10T tokens: far beyond any run of a 10M-1B model on this toolchain
MAX_EPOCHS = 1000  # passes over the training data


# argparse's value type for a field's annotation (the annotations are strings: `from __future__ import annotations`)
FLAG_TYPES = {"int": int, "float": float, "str": str}


def add_config_arguments(p: argparse.ArgumentParser, recipe: str, skip: tuple[str, ...] = ()) -> None:
    """`--recipe` and one flag per TrainConfig field of the training group (help = the field's
    description in train/config.py), all defaulting to None so config_from_args can tell a given
    flag from the recipe's value. `recipe` names the verb's default recipe, whose values the help
    shows."""
    from edgeprune.train.recipes import RECIPES

    g = p.add_argument_group("training (TrainConfig; --recipe sets many at once)")
    g.add_argument("--recipe", default=None,
                   help=f"named training recipe ({', '.join(RECIPES)}) or a TOML file of these keys "
                        f"(default: {recipe}); flags override it")
    _add_field_flags(g, TRAINING, {**TrainConfig(tokens=1).to_dict(), **RECIPES[recipe]}, skip)


def add_distill_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distillation")
    g.add_argument("--teacher", default=None, help=model_help("the teacher (same tokenizer, any widths)"))
    _add_field_flags(g, DISTILL, TrainConfig(tokens=1).to_dict())
    g.add_argument("--sample-temperature", type=float, default=None,
                   help=f"teacher samples (--data teacher:N): temperature (default: {SamplingDefaults.temperature})")
    g.add_argument("--sample-top-p", type=float, default=None,
                   help=f"teacher samples: nucleus (top-p) mass (default: {SamplingDefaults.top_p})")


def _add_field_flags(g: Any, group: str, shown: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    """One flag per TrainConfig field of `group`, with the default --help shows from `shown`
    unless the field says what the verb computes instead."""
    for f in fields(TrainConfig):
        if f.metadata["group"] != group or f.name in skip:
            continue
        add_field_flag(g, f, f.metadata["default_text"] or shown[f.name])


def add_field_flag(g: Any, f: Field, shown: Any, note: str = "") -> argparse.Action:
    """The flag of one TrainConfig field `f`, named after it (`--kd-alpha` for kd_alpha,
    `--no-progress` for a bool), its help the field's description (+ `note`) and `shown` as the
    default; the flag defaults to None so a given flag is told from the recipe's value."""
    flag = "--" + f.name.replace("_", "-")
    help_ = f"{f.metadata['help']}{note} (default: {shown})".replace("%", "%%")
    if f.type == "bool":
        return g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
    return g.add_argument(flag, dest=f.name, type=FLAG_TYPES[f.type], default=None, choices=f.metadata["choices"],
                          help=help_)


def add_training_arguments(p: argparse.ArgumentParser, recipe: str = "pretrain") -> None:
    teacher = "" if recipe == "pretrain" else (
        ", teacher:N (N tokens sampled from --teacher, cached), or a comma-separated mix (corpus.txt,teacher:5M); "
        "default with --teacher: teacher samples for --tokens")
    p.add_argument("--data", help=f"training text: .txt/.jsonl/.parquet file or folder, hf:NAME[:split]{teacher}")
    p.add_argument("--tokens", required=True, help="training tokens (5000000, 5e6, 5M)")
    p.add_argument("--out", required=True, type=Path, help="output checkpoint directory (written atomically)")
    p.add_argument("--work-dir", type=Path, default=None,
                   help="training checkpoints + JSONL log (default: OUT.train beside --out)")
    p.add_argument("--resume", type=Path, default=None, help="continue the run whose work dir (or step dir) this is")
    add_device_argument(p)
    add_config_arguments(p, recipe)
    p.add_argument("--force", action="store_true",
                   help=f"accept --tokens above {MAX_TOKENS:.0e} or more than {MAX_EPOCHS} passes over the data")


def add_device_argument(p: argparse.ArgumentParser, flag: str = "--device", dest: str = "device") -> None:
    p.add_argument(flag, dest=dest, default=None,
                   help="torch device to train on: cpu, cuda (this rank's GPU under torchrun), cuda:N "
                        "(default: $EDGEPRUNE_DEVICE, else the local GPU if any, else cpu)")


def config_from_args(args: argparse.Namespace, recipe: str, *, spec: Any = None, device: Any = None,
                     **overrides: Any) -> TrainConfig:
    """TrainConfig from: field defaults < the verb's `recipe` < --recipe < given flags <
    `overrides`; an unset seq_len / micro_batch follows `spec` and `device` (train/recipes.py)."""
    from edgeprune.train.recipes import auto_micro_batch, auto_seq_len, load_recipe

    kw: dict[str, Any] = load_recipe(recipe)
    if getattr(args, "recipe", None):
        kw.update(load_recipe(args.recipe))
    for f in fields(TrainConfig):  # every generated flag the user gave (None: not given)
        v = getattr(args, f.name, None)
        if f.metadata["group"] != VERB and v is not None:
            kw[f.name] = v
    kw.update(overrides)
    if "tokens" not in kw:
        kw["tokens"] = tokens_of(args)
    if "seq_len" not in kw:
        kw["seq_len"] = auto_seq_len(spec) if spec is not None else TrainConfig.seq_len
    if "micro_batch" not in kw:
        kw["micro_batch"] = (auto_micro_batch(spec, kw["seq_len"], device) if spec is not None and device is not None
                             else TrainConfig.micro_batch)
    return TrainConfig(**kw)


def tokens_of(args: argparse.Namespace) -> int:
    tokens = parse_count(args.tokens)
    if tokens <= 0:
        raise TrainError(f"--tokens {args.tokens} must be > 0")
    if tokens > MAX_TOKENS and not getattr(args, "force", False):
        raise TrainError(f"--tokens {args.tokens} ({tokens:.3g}) is beyond any sane run (> {MAX_TOKENS:.0e}); "
                         "pass --force if you mean it")
    return tokens


def check_data_arg(args: argparse.Namespace) -> None:
    """Fail before any model is loaded (one line, exit 2). Without --data a run with --teacher
    samples its data from the teacher (`data_of`)."""
    from edgeprune.data.text_sources import has_teacher_source, source_problem

    teacher = getattr(args, "teacher", None)
    for name in ("sample_temperature", "sample_top_p"):
        value = getattr(args, name, None)
        if value is not None and not (value > 0 and (name != "sample_top_p" or value <= 1)):
            raise TrainError(f"--{name.replace('_', '-')} {value} must be > 0{' and <= 1' if 'top_p' in name else ''}")
    if not args.data:
        if teacher:
            return
        raise TrainError("no training data: pass --data PATH (text, jsonl, parquet, a folder of them), "
                         "--data hf:NAME or, with --teacher, --data teacher:N")
    problem = source_problem(args.data)
    if problem is not None:
        raise TrainError(f"training {problem}")
    if has_teacher_source(args.data) and not teacher:
        raise TrainError(f"--data {args.data}: teacher:N samples text from a teacher and this run has none "
                         "(edgeprune train --teacher CHECKPOINT)")


def data_of(args: argparse.Namespace, tokens: int, valid_fraction: float) -> str:
    """--data, or with --teacher and no --data the teacher's own samples for `tokens` training tokens."""
    from edgeprune.train.train_data import default_teacher_data

    return args.data or default_teacher_data(tokens, valid_fraction)


def sampling_of(args: argparse.Namespace, device: Any) -> dict[str, Any]:
    """Teacher-sampling settings from the flags (edgeprune.train.teacher_text.SamplingSettings' keywords)."""
    return {"temperature": getattr(args, "sample_temperature", None), "top_p": getattr(args, "sample_top_p", None),
            "device": device}


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


def summary_table(result: TrainResult, spec_before: ArchSpec, extra_rows: Optional[list[list[str]]] = None) -> str:
    from edgeprune.base.table import human_count, markdown_table

    rows = [["steps", str(result.steps)], ["tokens", human_count(result.tokens_seen)],
            ["params", f"{human_count(spec_before.n_params)} -> {human_count(result.model.spec.n_params)}"
             if spec_before.n_params != result.model.spec.n_params else human_count(spec_before.n_params)],
            ["train loss", f"{result.train_loss:.4f}" if result.train_loss is not None else "-"],
            ["valid ppl", f"{result.valid_ppl:.3f}" if result.valid_ppl is not None else "-"],
            ["work dir", str(result.work_dir)]]
    rows += extra_rows or []
    return markdown_table(["", "value"], rows)


def copy_log(result: TrainResult, out: Path) -> None:
    """The JSONL log beside the final checkpoint too (it describes how the model was made)."""
    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.train.loop import LOG_FILE

    src = result.work_dir / LOG_FILE
    if src.is_file():
        atomic_write_text(out / LOG_FILE, src.read_text())


def env_device(args: argparse.Namespace) -> DistEnv:
    """Join torchrun's group (if any) on the resolved --device; call it before loading models so
    a bad device fails in one line without work."""
    from edgeprune.train import distributed as D

    return D.setup(args.device)
