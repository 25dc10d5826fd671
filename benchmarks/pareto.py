"""The Pareto benchmark: quality after EQUAL recovery vs speed MEASURED on the device.

On the reference teacher (shared/refmodels/smol-llama-32m), for every method (uniform, flap,
depth, adapt as in the paper, adapt-latency, and pruning-aware training) at each target:
  1. prune to the target (a parameter ratio `pXX`, or a decode speed-up `xN.N` on `--device` at
     Q4_0 reached through the device's latency model);
  2. recover with the SAME budget for all: `--tokens` tokens of the teacher's training text, KD
     from the teacher (α 0.5, T 2) — pruning-aware training spends the same tokens pruning while
     training (with the same KD);
  3. held-out perplexity on the first `--eval-tokens` of valid.txt (windows of 512);
  4. GGUF F32 (our writer) → Q4_0 / Q8_0 by llama.cpp's own quantizer; tensor types read back
     (fallback count), file size;
  5. pp512 / tg128 on `--device` through the bench harness: each file in its own process,
     `--reps` repetitions, mean ± std, and the latency model's prediction beside it.
Results: <out>.json, <out>.md (table + the Pareto front stated in words), <out>.png (perplexity
vs measured decode tokens/s, one panel per quant type, error bars, front joined).

Phases cache their results in `--work` so a run resumes, and the CPU-heavy part (prune +
recover, phase "train") can run apart from the timing part (phase "bench", run on a quiet
machine). Example (CPU, this repository's figures):

    python benchmarks/pareto.py --phase all --targets p50,x2.0 --tokens 200000
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import sys
import time
from pathlib import Path
from typing import Any

from edgeprune.base.atomic_io import atomic_path, atomic_write_json, atomic_write_text

METHODS = ("uniform", "flap", "depth", "adapt", "adapt-latency", "prune-aware")


def _parse_target(t: str) -> dict[str, Any]:
    if t.startswith("p"):
        return {"name": t, "ratio": 1 - int(t[1:]) / 100}  # p50 = keep 50% of the parameters
    if t.startswith("x"):
        return {"name": t, "speedup": float(t[1:])}
    raise SystemExit(f"target {t!r}: use pNN (keep NN% of the parameters) or xN.N (decode speed-up)")


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self._data = None

    # ----- shared inputs -------------------------------------------------------------------------
    def data(self):
        if self._data is None:
            from edgeprune.files.checkpoint import load_checkpoint
            from edgeprune.data.tokens import calibration_batch, load_tokenizer, token_file

            a = self.args
            tok = load_tokenizer(a.teacher)
            text = self.work / "train.txt"
            if not text.is_file():
                with lzma.open(a.train_xz, "rt", encoding="utf-8") as f:
                    atomic_write_text(text, f.read(a.train_chars))
            train_tokens = token_file(text, tok)
            valid = token_file(a.valid, tok)[: a.eval_tokens]
            calib = calibration_batch(train_tokens, n_samples=a.calib_samples, seq_len=a.calib_len, seed=0)
            teacher = load_checkpoint(a.teacher)
            self._data = {"tok": tok, "train": train_tokens, "valid": valid, "calib": calib, "teacher": teacher}
        return self._data

    def latency_target(self, speedup=None):
        from edgeprune.devices import load_device
        from edgeprune.prune.latency import make_target

        d = self.data()
        return make_target(load_device(self.args.device), "Q4_0", speedup=speedup, spec=d["teacher"].spec)

    # ----- phase train: prune + recover + eval ----------------------------------------------------
    def train_one(self, method: str, target: dict) -> dict:
        import torch

        from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
        from edgeprune.pipeline.evaluate import perplexity
        from edgeprune.prune import prune_model
        from edgeprune.prune.latency import params_for_latency
        from edgeprune.train.config import TrainConfig
        from edgeprune.train.train_data import from_tokens
        from edgeprune.train.loop import train
        from edgeprune.shape.units import alignment_for

        a, d = self.args, self.data()
        run_dir = self.work / f"{method}-{target['name']}"
        done = _load_json(run_dir / "result.json")
        if done:
            return done
        teacher = d["teacher"]
        spec0 = teacher.spec
        from edgeprune.devices import load_device

        align = alignment_for(spec0, quants=["Q4_0", "Q8_0"], devices=[load_device(a.device)])
        latency = self.latency_target(target.get("speedup"))
        ratio = target.get("ratio")
        params = None
        if "speedup" in target and method != "adapt-latency":
            params = params_for_latency(spec0, latency, align)  # parameter-driven methods: the uniform-shape size
        data = from_tokens(d["train"], tokenizer_fingerprint=d["tok"].fingerprint, vocab_size=d["tok"].vocab_size)
        cfg = TrainConfig(tokens=a.tokens, seq_len=a.seq_len, micro_batch=a.micro_batch, lr=a.lr,
                          kd_alpha=a.kd_alpha, kd_temp=2.0, eval_every=0, ckpt_every=0, progress=False)
        t0 = time.time()
        torch.manual_seed(0)
        if method == "prune-aware":
            from edgeprune.train.prune_aware import PruneAwareConfig

            goal = params if params is not None else int(round(spec0.n_params * (1 - ratio)))
            pa = PruneAwareConfig(target_params=goal, align=align)
            out = train(load_checkpoint(a.teacher).model.train(), data, cfg, run_dir / "train",
                        teacher=teacher.model, prune_aware=pa)
            ppl_pruned, t_prune, prune_log = None, 0.0, {"prune_aware": pa.to_dict()}
        else:
            # the device rides along for every method (its predicted speed is logged); adapt-latency
            # aims at the speed-up itself, the others at the parameters predicted to reach it
            goal = ({"speedup": target["speedup"]} if "speedup" in target and method == "adapt-latency"
                    else {"params": params} if params else {"ratio": ratio})
            res = prune_model(load_checkpoint(a.teacher).model, method=method, calib=d["calib"], align=align, seed=0,
                              progress=False, device=a.device, quant="Q4_0", **goal)
            t_prune = time.time() - t0
            ppl_pruned = perplexity(res.model, d["valid"], seq_len=512)
            prune_log = {k: v for k, v in res.log.items() if k != "history"}
            t0 = time.time()
            out = train(res.model.train(), data, cfg, run_dir / "train", teacher=teacher.model)
        t_train = time.time() - t0
        model = out.model.float().cpu().eval()
        ppl = perplexity(model, d["valid"], seq_len=512)
        save_checkpoint(model, run_dir / "model", tokenizer_dir=Path(a.teacher))
        result = {"method": method, "target": target["name"], "params": model.spec.n_params,
                  "spec": model.spec.to_dict(), "ppl_pruned": ppl_pruned, "ppl_recovered": ppl,
                  "tokens": out.tokens_seen, "prune_s": round(t_prune, 1), "train_s": round(t_train, 1),
                  "align": align, "prune_log": prune_log,
                  "predicted": latency.summary(spec0, model.spec)}
        atomic_write_json(run_dir / "result.json", result)
        print(json.dumps({k: result[k] for k in ("method", "target", "params", "ppl_pruned", "ppl_recovered",
                                                  "train_s")}), flush=True)
        return result

    # ----- phase bench: export + measure -----------------------------------------------------------
    def export(self, name: str, model_dir: Path) -> dict[str, Path]:
        from edgeprune.files.checkpoint import load_checkpoint
        from edgeprune.export.gguf_writer import write_gguf
        from edgeprune.export.llamacpp_runner import llamacpp_quantize
        from edgeprune.shape.quant_presets import gguf_ftype

        out = {}
        gdir = self.work / "gguf"
        gdir.mkdir(exist_ok=True)
        f32 = gdir / f"{name}-F32.gguf"
        for q in ("Q4_0", "Q8_0"):
            path = gdir / f"{name}-{q}.gguf"
            if not path.is_file():
                if not f32.is_file():
                    ck = load_checkpoint(model_dir)
                    write_gguf(ck.model, f32, ftype="F32", tokenizer_dir=model_dir)
                llamacpp_quantize(f32, path, gguf_ftype(q))
            out[q] = path
        f32.unlink(missing_ok=True)
        return out

    def bench_one(self, name: str, model_dir: Path) -> dict:
        from edgeprune.files.gguf_reader import tensor_report
        from edgeprune.runtime_bench.harness import bench

        cache = self.work / f"bench-{name}.json"
        done = _load_json(cache)
        if done:
            return done
        files = self.export(name, model_dir)
        rows = {}
        for q, path in files.items():
            rec = bench([path], self.args.device, n_prompt=512, n_gen=128, reps=self.args.reps, progress=False)[0]
            rep = tensor_report(path)
            rows[q] = {"file_mb": path.stat().st_size / 1e6, "fallbacks": len(rep["fallbacks"]),
                       "type_counts": rep["type_counts"], "bits_per_weight": rep["bits_per_weight"],
                       "pp": rec.pp_tps_mean, "pp_std": rec.pp_tps_std, "tg": rec.tg_tps_mean, "tg_std": rec.tg_tps_std,
                       "tg_model": rec.roofline.get("model_tg_tps"), "pp_model": rec.roofline.get("model_pp_tps"),
                       "model_source": rec.roofline.get("model_source"), "load_avg": os.getloadavg()[0]}
        atomic_write_json(cache, rows)
        print(name, json.dumps({q: (round(r["tg"]), round(r["pp"])) for q, r in rows.items()}), flush=True)
        return rows


def report(b: Bench, runs: list[dict], teacher_bench: dict, teacher_ppl: float) -> str:
    from edgeprune.base.table import markdown_table

    a = b.args
    rows, points = [], []
    for r in runs:
        bq = r["bench"]
        for q in ("Q4_0", "Q8_0"):
            m = bq[q]
            t = teacher_bench[q]
            rows.append([r["method"], r["target"], q, f"{r['params'] / 1e6:.2f}M", f"{m['file_mb']:.1f}", m["fallbacks"],
                         f"{m['pp']:.0f} ± {m['pp_std']:.0f}", f"{m['tg']:.0f} ± {m['tg_std']:.0f}",
                         f"{m['tg'] / t['tg']:.2f}×", f"{m['tg_model']:.0f}" if m.get("tg_model") else "-",
                         f"{r['ppl_pruned']:.1f}" if r.get("ppl_pruned") else "-", f"{r['ppl_recovered']:.2f}"])
            points.append({"name": f"{r['method']} {r['target']}", "method": r["method"], "q": q,
                           "tg": m["tg"], "tg_std": m["tg_std"], "ppl": r["ppl_recovered"]})
    for q in ("Q4_0", "Q8_0"):
        t = teacher_bench[q]
        rows.append(["(teacher)", "-", q, "31.47M", f"{t['file_mb']:.1f}", t["fallbacks"], f"{t['pp']:.0f} ± {t['pp_std']:.0f}",
                     f"{t['tg']:.0f} ± {t['tg_std']:.0f}", "1.00×", f"{t['tg_model']:.0f}" if t.get("tg_model") else "-",
                     "-", f"{teacher_ppl:.2f}"])
    table = markdown_table(["method", "target", "quant", "params", "file MB", "fallbacks", "pp512 t/s",
                            "tg128 t/s", "decode speed-up", "tg predicted", "ppl pruned", "ppl recovered"], rows)
    fronts = {}
    for q in ("Q4_0", "Q8_0"):
        pts = sorted([p for p in points if p["q"] == q], key=lambda p: -p["tg"])
        front, best = [], float("inf")
        for p in pts:  # fastest first: on the front when no faster point is also better
            if p["ppl"] < best:
                front.append(p["name"])
                best = p["ppl"]
        fronts[q] = front
    _plot(points, fronts, teacher_bench, teacher_ppl, Path(a.out + ".png"))
    return table, fronts


def _plot(points, fronts, teacher_bench, teacher_ppl, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    methods = sorted({p["method"] for p in points})
    for ax, q in zip(axes, ("Q4_0", "Q8_0")):
        for k, m in enumerate(methods):
            mp = [p for p in points if p["q"] == q and p["method"] == m]
            ax.errorbar([p["tg"] for p in mp], [p["ppl"] for p in mp], xerr=[p["tg_std"] for p in mp], fmt="o",
                        color=f"C{k}", label=m, capsize=3)
            for p in mp:
                ax.annotate(p["name"].split()[-1], (p["tg"], p["ppl"]), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        fp = sorted([p for p in points if p["q"] == q and p["name"] in fronts[q]], key=lambda p: p["tg"])
        ax.plot([p["tg"] for p in fp], [p["ppl"] for p in fp], "k--", lw=1, label="Pareto front")
        t = teacher_bench[q]
        ax.scatter([t["tg"]], [teacher_ppl], marker="*", s=150, color="k", label="teacher (unpruned)")
        ax.set_xlabel(f"measured decode tg128, tokens/s ({q}, llama.cpp, local)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.set_title(f"{q}: quality after equal recovery vs measured speed")
    axes[0].set_ylabel("held-out perplexity (valid.txt slice, log scale)")
    axes[1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=120)  # named: the temporary's suffix is not .png
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phase", choices=("train", "bench", "report", "all"), default="all")
    p.add_argument("--teacher", default="/work/shared/refmodels/smol-llama-32m")
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--train-xz", default="/work/shared/refcorpus/train.txt.xz")
    p.add_argument("--train-chars", type=int, default=6_000_000, help="training text read from the xz")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--targets", default="p50,x2.0", help="pNN: keep NN%% of the params; xN.N: decode speed-up")
    p.add_argument("--tokens", type=int, default=200_000, help="recovery tokens, the same for every method")
    p.add_argument("--kd-alpha", type=float, default=0.5)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--micro-batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-tokens", type=int, default=40_960)
    p.add_argument("--calib-samples", type=int, default=8)
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--device", default="local")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--work", default="/tmp/edgeprune-pareto")
    p.add_argument("--out", default="benchmarks/pareto")
    a = p.parse_args(argv)
    b = Bench(a)
    methods = [m for m in a.methods.split(",") if m]
    targets = [_parse_target(t) for t in a.targets.split(",") if t]
    runs = []
    if a.phase in ("train", "all"):
        for t in targets:
            for m in methods:
                runs.append(b.train_one(m, t))
    else:
        runs = [r for t in targets for m in methods
                if (r := _load_json(b.work / f"{m}-{t['name']}" / "result.json"))]
    if a.phase == "train":
        return 0
    teacher_ppl_file = b.work / "teacher_ppl.json"
    teacher_ppl = _load_json(teacher_ppl_file)
    if teacher_ppl is None:
        from edgeprune.pipeline.evaluate import perplexity

        teacher_ppl = perplexity(b.data()["teacher"].model, b.data()["valid"], seq_len=512)
        atomic_write_json(teacher_ppl_file, teacher_ppl)
    if a.phase in ("bench", "all"):
        tb = b.bench_one("teacher", Path(a.teacher))
        for r in runs:
            r["bench"] = b.bench_one(f"{r['method']}-{r['target']}", b.work / f"{r['method']}-{r['target']}" / "model")
    else:
        tb = _load_json(b.work / "bench-teacher.json")
        for r in runs:
            r["bench"] = _load_json(b.work / f"bench-{r['method']}-{r['target']}.json")
    table, fronts = report(b, runs, tb, teacher_ppl)
    from edgeprune.devices.latency_model import latency_model_for
    from edgeprune.devices import load_device

    lat = latency_model_for(load_device(a.device)).describe()
    md = (f"# Pareto benchmark: quality after equal recovery vs measured speed\n\n"
          f"Teacher `{a.teacher}` (31.47M params), held-out perplexity on the first {a.eval_tokens:,} tokens of "
          f"`{a.valid}` (windows of 512; the teacher scores {teacher_ppl:.3f} there). Every model recovered with "
          f"{a.tokens:,} tokens of the teacher's training text, KD α {a.kd_alpha} T 2 from the teacher, lr {a.lr}, "
          f"{a.micro_batch}×{a.seq_len}, CPU. Speeds: llama.cpp (llama-cpp-python) on `{a.device}`, pp512 / tg128, "
          f"{a.reps} repetitions, mean ± std, each file in its own process; tg predicted = the device latency model "
          f"({lat}).\n\n{table}\n\n"
          + "\n".join(f"**Pareto front ({q}, perplexity vs measured decode speed)**: {', '.join(f)}" for q, f in fronts.items())
          + f"\n\n![pareto]({Path(a.out).name}.png)\n")
    Path(a.out + ".json").write_text(json.dumps({"args": vars(a), "teacher_ppl": teacher_ppl, "teacher_bench": tb,
                                                 "runs": runs, "fronts": fronts}, indent=1))
    Path(a.out + ".md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
