"""`edgeprune train`: recovery / continued pretraining, distillation, pruning-aware training.

    edgeprune train pruned/ --data corpus.txt --tokens 20M --out recovered/
    edgeprune train pruned/ --teacher base/ --kd-alpha 0.5 --kd-temp 2 --data ... --tokens ... --out ...
    edgeprune train pruned/ --teacher base/ --tokens 20M --out recovered/   (data: the teacher's own samples)
    edgeprune train base/ --prune-aware --target-params 20M --data ... --tokens ... --out small/

The output is a derived checkpoint (`save_derived`: the source's tokenizer and token ids kept).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edgeprune.base.errors import TrainError
from edgeprune.train.cli_common import training_outputs as outputs  # noqa: F401
from edgeprune.train.cli_common import (add_distill_arguments, add_training_arguments, check_data_arg, check_epochs,
                                        config_from_args, copy_log, data_of, env_device, sampling_of,
                                        summary_table, tokens_of, work_dir_of)
from edgeprune.train.config import parse_count
from edgeprune.train.recipes import recovery_recipe
from edgeprune.base.cli_flags import model_help

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help=model_help("the model to train"))
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the model's own)")
    add_distill_arguments(p)
    g = p.add_argument_group("pruning-aware training (EfficientLLM)")
    g.add_argument("--prune-aware", action="store_true", help="prune lowest-saliency groups while training")
    g.add_argument("--target-params", default=None, help="parameter count to reach (e.g. 20M)")
    g.add_argument("--prune-start", type=float, default=0.1, help="first removal at this fraction of steps")
    g.add_argument("--prune-end", type=float, default=0.6, help="last removal (target reached) at this fraction")
    g.add_argument("--prune-events", type=int, default=10, help="removal events between start and end")
    g.add_argument("--align", type=int, default=None,
                   help="keep FFN widths, hidden size and heads*head_dim multiples of N (default: from --device-profile's "
                        "quant types, else 256 if hidden >= 1024, 32 if hidden >= 256, else 8)")
    g.add_argument("--reconstruct", default=None, choices=("layerwise", "none"),
                   help="after each removal, with a --teacher, refit o_proj / down_proj by least squares towards "
                        "the teacher's hidden states on 32 training windows, as `prune --reconstruct` does "
                        "(default layerwise; none: the cut is healed by training alone)")
    g.add_argument("--device-profile", default=None, metavar="NAME",
                   help="target device profile whose quant types / kernels set the alignment (see `edgeprune devices`)")
    add_training_arguments(p, recipe="recover")


def refits_of(work_dir: Path) -> list[dict]:
    """Every surgery's reconstruction record (with its step) from the run's whole JSONL log: a
    resumed run's own history lacks the events before the checkpoint it resumed from."""
    import json

    from edgeprune.train.loop import LOG_FILE

    path = work_dir / LOG_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    return [{"step": r["step"], **r["reconstruction"]} for r in rows if "reconstruction" in r]


def run(args: argparse.Namespace) -> int:
    tokens_of(args)  # a bad count fails before any model is loaded
    target = None
    if args.prune_aware:
        if args.target_params is None:
            raise TrainError("--prune-aware needs --target-params N (e.g. 20M)")
        target = parse_count(args.target_params)
        if target <= 0:
            raise TrainError(f"--target-params {args.target_params} must be > 0")
    elif args.target_params is not None or args.align is not None or args.reconstruct is not None:
        raise TrainError("--target-params / --align / --reconstruct only apply with --prune-aware")
    check_data_arg(args)
    from edgeprune.base.torch_device import resolve_device

    resolve_device(args.device)  # a bad --device fails before any model is loaded

    from edgeprune.files.checkpoint import load_checkpoint, save_derived
    from edgeprune.train import distributed as D
    from edgeprune.train.train_data import load_data
    from edgeprune.train.loop import Trainer
    from edgeprune.train.prune_aware import PruneAwareConfig
    from edgeprune.train.teacher import load_teacher

    source = load_checkpoint(args.model)
    tok_dir = args.tokenizer or source.path
    env = env_device(args)
    try:
        cfg = config_from_args(args, recovery_recipe(bool(args.teacher)), spec=source.spec, device=env.device)
        if cfg.kd_alpha > 0 and not args.teacher:
            raise TrainError(f"kd_alpha {cfg.kd_alpha} needs --teacher CHECKPOINT")
        teacher = load_teacher(args.teacher, source.spec, tok_dir) if args.teacher else None
        prune_cfg = None
        if target is not None:
            from edgeprune.shape.units import alignment_for

            devices = []
            if args.device_profile:
                from edgeprune.devices import load_device

                devices = [load_device(args.device_profile)]
            prune_cfg = PruneAwareConfig(target_params=target, start_frac=args.prune_start, end_frac=args.prune_end,
                                         events=args.prune_events, reconstruct=args.reconstruct or "layerwise",
                                         align=alignment_for(source.spec, align=args.align, devices=devices))
            prune_cfg.validate(source.spec)
        # no --data with a teacher: distil on the teacher's own samples (train/teacher_text.py)
        data = load_data(data_of(args, cfg.tokens, cfg.valid_fraction), tok_dir, cfg.valid_fraction,
                         progress=cfg.progress and env.is_main, teacher=args.teacher,
                         sampling=sampling_of(args, env.device))
        check_epochs(args, cfg.tokens, len(data.train))
        spec_before = source.spec
        trainer = Trainer(source.model.train(), data, cfg, work_dir_of(args), env=env, teacher=teacher,
                          prune_aware=prune_cfg, fingerprint_extra={"mode": "train", "model": str(source.path)})
        result = trainer.fit(resume=args.resume)
        if env.is_main:
            meta = {"made_by": "edgeprune train", "train": cfg.to_dict(), "valid_ppl": result.valid_ppl,
                    "tokens_seen": result.tokens_seen, "device": str(env.device)}
            if args.teacher:
                meta["teacher"] = str(args.teacher)
            if prune_cfg is not None:
                meta["prune_aware"] = prune_cfg.to_dict()
                meta["reconstruction"] = refits_of(result.work_dir)
            save_derived(result.model.float().cpu(), args.out, source, meta=meta)
            copy_log(result, args.out)
            print(summary_table(result, spec_before, [["out", str(args.out)], ["device", str(env.device)]]))
    finally:
        D.teardown(env)
    return 0
