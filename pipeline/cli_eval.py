"""`edgeprune eval MODEL... --data FILE [--tasks a,b]`: held-out perplexity and lm-eval tasks.

Every model is scored with the tokenizer saved beside it. Perplexity uses the sliding-window
rule of `edgeprune.pipeline.evaluate`; by default on the held-out tail (`--valid-fraction`, the same split
training holds out), or on the whole file with `--valid-fraction 0` (a file that already is a
validation set, such as shared/refcorpus/valid.txt). Perplexities of models with different
tokenizers are not comparable; the table says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from edgeprune.base.cli_flags import model_help

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", metavar="MODEL", help=model_help("each model to evaluate"))
    p.add_argument("--data", help="held-out text: .txt/.txt.xz/.jsonl/.parquet, a directory, hf:NAME[:SPLIT], "
                                  "or 'embedded' for the embedded default corpus")
    p.add_argument("--valid-fraction", type=float, default=0.05,
                   help="score the last fraction of --data's tokens (the held-out split); 0 = all of it")
    p.add_argument("--seq-len", type=int, default=None,
                   help="window length (default: the model's context, at most 1024)")
    p.add_argument("--stride", type=int, default=None,
                   help="window stride; < seq-len scores each token with more context (default seq-len)")
    p.add_argument("--max-tokens", type=int, default=None, help="score at most this many tokens")
    p.add_argument("--batch-size", type=int, default=4, help="windows per forward pass")
    p.add_argument("--tasks", default="",
                   help="comma-separated lm-eval task names or task .yaml paths (e.g. hellaswag,arc_easy)")
    p.add_argument("--limit", type=int, default=None, help="at most this many examples per task")
    p.add_argument("--include-path", default=None,
                   help="extra folder of lm-eval task YAML files (trusted code: lm-eval runs the Python "
                        "their `!function` entries name)")
    p.add_argument("--device", default=None,
                   help="torch device: cpu, cuda, cuda:N (default: $EDGEPRUNE_DEVICE, else the GPU if any, else cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="weights dtype for evaluation")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT.json", help="also write results here")


def _check_inputs(args) -> tuple[object, list[str]]:
    """Everything a user can get wrong, checked before any model is loaded (one-line errors)."""
    from edgeprune.data.tokens import embedded_corpus_path
    from edgeprune.data.text_sources import HF_PREFIX, source_files
    from edgeprune.base.errors import CheckpointError, DataError

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.data is None and not tasks:
        raise DataError("nothing to evaluate: pass --data FILE (perplexity) and/or --tasks a,b")
    data = args.data
    if data == "embedded":
        data = embedded_corpus_path()
    elif data is not None and data.startswith(HF_PREFIX):
        from edgeprune.data.text_sources import load_hf_dataset

        load_hf_dataset(data)  # offline / unknown name: fail before loading any model
    elif data is not None:
        source_files(data)  # raises DataError naming the missing / unsupported path
    if not 0.0 <= args.valid_fraction < 1.0:
        raise DataError(f"--valid-fraction must be in [0, 1), got {args.valid_fraction}")
    for flag in ("seq_len", "stride", "max_tokens", "batch_size", "limit"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise DataError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.stride and args.seq_len and args.stride > args.seq_len:
        raise DataError(f"--stride {args.stride} is larger than --seq-len {args.seq_len}")
    for m in args.models:
        p = Path(m).expanduser()
        looks_like_hub = m.count("/") == 1 and not m.startswith((".", "/", "~")) and not p.exists()
        from edgeprune.files.gguf_input import is_gguf_file

        if is_gguf_file(p):  # converted on load (tokenizer rebuilt from its metadata)
            continue
        if not looks_like_hub and not (p / "config.json").is_file():
            raise CheckpointError(f"{m!r} is not a checkpoint directory (no config.json)")
        if p.is_dir() and not (p / "tokenizer.json").is_file():
            raise DataError(f"{m!r} has no tokenizer.json: evaluation uses the tokenizer saved with the model")
    for t in tasks:
        if t.endswith((".yaml", ".yml")) and not Path(t).expanduser().is_file():
            raise DataError(f"task file {t!r} does not exist")
    return data, tasks


def render(results: list[dict]) -> str:
    from edgeprune.base.table import human_count, markdown_table

    task_cols = sorted({f"{t}:{m.split(',')[0]}" for r in results for t, ms in r.get("tasks", {}).items()
                        for m in ms if m.split(",")[0] in ("acc", "acc_norm", "exact_match", "f1")})
    headers = ["model", "params", "tokenizer"]
    has_ppl = any("perplexity" in r for r in results)
    if has_ppl:
        headers += ["tokens", "ppl"]
    headers += task_cols
    rows = []
    for r in results:
        row = [r["model"], human_count(r["n_params"]) if r.get("n_params") else "-", r["tokenizer_fingerprint"][:8]]
        if has_ppl:
            row += [r.get("n_tokens", "-"), f"{r['perplexity']:.3f}" if "perplexity" in r else "-"]
        for col in task_cols:
            task, metric = col.split(":")
            value = next((v for k, v in r.get("tasks", {}).get(task, {}).items() if k.split(",")[0] == metric), None)
            row.append("-" if value is None else f"{value:.3f}")
        rows.append(row)
    out = markdown_table(headers, rows)
    if len({r["tokenizer_fingerprint"] for r in results}) > 1 and has_ppl:
        out += "\n\nnote: the models use different tokenizers; their perplexities are not comparable."
    return out


def outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """--json OUT.json (checked, locked and guarded by edgeprune.cli: a user's file is not replaced)."""
    return [(Path(args.json_out), "file")] if args.json_out else []


def run(args: argparse.Namespace) -> int:
    from edgeprune.base.torch_device import resolve_device

    resolve_device(args.device)  # `cuda` without CUDA, or an unknown name: one line, before any work
    data, tasks = _check_inputs(args)
    import torch

    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.pipeline.evaluate import evaluate_model

    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    valid_fraction = args.valid_fraction or None
    results = []
    for m in args.models:
        t0 = time.perf_counter()
        ckpt = load_checkpoint(m, dtype=dtype)
        model = ckpt.model.to(device)
        record = {"model": m}
        record.update(evaluate_model(model, ckpt.path, data, seq_len=args.seq_len, stride=args.stride,
                                     batch_size=args.batch_size, max_tokens=args.max_tokens,
                                     valid_fraction=valid_fraction, tasks=tasks, task_limit=args.limit,
                                     include_path=args.include_path, device=device, progress=True))
        record["seconds"] = round(time.perf_counter() - t0, 2)
        results.append(record)
        log.info("%s: %s", m, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in record.items() if k in ("perplexity", "n_tokens", "seconds")))
        del model, ckpt
    report = {"data": None if data is None else str(data), "valid_fraction": valid_fraction,
              "device": str(device), "dtype": args.dtype, "tasks": tasks, "models": results}
    print(render(results))
    if data is not None:  # every perplexity says which text, split and token count: without them it compares with nothing
        split = (f"held-out tail (last {valid_fraction:.0%} of its tokens)" if valid_fraction
                 else "all of it (--valid-fraction 0)")
        print(f"\nppl = perplexity on `{args.data}`, {split}; `tokens` = tokens scored, each model with its "
              f"own tokenizer.")
    if args.json_out:
        atomic_write_text(args.json_out, json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")
    return 0
