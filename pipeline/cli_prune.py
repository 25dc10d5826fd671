"""`edgeprune prune MODEL --method adapt --ratio 0.5 --data DATA --out DIR`.

--ratio is the fraction of parameters REMOVED (0.5 keeps half). Every input is checked before
any work (ratio range, method, the target against the one-head-per-layer floor, the calibration
data), so a bad request writes nothing. Prints the per-layer before/after table and the
parameter count; writes the checkpoint atomically with the pruning record in edgeprune.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from edgeprune.pipeline.method_help import METHOD_NAMES, methods_help  # text only: --help stays fast

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgeprune.base.cli_flags import hidden_alias, model_help

    p.add_argument("model", help=model_help("the model to prune"))
    p.add_argument("--method", default="adapt", choices=METHOD_NAMES, help=methods_help())
    # a target is required unless the run only trims the vocabulary (checked in run())
    t = p.add_mutually_exclusive_group()
    t.add_argument("--ratio", type=float, help="fraction of the parameters to REMOVE, in (0, 1): 0.5 keeps half")
    t.add_argument("--params", type=int, help="parameters to keep (instead of --ratio)")
    t.add_argument("--decode-tps", type=float, metavar="TPS",
                   help="speed target: decode >= TPS tokens/s on --device at --quant (through its latency model)")
    t.add_argument("--prefill-tps", type=float, metavar="TPS",
                   help="speed target: prefill >= TPS tokens/s on --device at --quant (search or a parameter method)")
    t.add_argument("--speedup", type=float, metavar="X",
                   help="speed target: decode X times faster than the input model on --device at --quant")
    v = p.add_mutually_exclusive_group()
    v.add_argument("--vocab", type=int, metavar="N",
                   help="trim the vocabulary to at most N tokens (fewer when --data uses fewer distinct ones): the "
                        "most frequent in --data, closed under the merges building them, plus every special / chat-template token and the byte tokens "
                        "(any text still tokenizes; tokens that were dropped come out as shorter pieces)")
    v.add_argument("--vocab-coverage", type=float, metavar="P",
                   help="trim the vocabulary to the fewest most frequent tokens covering fraction P of --data's "
                        "tokens (e.g. 0.999), with the same tokens always kept as --vocab; with --method search and a "
                        "decode target the search may trim further, down to 0.99 coverage, where that buys the speed "
                        "(a speed target always counts the trimmed head)")
    p.add_argument("--device", default=None,
                   help="target device profile (see `edgeprune devices`): sets the alignment from its quant types, "
                        "the latency model for --decode-tps / --speedup / adapt-latency, and the predicted speed shown")
    p.add_argument("--quant", default=None,
                   help="GGUF type the model will ship at (default: the device's first, else Q4_0); also aligns widths")
    # required, and `--calib` (its older name) still answers: a required group of the two, the old
    # name hidden (a required flag alone would refuse a run that gives only the old name)
    data_group = p.add_mutually_exclusive_group(required=True)
    data = data_group.add_argument("--data", metavar="DATA",
                                   help="calibration text: .txt/.jsonl/.parquet file or folder, or hf:NAME "
                                        "(tokenized with the model's own tokenizer; windows drawn from its train split)")
    hidden_alias(data_group, data, "--calib")  # type: ignore[arg-type]
    p.add_argument("--out", required=True, metavar="DIR", help="output checkpoint directory (written atomically)")
    p.add_argument("--align", type=int, default=None,
                   help="round MLP widths and heads*head_dim to a multiple of N (default: the strictest block size of "
                        "--quant / the device's quant types and kernels; without either 256 if hidden >= 1024, "
                        "32 if hidden >= 256, else 8)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing the calibration windows")
    p.add_argument("--calib-samples", type=int, default=32, help="calibration windows (default 32)")
    p.add_argument("--calib-len", type=int, default=128, help="tokens per calibration window (default 128)")
    p.add_argument("--reconstruct", default="layerwise", choices=("layerwise", "none"),
                   help="after the cut, refit o_proj / down_proj of every kept layer by least squares so the model "
                        "reproduces the original's hidden states on the calibration tokens (removed layers become a "
                        "linear map merged into the layer before them); no training, same architecture "
                        "(default layerwise; none: the model exactly as cut)")
    p.add_argument("--heal-tokens", default="0", metavar="N",
                   help="after reconstruction, train each kept layer to reproduce the original's hidden states on N "
                        "tokens of --data (block-wise, no LM head: cheap on a CPU; e.g. 64k; default 0: off)")
    p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                   help="method option, e.g. --opt A=0.03 --opt steps=40 for adapt (repeatable)")
    p.add_argument("--incremental", action="store_true",
                   help="prune in stages (Adapt-Pruner prune->train), checkpoints in DIR.stages/, resumable")
    p.add_argument("--stages", type=int, default=None, help="number of stages (default: ~4%% of the params each)")
    p.add_argument("--json", action="store_true", help="print the pruning summary as JSON after the table")
    m = p.add_argument_group("a speed target as measured on the device (--speedup / --decode-tps / --prefill-tps)")
    m.add_argument("--measure-rounds", type=int, default=0, metavar="N",
                   help="export each cut at --quant, time it against the original in N paired rounds on --device, "
                        "and cut again with the goal corrected until the measured figure is within --tolerance "
                        "(default 0: trust the latency model's prediction)")
    m.add_argument("--tolerance", type=float, default=None, metavar="F",
                   help="measured figure within this fraction of the goal counts as landed (default 0.05)")
    m.add_argument("--tries", type=int, default=None, metavar="N", help="cuts at most (default 3); the closest is kept")
    g = p.add_argument_group("stage training (--incremental; Adapt-Pruner prune -> train, one lr schedule)")
    g.add_argument("--tokens-per-stage", default=None,
                   help="training tokens after each stage's pruning (e.g. 1M; with --incremental)")
    g.add_argument("--recover-tokens", default="0",
                   help="training tokens after the last stage, the end of the shared schedule (default 0)")
    g.add_argument("--train-data", default=None, help="training data for the stages (default: --data)")
    from edgeprune.train.cli_common import add_config_arguments, add_device_argument, add_distill_arguments

    add_device_argument(g, flag="--train-device", dest="train_device")
    add_distill_arguments(p)
    # --seed is prune's own (calibration windows, and the training's data order); the schedule
    # defaults to WSD so that the stages share one warmup and one decay
    add_config_arguments(p, "recover", skip=("seed", "fsdp"))


def _options(pairs: list[str]) -> dict[str, str]:
    from edgeprune.base.errors import PruneError

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise PruneError(f"--opt {pair!r} is not NAME=VALUE")
        k, v = pair.split("=", 1)
        out[k.strip()] = _number(v.strip())
    return out


def _number(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _stage_training(args, ckpt):
    """(data, TrainConfig, teacher, env) for --tokens-per-stage, validated before any pruning."""
    from edgeprune.base.errors import PruneError
    from edgeprune.train.cli_common import config_from_args
    from edgeprune.train.recipes import recovery_recipe
    from edgeprune.train.config import parse_count
    from edgeprune.pipeline.stage_training import stage_inputs
    from edgeprune.train.distributed import DistEnv
    from edgeprune.base.torch_device import resolve_device

    env = DistEnv(device=resolve_device(args.train_device))
    # --seed is prune's own flag (calibration windows), and the stages' data order too
    cfg = config_from_args(args, recovery_recipe(bool(args.teacher)), spec=ckpt.spec, device=env.device,
                           tokens=parse_count(args.tokens_per_stage), seed=args.seed)
    if cfg.kd_alpha > 0 and not args.teacher:
        raise PruneError(f"kd_alpha {cfg.kd_alpha} needs --teacher CHECKPOINT (e.g. the model being pruned)")
    data, teacher = stage_inputs(cfg, args.train_data or args.data, ckpt.path, student_spec=ckpt.spec,
                                 teacher=args.teacher if args.teacher and cfg.kd_alpha > 0 else None,
                                 progress=cfg.progress)
    return data, cfg, teacher, env


def _measure_settings(args: argparse.Namespace, request) -> "dict | None":
    """land()'s keywords for --measure-rounds, or None without it; a wrong combination is one line
    before the model is read."""
    from edgeprune.base.errors import PruneError

    if not args.measure_rounds:
        if args.tolerance is not None or args.tries is not None:
            raise PruneError("--tolerance / --tries apply to a measured target: pass --measure-rounds N")
        return None
    from edgeprune.pipeline.land_target import measure_problems
    from edgeprune.runtime_bench.harness import make_target

    problems = measure_problems(args.measure_rounds, speed_target=request.speed_target, incremental=args.incremental)
    if problems:
        raise PruneError(problems[0])

    make_target(request.device)  # a device that cannot be reached for timing fails here, before any work
    out = {}
    if args.tolerance is not None:
        if not 0 < args.tolerance < 1:
            raise PruneError(f"--tolerance {args.tolerance} must be in (0, 1), e.g. 0.05")
        out["tolerance"] = args.tolerance
    if args.tries is not None:
        if args.tries < 1:
            raise PruneError(f"--tries {args.tries} must be >= 1")
        out["tries"] = args.tries
    return out


def run(args: argparse.Namespace) -> int:
    from edgeprune.files.checkpoint import load_checkpoint, save_derived
    from edgeprune.base.errors import DataError, PruneError
    from edgeprune.prune.api import prune_model
    from edgeprune.prune.request import PruneRequest
    from edgeprune.pipeline.stage_training import search_distil

    options = _options(args.opt)
    if args.method == "search" and not args.incremental:
        # finished candidates are journaled beside the output: an interrupted search resumes
        options.setdefault("journal", str(_search_work(args) / "journal.json"))
    targets = (args.ratio, args.params, args.decode_tps, args.prefill_tps, args.speedup)
    trim_only = all(x is None for x in targets)
    if trim_only and args.vocab is None and args.vocab_coverage is None:
        raise PruneError("a target is required: --ratio, --params, --decode-tps, --prefill-tps or --speedup "
                         "(or only --vocab N / --vocab-coverage P to trim the vocabulary)")
    from edgeprune.prune.vocab_axis import vocab_problems

    for problem in vocab_problems(args.vocab, args.vocab_coverage):
        raise PruneError(problem)
    if trim_only and (args.incremental or args.measure_rounds):
        raise PruneError("--incremental / --measure-rounds need a target (--ratio, --params, --speedup, ...)")
    if not args.data:
        raise DataError("--data is required: the calibration text (.txt/.jsonl/.parquet file or folder, or hf:NAME)")
    if args.ratio is not None and not 0.0 < args.ratio < 1.0:
        raise PruneError(f"--ratio {args.ratio} is outside (0, 1): it is the fraction of parameters to REMOVE "
                         "(0.5 keeps half the model)")
    if args.tokens_per_stage is not None and not args.incremental:
        raise PruneError("--tokens-per-stage only applies with --incremental")
    if args.recipe is not None:
        from edgeprune.train.recipes import load_recipe

        # read even when no stage training will use it: a missing file or a misspelt key is the
        # user's mistake, and running without the settings they asked for would hide it
        load_recipe(args.recipe)
    if args.tokens_per_stage is not None:
        from edgeprune.train.config import parse_count
        from edgeprune.base.torch_device import resolve_device

        for flag, value in (("--tokens-per-stage", args.tokens_per_stage), ("--recover-tokens", args.recover_tokens)):
            if parse_count(value) < (1 if flag == "--tokens-per-stage" else 0):
                raise PruneError(f"{flag} {value} must be > 0" if flag == "--tokens-per-stage"
                                 else f"{flag} {value} must be >= 0")
        resolve_device(args.train_device)  # a bad --train-device fails before any work
    elif args.train_device is not None or args.teacher is not None or args.recover_tokens != "0":
        raise PruneError("--train-device / --teacher / --recover-tokens apply to stage training: "
                         "pass --incremental --tokens-per-stage N")
    if args.calib_samples < 1 or args.calib_len < 2:
        raise DataError(f"--calib-samples {args.calib_samples} / --calib-len {args.calib_len}: need >= 1 and >= 2")
    from edgeprune.data.tokens import calibration_batch, is_hf_source

    if not is_hf_source(args.data) and not Path(args.data).exists():
        raise DataError(f"calibration data {args.data!r} does not exist: pass a text/jsonl/parquet file or folder")
    if trim_only:
        return _trim_only(args)
    # the whole request is checked before the model is read (method, target, options, device, quant)
    request = PruneRequest(method=args.method, ratio=args.ratio, params=args.params, decode_tps=args.decode_tps,
                           prefill_tps=args.prefill_tps, speedup=args.speedup, align=args.align, device=args.device,
                           quant=args.quant, options=options, incremental=args.incremental,
                           reconstruct=args.reconstruct)
    measure = _measure_settings(args, request)
    from edgeprune.train.config import parse_count

    heal_tokens = parse_count(args.heal_tokens)
    if heal_tokens < 0 or (heal_tokens and (args.incremental or args.reconstruct == "none")):
        raise PruneError(f"--heal-tokens {args.heal_tokens}: a count >= 0, after reconstruction of a one-shot prune "
                         "(not with --incremental or --reconstruct none)")
    ckpt = load_checkpoint(args.model)
    if ckpt.path is None or not (Path(ckpt.path) / "tokenizer.json").is_file():
        raise DataError(f"{args.model} has no tokenizer.json to tokenize the calibration data with")
    # a --vocab below what must stay fails in seconds; a speed target counts the head rows that
    # ship (the one-shot prune also lets the search choose among the options, theirs first)
    vocab = _vocab_options(args, ckpt)
    plan = request.resolve(ckpt.spec, vocab_size=vocab[0].size if vocab else None)  # before any work
    if plan.latency is not None:
        log.info("latency model: %s", plan.latency.model.describe())
    calib = calibration_batch(args.data, ckpt.path, n_samples=args.calib_samples, seq_len=args.calib_len,
                              seed=args.seed)
    from edgeprune.pipeline.prune_verdict import (assess, held_out_loss, train_tokens_per_s, verdict_lines,
                                                  verdict_windows)

    # the verdict's windows, measured on the original before the cut changes it in place
    held = verdict_windows(args.data, ckpt.path, args.calib_len, args.seed)
    loss_original = held_out_loss(ckpt.model, held)
    trim = vocab[0].trim if vocab else None
    out = Path(args.out)
    if args.incremental:
        from edgeprune.train.config import parse_count
        from edgeprune.pipeline.stage_training import build_incremental

        stages_dir = out.parent / f"{out.name}.stages"
        data = cfg = teacher = env = None
        if args.tokens_per_stage:
            data, cfg, teacher, env = _stage_training(args, ckpt)
        inc, training = build_incremental(
            ckpt.model, plan, out_dir=stages_dir, calib=calib, stages=args.stages, seed=args.seed, source=ckpt,
            data=data, cfg=cfg, tokens_per_stage=cfg.tokens if cfg else None,
            recover_tokens=parse_count(args.recover_tokens), teacher=teacher, env=env)
        res = inc.run()
        training_summary = None
        if training is not None:
            final = training.recover(res.model)
            if final is not None:
                res.model = final.model.float().cpu().eval()
            training_summary = {**training.budget.to_dict(), "device": str(training.env.device),
                                "config": cfg.to_dict(), "teacher": args.teacher,
                                "valid_ppl": training.results[-1].valid_ppl if training.results else None}
        summary = {**res.summary(), "tokens_per_stage": cfg.tokens if cfg else None, "training": training_summary,
                   "stages_dir": str(stages_dir)}
    elif measure is not None:
        from edgeprune.pipeline.land_target import DeviceMeasure, land

        meter = DeviceMeasure(ckpt, request.device, request.ship_quant, rounds=args.measure_rounds)
        try:
            res, landing = land(ckpt.model, request, calib=calib, measure=meter, seed=args.seed,
                                distil=search_distil(), vocab=vocab, **measure)
        finally:
            meter.close()
        print(landing.text())
        summary = res.summary()
        if res.vocab is not None:
            trim = res.vocab.trim  # the vocabulary of the try that was kept (timed trimmed)
    else:
        res = prune_model(ckpt.model, plan, calib=calib, seed=args.seed, progress=True, distil=search_distil(),
                          vocab=vocab)
        summary = res.summary()
        if res.vocab is not None:
            trim = res.vocab.trim  # the vocabulary the search chose (theirs, or a smaller one it allowed)
    if heal_tokens:
        summary["healing"] = _heal(args, res.model, heal_tokens)
        print(f"block-wise healing: {summary['healing']['tokens']:,} tokens in {summary['healing']['seconds']:.0f} s "
              f"({summary['healing']['tokens_per_s']:.0f} tokens/s)")
    model, table = res.model, res.table()
    summary.update(calib=str(args.data), calib_samples=args.calib_samples, calib_len=args.calib_len, seed=args.seed)
    # measured before a vocabulary trim renumbers the ids the verdict's windows hold
    summary["verdict"] = assess(loss_original, held_out_loss(model, held), train_tokens_per_s(model, held),
                                model=str(args.model), pruned=str(out), data=str(args.data))
    if trim is None:
        save_derived(model, out, ckpt, meta={"pruning": summary})
    else:
        from edgeprune.prune.vocab_surgery import save_trimmed, trim_rows

        save_trimmed(trim_rows(model, trim.kept), out, ckpt, trim, meta={"pruning": summary}, data=str(args.data))
    print(table)
    if trim is not None:
        print(_trim_line(trim))
    print(verdict_lines(summary["verdict"]))
    print(f"wrote {out}")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


def _heal(args: argparse.Namespace, model: Any, tokens: int) -> dict:
    """Block-wise healing of the pruned `model` towards the original (read again: the pruning cut
    the loaded copy in place) on `tokens` tokens of --data, windows other than calibration's."""
    from edgeprune.data.tokens import calibration_batch
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.train.blockwise import heal_blockwise

    original = load_checkpoint(args.model)
    windows = calibration_batch(args.data, original.path, n_samples=max(1, -(-tokens // args.calib_len)),
                                seq_len=args.calib_len, seed=args.seed + 1)
    return heal_blockwise(model, original.model, windows, progress=True)


def _search_work(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    return out.parent / f"{out.name}.search"


def _vocab_trim(args: argparse.Namespace, ckpt):
    """The trimmed vocabulary --vocab / --vocab-coverage asks for (None without them), counted on
    --data with the model's own tokenizer."""
    if args.vocab is None and args.vocab_coverage is None:
        return None
    from edgeprune.data.chat_template import read_chat_template
    from edgeprune.data.vocab_trim import plan_trim, text_token_counts

    tok_dir = Path(ckpt.path)
    tj = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    counts = text_token_counts(args.data, tok_dir)
    return plan_trim(tj, counts, size=args.vocab, coverage=args.vocab_coverage,
                     chat_template=read_chat_template(tok_dir))


def _vocab_options(args: argparse.Namespace, ckpt):
    """The vocabularies --vocab / --vocab-coverage allow (prune/vocab_axis.py; None without them),
    counted on --data with the model's own tokenizer."""
    from edgeprune.prune.vocab_axis import vocab_options_for

    return vocab_options_for(Path(ckpt.path), args.data, size=args.vocab, coverage=args.vocab_coverage)


def _trim_line(trim) -> str:
    return (f"vocabulary {trim.original_size:,} -> {trim.size:,} tokens ({trim.required:,} always kept); "
            f"kept tokens cover {100 * trim.covered:.3f}% of the data's {trim.counted:,} tokens")


def _trim_only(args: argparse.Namespace) -> int:
    """prune with only --vocab / --vocab-coverage: the same model, its vocabulary trimmed."""
    from edgeprune.base.errors import DataError
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.prune.vocab_surgery import save_trimmed, trim_rows

    ckpt = load_checkpoint(args.model)
    if ckpt.path is None or not (Path(ckpt.path) / "tokenizer.json").is_file():
        raise DataError(f"{args.model} has no tokenizer.json to trim")
    trim = _vocab_trim(args, ckpt)
    out = Path(args.out)
    save_trimmed(trim_rows(ckpt.model, trim.kept), out, ckpt, trim, data=str(args.data))
    print(_trim_line(trim))
    print(f"wrote {out}")
    if args.json:
        print(json.dumps({k: v for k, v in trim.summary().items() if k != "kept_ids"}, indent=2))
    return 0


def outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """What this command writes (checked, locked and guarded by edgeprune.cli)."""
    out = Path(args.out)
    outs = [(out, "dir")]
    if args.method == "search" and not args.incremental:
        outs.append((_search_work(args), "work"))
    if args.incremental:
        outs.append((out.parent / f"{out.name}.stages", "work"))
    return outs
