"""`dist/report.md` + `dist/report.json` + the quality-vs-latency plot for `edgeprune ship`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgeprune.checkpoint import atomic_write_text
from edgeprune.table import human_bytes, markdown_table


def write_report(out: Path, recipe: Any, teacher_dir: Path, prune: dict, evaluation: dict, export: dict,
                 bench: dict, stages: list[dict]) -> dict[str, Any]:
    arts = export["artifacts"]
    records = bench["records"]
    preds = bench["predictions"]
    plots = list(bench.get("plots", []))
    pareto = _pareto_points(arts, records)
    if pareto:
        from edgeprune.runtime_bench.plots import plot_pareto

        plots.append(str(plot_pareto(pareto, out / "bench" / "quality_vs_latency.png",
                                     title="exported files: perplexity vs decode latency")))
    t, s = evaluation["teacher"], evaluation["pruned"]
    summary_rows = [["teacher", f"{t['params']:,}", t["ppl"]]]
    if "pruned_only" in evaluation:
        po = evaluation["pruned_only"]
        summary_rows.append([f"pruned ({recipe.method}, {prune['ratio_removed']:.1%} removed), before recovery",
                             f"{po['params']:,}", po["ppl"]])
    summary_rows.append([f"pruned ({recipe.method}, {prune['ratio_removed']:.1%} removed)"
                         f"{f', recovered on {recipe.recover_tokens:,} tokens' if recipe.recover_tokens else ''}",
                         f"{s['params']:,}", s["ppl"]])
    md = ["# edgeprune ship report", "",
          f"Teacher: `{teacher_dir}` · method `{recipe.method}` · target ratio {recipe.ratio} · "
          f"recovery tokens {recipe.recover_tokens:,} · devices {', '.join(recipe.devices)}", "",
          "## Quality (held-out perplexity, same tokens)", "",
          markdown_table(["model", "params", "perplexity"], summary_rows), "",
          "## Per-layer widths (before → after)", "",
          markdown_table(["layer", "heads", "kv heads", "ffn", "params before", "params after"], prune["layers"]), "",
          "## Exported files (each validated against PyTorch)", "",
          f"Each file is reloaded in its runtime and run on the same {_check_tokens(arts)} held-out tokens as "
          "PyTorch: logit differences, top-1 agreement, and perplexity of those tokens in PyTorch "
          "and in the file (a short slice: compare the two columns, not with the table above).", "",
          markdown_table(["file", "format", "quant", "size", "max abs Δlogit", "rel Δ", "top-1 agree",
                          "ppl PyTorch", "ppl file"],
                         [[a["path"], a["format"], a["quant"], human_bytes(a["bytes"]),
                           a["fidelity"].get("max_abs_diff"), a["fidelity"].get("rel_diff"),
                           a["fidelity"].get("top1_agreement"), a["fidelity"].get("ppl_ref"),
                           a["fidelity"].get("ppl")] for a in arts]), ""]
    if records:
        md += ["## Measured latency", "",
               markdown_table(["device", "file", "pp t/s", "tg t/s", "TTFT ms", "peak RSS MB",
                               "roofline tg t/s", "η fitted"],
                              [[x["device"], x["model"], x["pp_tps_mean"], x["tg_tps_mean"], x["ttft_ms"],
                                x["peak_rss_mb"], x["roofline"].get("tg_pred_tps"),
                                x["roofline"].get("efficiency_fitted")] for x in records]), ""]
    if preds:
        md += ["## Predicted latency (roofline, device not reachable: **predictions, not measurements**)", "",
               markdown_table(["device", "file", "predicted tg t/s", "prefill bound t/s", "bytes/token"],
                              [[p["device"], p["model"], p["tg_pred_tps"], p["pp_bound_tps"],
                                human_bytes(p["bytes_per_token"])] for p in preds]), ""]
    md += ["## Stages", "", markdown_table(["stage", "seconds", "reused"],
                                           [[x["stage"], x["seconds"], x["skipped"]] for x in stages]), ""]
    if plots:
        md += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).relative_to(out)})" for p in plots] + [""]
    report = {"recipe": asdict(recipe), "teacher": str(teacher_dir), "prune": prune, "eval": evaluation,
              "artifacts": arts, "bench": records, "predictions": preds, "stages": stages,
              "plots": [str(Path(p).relative_to(out)) for p in plots]}
    atomic_write_text(out / "report.md", "\n".join(md))
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    report["report_md_summary"] = markdown_table(["model", "params", "perplexity"], summary_rows)
    return report


def _check_tokens(arts: list) -> str:
    from edgeprune.ship import EXPORT_CHECK_TOKENS

    return str(EXPORT_CHECK_TOKENS)


def _pareto_points(arts: list, records: list) -> list[dict]:
    """One point per measured file: decode latency (ms/token) vs the file's perplexity from its
    export validation."""
    ppl = {Path(a["path"]).name: a["fidelity"].get("ppl") for a in arts}
    pts = []
    for rec in records:
        p = ppl.get(rec["model"])
        if p and rec.get("tg_tps_mean"):
            pts.append({"name": f"{rec['model']}@{rec['device']}", "latency_ms": 1000.0 / rec["tg_tps_mean"],
                        "ppl": p, "group": rec["format"]})
    return pts
