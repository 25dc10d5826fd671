"""Pruning quality benchmark: perplexity right after pruning, no recovery.

For each method at 25% and 50% parameter reduction (fraction of ALL parameters removed,
embeddings included), prune the trained teacher, measure held-out perplexity, and record the
per-layer widths. Torch-Pruning's LLM recipe (uniform, magnitude importance on the HF model)
runs at the same budgets as an outside peer when `torch_pruning` is installed.

    python benchmarks/prune_quality.py [--teacher DIR] [--valid FILE] [--train-xz FILE]
        [--calib-samples 32] [--calib-len 256] [--eval-tokens 40960] [--out benchmarks/prune_quality]

Writes OUT.json (every number) and OUT.md (the tables). CPU-only is fine (a few minutes per
method on 2 cores for the 31.5M teacher).
"""

from __future__ import annotations

import argparse
import copy
import json
import lzma
import sys
import tempfile
import time
from pathlib import Path

import torch

from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.data.tokens import calibration_batch, token_file
from edgeprune.pipeline.evaluate import perplexity
from edgeprune.prune import prune_model
from edgeprune.base.table import human_count, markdown_table

METHODS = ("uniform", "flap", "depth", "adapt")


def train_slice(xz: Path, chars: int) -> Path:
    """The first `chars` characters of the training split, as a text file (calibration only
    ever sees training text)."""
    out = Path(tempfile.mkdtemp()) / "calib.txt"
    with lzma.open(xz, "rt", encoding="utf-8") as f:
        out.write_text(f.read(chars))
    return out


def widths(spec) -> str:
    return " ".join(f"{lay.n_heads}/{lay.n_kv_heads}/{lay.ffn_dim}" for lay in spec.layers)


