"""Recovery settings at equal tokens: which lr, KD weight and window recover a pruned model best?

Prunes the reference teacher (shared/refmodels/smol-llama-32m) by `--ratio` with adapt, once,
then recovers a copy of the pruned model for every setting with the same number of tokens,
through the same Trainer and recipe (`recover`, train/recipes.py) that `edgeprune train` uses,
and scores each on a fixed slice of shared/refcorpus/valid.txt (1024-token windows), beside the
teacher on the same slice and the from-scratch figures of shared/refmodels/README.md (those are
on ALL of valid.txt: the slice's figures are comparable with each other, not exactly with them).
Optionally adds incremental pruning (prune -> train stages + final recovery, one schedule) at the
same total tokens.

    # CPU-sized (what benchmarks/recovery_settings.md holds)
    python benchmarks/recovery_settings.py --tokens 24576 --threads 1 --eval-tokens 16384
    # GPU-sized (benchmarks/gpu_check.sh): 8M tokens per setting
    python benchmarks/recovery_settings.py --tokens 8M --device cuda --incremental-stages 6 \
        --out benchmarks/recovery_settings_gpu

A setting is NAME:key=value,key=value with TrainConfig keys (lr, kd_alpha, kd_temp, seq_len,
micro_batch, schedule, ...); `--settings` takes several separated by ';'.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import lzma
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.data.tokens import calibration_batch, load_tokenizer, token_file
from edgeprune.pipeline.evaluate import perplexity
from edgeprune.prune import prune_model
from edgeprune.base.table import markdown_table
from edgeprune.base.torch_device import resolve_device
from edgeprune.train.config import TrainConfig, parse_count
from edgeprune.train.train_data import from_tokens
from edgeprune.train.distributed import DistEnv
from edgeprune.train.loop import train
from edgeprune.train.recipes import RECIPES, auto_micro_batch

# shared/refmodels/README.md: a 16.3M Llama of the pruned shape trained from scratch on the same
# corpus with the teacher's recipe, perplexity on all of refcorpus/valid.txt
FROM_SCRATCH = [(12_500_000, 177.7), (50_000_000, 19.37), (159_000_000, 8.39)]

DEFAULT_SETTINGS = ";".join([  # the CPU-sized run of recovery_settings.md
    "kd1-lr1e-3:kd_alpha=1,kd_temp=1,lr=1e-3",
    "ce-lr1e-3:kd_alpha=0,lr=1e-3",
    "kd.5T2-lr1e-3:kd_alpha=0.5,kd_temp=2,lr=1e-3",
    "kd1-lr1e-3-seq256:kd_alpha=1,kd_temp=1,lr=1e-3,seq_len=256",
    "kd1-lr3e-4:kd_alpha=1,kd_temp=1,lr=3e-4",
])
INT_KEYS = ("seq_len", "micro_batch", "grad_accum")


def parse_settings(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for item in [x.strip() for x in text.split(";") if x.strip()]:
        name, _, body = item.partition(":")
        kv: dict[str, Any] = {}
        for pair in [p for p in body.split(",") if p]:
            k, v = pair.split("=", 1)
            k = k.strip()
            kv[k] = int(v) if k in INT_KEYS else v if k == "schedule" else float(v)
        out.append((name.strip(), kv))
    return out


def read_text(path: str, chars: int, work: Path) -> Path:
    """The first `chars` characters of a .txt / .txt.xz corpus as a plain text file."""
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read(chars)
    out = work / "train.txt"
    out.write_text(text)
    return out


def write(args, results, rows, ppl_teacher, teacher_ck, pruned, valid, device, final: bool) -> str:
    """The markdown + JSON so far (rewritten after every run: an interrupted sweep keeps its rows)."""
    table = markdown_table(["setting", "lr", "KD α", "window", "batch", "tokens", "steps", "valid ppl",
                            "× teacher", "train s"], rows)
    scratch = markdown_table(["from-scratch tokens (16.3M params)", "valid ppl (all of valid.txt)"],
                             [[f"{t:,}", q] for t, q in FROM_SCRATCH])
    md = (f"Teacher {Path(args.teacher).name}: {teacher_ck.spec.n_params:,} params, valid ppl {ppl_teacher:.3f}; "
          f"pruned by {args.method} to {pruned.params_after:,} params ({args.ratio:.0%} removed): ppl "
          f"{results['pruned_ppl']:.2f} before recovery. Perplexity on the first {len(valid):,} tokens of "
          f"{Path(args.valid).name} ({min(1024, teacher_ck.spec.max_position_embeddings)}-token windows), device {device} ({results['host']}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads).{'' if final else ' (sweep in progress)'}"
          f"\n\n{table}\n\nFrom-scratch baselines (shared/refmodels/README.md):\n\n{scratch}\n")
    Path(args.out + ".json").write_text(json.dumps(results, indent=2))
    Path(args.out + ".md").write_text(md)
    return md


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="/work/shared/refmodels/smol-llama-32m")
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--train", default="/work/shared/refcorpus/train.txt.xz", help=".txt or .txt.xz training text")
    p.add_argument("--train-chars", type=int, default=None,
                   help="characters read from --train (default: ~5 per training token, at least 4M)")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--method", default="adapt")
    p.add_argument("--tokens", default="100000", help="recovery tokens per setting (100000, 8M)")
    p.add_argument("--settings", default=DEFAULT_SETTINGS)
    p.add_argument("--seq-len", type=int, default=1024, help="window unless a setting sets seq_len")
    p.add_argument("--micro-batch", type=int, default=None, help="default: auto for the device (train/recipes.py)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--incremental-stages", type=int, default=0,
                   help="also run incremental pruning with this many stages at the same total tokens "
                        "(the first setting's values)")
    p.add_argument("--eval-tokens", type=int, default=32_768, help="tokens of valid.txt scored (a fixed slice: its first N; 0 = all of it)")
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--calib-len", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: torch's; 1 is faster on a machine other jobs share)")
    p.add_argument("--out", default=str(Path(__file__).with_name("recovery_settings")))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    tokens = parse_count(args.tokens)
    teacher_ck = load_checkpoint(args.teacher)
    tok = load_tokenizer(args.teacher)
    work = Path(tempfile.mkdtemp(prefix="recovery-settings-"))
    t0 = time.time()
    train_text = read_text(args.train, args.train_chars or max(4_000_000, 5 * tokens), work)
    train_tokens = token_file(train_text, tok, progress=False)
    data = from_tokens(train_tokens, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)
    valid = token_file(args.valid, tok, progress=False)
    valid = valid[: args.eval_tokens] if args.eval_tokens else valid
    print(f"data: {len(train_tokens):,} training tokens, {len(valid):,} valid tokens ({time.time() - t0:.0f} s)",
          flush=True)

    def score(model) -> float:
        window = min(1024, model.spec.max_position_embeddings)
        return perplexity(model.float().to(device).eval(), valid, seq_len=window, device=device)

    ppl_teacher = score(teacher_ck.model)
    calib = calibration_batch(train_tokens, n_samples=args.calib_samples, seq_len=args.calib_len, seed=0)
    t0 = time.time()
    pruned = prune_model(load_checkpoint(args.teacher).model, method=args.method, ratio=args.ratio, calib=calib,
                         seed=0, progress=False)
    t_prune = time.time() - t0
    ppl_pruned = score(copy.deepcopy(pruned.model))
    print(f"teacher {teacher_ck.spec.n_params:,} params ppl {ppl_teacher:.3f}; pruned ({args.method}) "
          f"{pruned.params_after:,} params ppl {ppl_pruned:.2f} ({t_prune:.0f} s)", flush=True)

    env = DistEnv(device=device)
    results: dict[str, Any] = {"args": vars(args), "device": str(device), "host": platform.node(),
                               "torch": torch.__version__, "teacher_ppl": ppl_teacher, "pruned_ppl": ppl_pruned,
                               "params_pruned": pruned.params_after, "params_teacher": teacher_ck.spec.n_params,
                               "runs": []}
    rows = []

    def config(kv: dict[str, Any]) -> TrainConfig:
        seq = int(kv.get("seq_len", args.seq_len))
        mb = kv.get("micro_batch") or args.micro_batch or auto_micro_batch(pruned.model.spec, seq, device)
        return TrainConfig(**{**RECIPES["recover"], "tokens": tokens, "seq_len": seq, "micro_batch": int(mb),
                              "compile": args.compile, "eval_every": 0, "ckpt_every": 0, "progress": False,
                              "log_every": 10, **{k: v for k, v in kv.items() if k not in ("seq_len", "micro_batch")}})

    def record(name: str, cfg: TrainConfig, res_model, seen: int, steps: int, seconds: float, extra=None) -> None:
        ppl = score(res_model)
        run = {"name": name, "config": cfg.to_dict(), "tokens": seen, "steps": steps, "ppl": ppl,
               "train_s": seconds, "tokens_per_s": seen / max(seconds, 1e-9), **(extra or {})}
        results["runs"].append(run)
        print(json.dumps({k: run[k] for k in ("name", "tokens", "steps", "ppl", "train_s")}), flush=True)
        rows.append([name, f"{cfg.lr:g}", f"{cfg.kd_alpha:g}" + (f" (T {cfg.kd_temp:g})" if cfg.kd_alpha else ""),
                     cfg.seq_len, f"{cfg.micro_batch}×{cfg.seq_len}", f"{seen:,}", steps, f"{ppl:.3f}",
                     f"{ppl / ppl_teacher:.3f}", round(seconds)])
        write(args, results, rows, ppl_teacher, teacher_ck, pruned, valid, device, final=False)

    settings = parse_settings(args.settings)
    for name, kv in settings:
        cfg = config(kv)
        teacher = load_checkpoint(args.teacher).model if cfg.kd_alpha > 0 else None
        t0 = time.time()
        out = train(copy.deepcopy(pruned.model), data, cfg, work / name, teacher=teacher, env=env)
        record(name, cfg, out.model, out.tokens_seen, out.steps, time.time() - t0)
        del out, teacher

    if args.incremental_stages:
        from edgeprune.pipeline.stage_training import build_incremental
        from edgeprune.prune.request import PruneRequest

        name, kv = settings[0]
        cfg = config(kv)
        teacher = load_checkpoint(args.teacher).model if cfg.kd_alpha > 0 else None
        t0 = time.time()
        pruner, training = build_incremental(
            load_checkpoint(args.teacher).model, PruneRequest(method=args.method, ratio=args.ratio),
            out_dir=work / "incremental", calib=calib, stages=args.incremental_stages, seed=0, progress=False,
            data=data, cfg=cfg, total_tokens=tokens, teacher=teacher, env=env)
        model = pruner.run().model
        final = training.recover(model)
        seen = training.budget.total_tokens
        record(f"incremental×{args.incremental_stages} ({name})", cfg, final.model, seen,
               training.budget.total_steps, time.time() - t0, {"budget": training.budget.to_dict()})

    sys.stdout.write(write(args, results, rows, ppl_teacher, teacher_ck, pruned, valid, device, final=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
