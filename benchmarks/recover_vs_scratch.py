"""Prune -> recover vs. pretraining at equal size (the seeds' claim; shared/refmodels/README.md).

Prunes the trained reference teacher by `--ratio` (fraction of ALL parameters removed) with each
`--methods`, recovers each pruned model on the teacher's own training text for `--tokens`
tokens (optionally distilling from the teacher), and reports held-out perplexity beside the
from-scratch baselines of the reference README (a 16.3M Llama trained for 12.5M / 50M / 159M
tokens on the same corpus). CPU works (slowly); on a GPU pass `--device cuda`.

    python benchmarks/recover_vs_scratch.py --ratio 0.5 --methods adapt,uniform --tokens 1000000
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import tempfile
import time
from pathlib import Path


from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.data.tokens import calibration_batch, load_tokenizer, token_file
from edgeprune.pipeline.evaluate import perplexity
from edgeprune.prune import prune_model
from edgeprune.base.table import markdown_table
from edgeprune.train.config import TrainConfig
from edgeprune.train.train_data import from_tokens
from edgeprune.train.loop import train

# From shared/refmodels/README.md: hidden 384, 12 layers, 6/2 heads, FFN 384 (16,328,064 params),
# trained from scratch on the same corpus with the teacher's recipe.
FROM_SCRATCH = [(12_500_000, 177.7), (50_000_000, 19.37), (159_000_000, 8.39)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="/work/shared/refmodels/smol-llama-32m")
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--train-xz", default="/work/shared/refcorpus/train.txt.xz")
    p.add_argument("--train-chars", type=int, default=24_000_000, help="training text read from the xz")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--methods", default="adapt,uniform")
    p.add_argument("--tokens", type=int, default=1_000_000, help="recovery tokens per method")
    p.add_argument("--kd-alpha", type=float, default=0.0, help="distil from the teacher (0 = plain LM loss)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-tokens", type=int, default=40_960)
    p.add_argument("--calib-samples", type=int, default=8, help="calibration windows (prune_quality run A: 8)")
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/recover_vs_scratch")
    args = p.parse_args(argv)

    teacher = load_checkpoint(args.teacher)
    tok = load_tokenizer(args.teacher)
    work = Path(tempfile.mkdtemp())
    text = work / "train.txt"
    with lzma.open(args.train_xz, "rt", encoding="utf-8") as f:
        text.write_text(f.read(args.train_chars))
    train_tokens = token_file(text, tok)
    valid = token_file(args.valid, tok)[: args.eval_tokens]
    calib = calibration_batch(train_tokens, n_samples=args.calib_samples, seq_len=args.calib_len, seed=0)
    ppl_teacher = perplexity(teacher.model, valid, seq_len=512)
    print(f"teacher: {teacher.spec.n_params:,} params, ppl {ppl_teacher:.3f}", flush=True)
    rows, results = [], {"teacher_ppl": ppl_teacher, "args": vars(args), "runs": []}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        model = load_checkpoint(args.teacher).model
        t0 = time.time()
        res = prune_model(model, method=method, ratio=args.ratio, calib=calib, seed=0, progress=False)
        ppl_pruned = perplexity(res.model, valid, seq_len=512)
        t_prune = time.time() - t0
        cfg = TrainConfig(tokens=args.tokens, seq_len=args.seq_len, micro_batch=args.micro_batch, lr=args.lr,
                          kd_alpha=args.kd_alpha, kd_temp=2.0, eval_every=0, ckpt_every=0)
        t0 = time.time()
        out = train(res.model, from_tokens(train_tokens, tokenizer_fingerprint=tok.fingerprint,
                                           vocab_size=tok.vocab_size),
                    cfg, work / f"recover-{method}",
                    teacher=teacher.model if args.kd_alpha > 0 else None)
        t_train = time.time() - t0
        ppl_rec = perplexity(out.model.float().cpu().eval(), valid, seq_len=512)
        run = {"method": method, "params": res.params_after, "ppl_pruned": ppl_pruned,
               "ppl_recovered": ppl_rec, "tokens": out.tokens_seen, "prune_s": t_prune, "train_s": t_train}
        results["runs"].append(run)
        print(json.dumps(run), flush=True)
        rows.append([method, f"{res.params_after:,}", ppl_pruned, f"{out.tokens_seen:,}", ppl_rec,
                     round(t_train)])
    table = markdown_table(["method", "params", "ppl after pruning", "recovery tokens", "ppl recovered",
                            "train s"], rows)
    scratch = markdown_table(["from-scratch tokens (16.3M params)", "ppl"],
                             [[f"{t:,}", p] for t, p in FROM_SCRATCH])
    md = (f"teacher {args.teacher}: {teacher.spec.n_params:,} params, ppl {ppl_teacher:.3f} on the first "
          f"{len(valid):,} tokens of valid.txt (windows of 512)\n\n{table}\n\nFrom-scratch baselines "
          f"(shared/refmodels/README.md, all of valid.txt):\n\n{scratch}\n")
    Path(args.out + ".json").write_text(json.dumps(results, indent=2))
    Path(args.out + ".md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