def torch_pruning_peer(teacher_dir: Path, ratio: float, calib: torch.Tensor, eval_tokens, args) -> dict:
    """Torch-Pruning (Fang et al. 2023) on the HF LlamaForCausalLM, following its LLM example
    (examples/LLMs/prune_llm.py): MetaPruner, global_pruning=False (uniform), L2 group-magnitude
    importance, heads pruned as whole heads, lm_head ignored. Its pruning_ratio is a per-layer
    channel ratio, so it is solved by bisection to hit the same parameter budget."""
    import torch_pruning as tp
    from transformers import AutoModelForCausalLM

    def build(ch_ratio: float):
        hf = AutoModelForCausalLM.from_pretrained(str(teacher_dir), torch_dtype=torch.float32).eval()
        cfg = hf.config
        num_heads = {}
        for layer in hf.model.layers:
            a = layer.self_attn
            num_heads[a.q_proj] = cfg.num_attention_heads
            num_heads[a.k_proj] = cfg.num_key_value_heads
            num_heads[a.v_proj] = cfg.num_key_value_heads
        pruner = tp.pruner.MetaPruner(
            hf, example_inputs=calib[:1, :16], importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ch_ratio, ignored_layers=[hf.lm_head], num_heads=num_heads, prune_num_heads=True,
            prune_head_dims=False, head_pruning_ratio=ch_ratio, global_pruning=False, round_to=None,
            out_channel_groups={}, forward_fn=lambda m, x: m(x).logits)
        # hidden size untouched: prune only MLP channels and heads, as our methods do
        for g in pruner.step(interactive=True):
            g.prune()
        n_kv = hf.model.layers[0].self_attn.k_proj.out_features // cfg.head_dim
        n_q = hf.model.layers[0].self_attn.q_proj.out_features // cfg.head_dim
        for layer in hf.model.layers:
            layer.self_attn.num_heads = n_q
            layer.self_attn.num_key_value_heads = n_kv
            layer.self_attn.num_key_value_groups = max(1, n_q // max(1, n_kv))
        hf.config.num_attention_heads, hf.config.num_key_value_heads = n_q, n_kv
        return hf

    n0 = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(teacher_dir)).parameters())
    goal = n0 * (1 - ratio)
    lo, hi, best = 0.0, 0.95, None
    for _ in range(6):
        mid = (lo + hi) / 2
        hf = build(mid)
        n = sum(p.numel() for p in hf.parameters())
        if best is None or abs(n - goal) < abs(best[1] - goal):
            best = (mid, n, hf)
        lo, hi = (mid, hi) if n > goal else (lo, mid)
    ch_ratio, n, hf = best

    class Wrap(torch.nn.Module):  # evaluate.perplexity calls model(ids).logits
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids, **kw):
            return self.m(input_ids=ids)

    ppl = perplexity(Wrap(hf), eval_tokens, seq_len=args.eval_len, max_tokens=args.eval_tokens)
    lay = hf.model.layers[0]
    return {"channel_ratio": round(ch_ratio, 4), "params": n, "ppl": ppl,
            "widths": f"{lay.self_attn.q_proj.out_features // hf.config.head_dim}/"
                      f"{lay.self_attn.k_proj.out_features // hf.config.head_dim}/{lay.mlp.gate_proj.out_features}"
                      " (all layers)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="/work/shared/refmodels/smol-llama-32m")
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--train-xz", default="/work/shared/refcorpus/train.txt.xz")
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--calib-len", type=int, default=256)
    p.add_argument("--eval-tokens", type=int, default=40960)
    p.add_argument("--eval-len", type=int, default=512)
    p.add_argument("--ratios", default="0.25,0.5")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--no-peer", action="store_true", help="skip Torch-Pruning")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--adapt-step", type=float, default=0.02, help="adapt's step_fraction (share removed per step)")
    p.add_argument("--out", default="benchmarks/prune_quality")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    teacher = load_checkpoint(args.teacher)
    calib_src = train_slice(Path(args.train_xz), 4_000_000)
    calib = calibration_batch(str(calib_src), teacher.path, n_samples=args.calib_samples, seq_len=args.calib_len,
                              seed=0)
    eval_tokens = token_file(args.valid, teacher.path)
    t0 = time.perf_counter()
    base_ppl = perplexity(teacher.model, eval_tokens, seq_len=args.eval_len, max_tokens=args.eval_tokens)
    results = {"setup": {"teacher": args.teacher, "params": teacher.spec.n_params,
                         "calib": f"{args.calib_samples}x{args.calib_len} tokens from the first 4M chars of train.txt.xz",
                         "eval": f"first {args.eval_tokens} tokens of valid.txt, windows of {args.eval_len}",
                         "teacher_ppl": base_ppl, "eval_seconds": time.perf_counter() - t0,
                         "torch_threads": args.threads, "adapt_step_fraction": args.adapt_step},
               "runs": []}
    print(f"teacher: {human_count(teacher.spec.n_params)} params, ppl {base_ppl:.3f}", flush=True)
    for ratio in [float(r) for r in args.ratios.split(",")]:
        for method in args.methods.split(","):
            model = copy.deepcopy(teacher.model)
            t = time.perf_counter()
            opts = {"step_fraction": args.adapt_step} if method == "adapt" else {}
            res = prune_model(model, method=method, ratio=ratio, calib=calib, progress=False, **opts)
            secs = time.perf_counter() - t
            ppl = perplexity(res.model, eval_tokens, seq_len=args.eval_len, max_tokens=args.eval_tokens)
            run = {"method": method, "ratio": ratio, "params": res.params_after, "target": res.target_params,
                   "ratio_removed": res.ratio_removed, "ppl": ppl, "prune_seconds": secs, "align": res.align,
                   "widths": widths(res.spec), "n_layers": res.spec.n_layers,
                   "log": {k: v for k, v in res.log.items() if k != "history"}}
            results["runs"].append(run)
            print(f"{method:8s} {ratio:.2f}: {human_count(res.params_after)} params, ppl {ppl:.3f} "
                  f"({secs:.0f} s) widths {run['widths']}", flush=True)
            Path(args.out + ".json").write_text(json.dumps(results, indent=2))
        if not args.no_peer:
            try:
                t = time.perf_counter()
                peer = torch_pruning_peer(Path(args.teacher), ratio, calib, eval_tokens, args)
                peer.update(method="torch-pruning (uniform, L2 magnitude)", ratio=ratio,
                            ratio_removed=1 - peer["params"] / teacher.spec.n_params,
                            prune_seconds=time.perf_counter() - t)
            except Exception as e:  # report, don't hide: the table says why the peer is missing
                peer = {"method": "torch-pruning", "ratio": ratio, "error": f"{type(e).__name__}: {e}"[:300]}
            results["runs"].append(peer)
            print(f"torch-pruning {ratio:.2f}: {peer}", flush=True)
            Path(args.out + ".json").write_text(json.dumps(results, indent=2))
    Path(args.out + ".json").write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


def render(results: dict) -> str:
    s = results["setup"]
    rows = []
    for r in results["runs"]:
        if "error" in r:
            rows.append([r["method"], f"{r['ratio']:.0%}", "-", "-", "-", "-", r["error"][:80]])
            continue
        rows.append([r["method"], f"{r['ratio']:.0%}", f"{r['ratio_removed']:.1%}", human_count(r["params"]),
                     f"{r['ppl']:.2f}", f"{r['prune_seconds']:.0f}", r["widths"]])
    return (f"teacher {s['teacher']} ({human_count(s['params'])} params), perplexity {s['teacher_ppl']:.3f}\n"
            f"calibration: {s['calib']}; eval: {s['eval']}\n\n"
            + markdown_table(["method", "target", "removed", "params", "ppl", "prune s", "widths heads/kv/ffn per layer"],
                             rows))


def merge(paths: list[str]) -> dict:
    """One result set from several runs of this script (e.g. one per ratio) with equal setups."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    out = {"setup": parts[0]["setup"], "runs": []}
    for part in parts:
        out["runs"] += part["runs"]
    out["runs"].sort(key=lambda r: (r["ratio"], METHODS.index(r["method"]) if r["method"] in METHODS else 9))
    return out


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--merge":  # --merge OUT a.json b.json ...
        merged = merge(sys.argv[3:])
        Path(sys.argv[2] + ".json").write_text(json.dumps(merged, indent=2))
        print(render(merged))
        sys.exit(0)
    sys.exit(main())
