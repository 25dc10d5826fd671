"""`dist/report.md` + `dist/report.json` + `dist/report.html` + the quality-vs-latency plot for
`edgeprune ship`.

Every figure says what it is: each perplexity names its text, split and token count;
each measured mean carries its ± std and the row's flags (contended, noisy); each GGUF lists the
tensor types it really holds and its bits per weight, with quantization fallbacks flagged."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.atomic_io import atomic_write_text
from edgeprune.base.table import human_bytes, markdown_table


def write_app(out: Path, model_dir: Path, devices: list, export: dict, bench: dict) -> Optional[dict[str, Any]]:
    """dist/app: the app bundle of the shipped GGUFs (export/app_bundle.py) with the bench's speed
    and measured overhead and the devices' RAM check; None when no GGUF was exported."""
    from edgeprune.export.app_bundle import read_generation_config, write_app_bundle

    ggufs = [(a["quant"], out / a["path"]) for a in export["artifacts"] if a["format"] == "gguf"]
    if not ggufs:
        return None
    return write_app_bundle(out / "app", ggufs, generation_config=read_generation_config(Path(model_dir)),
                            records=bench["records"], predictions=bench["predictions"], devices=devices,
                            quality=export.get("quality"))


def _memory_section(out: Path, arts: list, records: list, devices: list) -> tuple[list[str], dict[str, Any]]:
    """Report lines and JSON for every GGUF: weights + KV per context and cache type + the overhead
    the bench measured (edgeprune.devices.memory), and whether it fits each device's RAM (warned if not)."""
    from edgeprune.files.spec_of import spec_of
    from edgeprune.devices.memory import FileMemory, fit_markdown, memory_grid, memory_markdown, ram_bytes

    files = []
    for a in arts:
        if a["format"] != "gguf":
            continue
        name = Path(a["path"]).name
        measured = [(r.get("memory") or {}).get("overhead_bytes") for r in records if r["model"] == name]
        measured = [m for m in measured if m is not None]
        files.append(FileMemory(name, spec_of(out / a["path"]), a["bytes"],
                                max(measured) if measured else None))
    if not files:
        return [], {}
    fit, warnings = fit_markdown(files, [(d.name, ram_bytes(d.ram_gb)) for d in devices])
    md = ["## Memory", "",
          "What a device must hold for each GGUF: the file, the KV cache at the context (summed over the real "
          "per-layer KV heads as llama.cpp allocates it: f16 without flash attention, q8_0 with it) and the "
          "runtime overhead the bench measured (peak RSS minus weights and KV cache; 'not measured' where no "
          "device ran the file).", "", memory_markdown(files), "",
          "Fit on each device (the model may plan for the usable share of the profile's RAM), f16 KV cache:", "",
          fit, ""]
    md += [f"- ⚠ **{w}**" for w in warnings] + ([""] if warnings else [])
    data = {"files": {f.name: [m.to_dict() for m in memory_grid(f.spec, f.weights_bytes,
                                                                 overhead_bytes=f.overhead_bytes)] for f in files},
            "warnings": warnings}
    return md, data


def write_report(out: Path, recipe: Any, teacher_dir: Path, prune: dict, evaluation: dict, export: dict,
                 bench: dict, stages: list[dict], devices: Optional[list] = None,
                 app: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Write report.md / .json / .html. `devices`: the loaded profiles (their RAM is the memory
    check); `app`: what write_app wrote (dist/app)."""
    import logging

    from edgeprune.runtime_bench.schema import fmt_pm

    arts = export["artifacts"]
    records = bench["records"]
    preds = bench["predictions"]
    plots = list(bench.get("plots", []))
    pareto = _pareto_points(arts, records)
    if pareto:
        from edgeprune.runtime_bench.plots import plot_pareto

        plots.append(str(plot_pareto(pareto, out / "bench" / "quality_vs_latency.png",
                                     x_label="decode latency, ms/token (measured, ± std)",
                                     y_label=f"perplexity on {_check_tokens(export)} held-out tokens",
                                     title="exported files: perplexity vs decode latency")))
    summary_rows = _quality_rows(recipe, prune, evaluation)
    held = evaluation.get("heldout") or {}
    quality_label = (f"Perplexity (lower is better) of every model on the same "
                     f"{_n(held.get('tokens'))} tokens of `{held.get('text', '?')}`, "
                     f"{held.get('split', 'held-out split')}, windows of {held.get('seq_len', '?')} tokens"
                     + (f"; bits/byte: the same text's loss per UTF-8 byte ({held['bytes']:,} bytes)."
                        if held.get("bytes") else ".")
                     if held else "Perplexity (lower is better) on the same held-out tokens.")
    md = ["# edgeprune ship report", "",
          f"Teacher: `{teacher_dir}` · method `{prune.get('method', recipe.method)}` · "
          f"recovery tokens {recipe.recover_tokens:,} · devices {', '.join(recipe.devices)}", "",
          *_pruning_lines(prune), "",
          "## Quality", "", quality_label, "",
          markdown_table(QUALITY_HEADERS, summary_rows), ""]
    md += _quality_notes(recipe, teacher_dir, out, evaluation)
    md += ["## Per-layer widths (before → after)", "",
           markdown_table(["layer", "heads", "kv heads", "ffn", "params before", "params after"], prune["layers"]),
           "", "## Exported files (each validated against PyTorch)", "",
           f"Each file is reloaded in its runtime and run on the same {_check_tokens(export)} held-out tokens as "
           "PyTorch: logit differences, top-1 agreement, and perplexity of those tokens in PyTorch "
           "and in the file (a short slice: compare the two columns, not with the Quality table). "
           "`tensor types` is what the file really holds (read back from it), `bits/weight` its size "
           "over the parameter count.", "",
           markdown_table(["file", "format", "quant", "size", "tensor types", "bits/weight", "max abs Δlogit",
                           "rel Δ", "top-1 agree", "ppl PyTorch", "ppl file"],
                          [[a["path"], a["format"], a["quant"] + (f" ⚠ {len(_fallbacks(a))} fallbacks" if _fallbacks(a)
                                                                  else ""), human_bytes(a["bytes"]), _type_mix(a),
                            _bits_per_weight(a, evaluation), a["fidelity"].get("max_abs_diff"),
                            a["fidelity"].get("rel_diff"), a["fidelity"].get("top1_agreement"),
                            a["fidelity"].get("ppl_ref"), a["fidelity"].get("ppl")] for a in arts]), ""]
    md += _fallback_notes(arts)
    if records:
        from edgeprune.runtime_bench.schema import flag_legend, flags_text

        md += ["## Measured latency", "",
               f"After one warm-up, {records[0]['reps']} repetitions: mean ± std (median beside); "
               f"pp = prefill of {records[0]['n_prompt']} tokens, tg = decode of {records[0]['n_gen']} tokens. "
               "`other cores busy`: cores other processes kept busy on the run's CPUs.", "",
               markdown_table(["device", "file", "pp t/s", "tg t/s", "tg median", "tg predicted t/s", "TTFT ms",
                               "peak RSS MB", "roofline tg t/s", "η fitted", "other cores busy", "flags"],
                              [[x["device"], x["model"], fmt_pm(x["pp_tps_mean"], x.get("pp_tps_std")),
                                fmt_pm(x["tg_tps_mean"], x.get("tg_tps_std")), x.get("tg_tps_median"),
                                _predicted(x["roofline"]),
                                x["ttft_ms"], x["peak_rss_mb"], x["roofline"].get("tg_pred_tps"),
                                x["roofline"].get("efficiency_fitted"),
                                (x.get("load") or {}).get("during_other_cores"), flags_text(x.get("flags") or [])]
                               for x in records]), ""]
        legend = flag_legend([f for x in records for f in x.get("flags") or []])
        if legend:
            md += [legend, ""]
    if preds:
        md += ["## Predicted latency (device not reachable: **predictions, not measurements**)", "",
               "tg predicted = the device's latency model (measured table when `edgeprune devices calibrate` has run "
               "for it, else the roofline plus default overheads, marked (!)); roofline tg = η·bandwidth / bytes.", "",
               markdown_table(["device", "file", "tg predicted t/s", "roofline tg t/s", "prefill bound t/s",
                               "bytes/token"],
                              [[p["device"], p["model"], _predicted(p), p["tg_pred_tps"], p["pp_bound_tps"],
                                human_bytes(p["bytes_per_token"])] for p in preds]), ""]
    mem_md, memory = _memory_section(out, arts, records, list(devices or []))
    for w in memory.get("warnings", []):
        logging.getLogger(__name__).warning("%s", w)
    md += mem_md
    if app:
        md += ["## App bundle", "",
               f"`app/` holds {', '.join(f'`{f}`' for f in (x['file'] for x in app['files']))}, an Ollama `Modelfile` "
               f"(FROM `{app['default']}`), `serve.sh` (llama-server or `python -m llama_cpp.server`, context "
               f"{app['n_ctx']}) and a README for app developers.", ""]
    md += ["## Stages", "", markdown_table(["stage", "seconds", "reused"],
                                           [[x["stage"], x["seconds"], x["skipped"]] for x in stages]), ""]
    if plots:
        md += ["## Plots", ""] + [f"![{Path(p).stem}]({Path(p).relative_to(out)})" for p in plots] + [""]
    report = {"recipe": asdict(recipe), "teacher": str(teacher_dir), "prune": prune, "eval": evaluation,
              "artifacts": arts, "bench": records, "predictions": preds, "stages": stages, "memory": memory,
              "app": app,
              "plots": [str(Path(p).relative_to(out)) for p in plots]}
    text = "\n".join(md)
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    from edgeprune.pipeline.report_html import markdown_to_html

    atomic_write_text(out / "report.html", markdown_to_html(text, base=out, title="edgeprune ship report"))
    report["report_md_summary"] = (quality_label + "\n\n"
                                   + markdown_table(QUALITY_HEADERS, summary_rows))
    return report


# ----- the pruning: the prune stage's own record -------------------------------------------------------

TARGET_WORDS = {  # how the report names each kind of target a PruneRequest takes
    "ratio": "remove {:.0%} of the parameters",
    "params": "keep {:,} parameters",
    "decode_tps": "decode at {:g} tokens/s",
    "prefill_tps": "prefill at {:g} tokens/s",
    "speedup": "decode {:g}x faster than the teacher",
}


def _pruning_lines(prune: dict) -> list[str]:
    """The target asked for, the speed predicted and the shape landed, as the prune stage
    recorded them (PruneResult.summary() and the request's target; ship.py `_prune`)."""
    target = prune.get("target") or {}
    asked = [TARGET_WORDS[k].format(v) for k, v in target.items() if k in TARGET_WORDS]
    where = f" on {target['device']} at {target['quant']}" if target.get("device") else ""
    lines = [f"- **Target**: {' and '.join(asked) or '?'}{where}"]
    lat = (prune.get("log") or {}).get("latency")
    if lat:
        lines.append(f"- **Predicted** ({lat['model']} latency model of {lat['device']} at {lat['quant']}): decode "
                     f"{lat['predicted_decode_tps_before']:.1f} → {lat['predicted_decode_tps']:.1f} tokens/s, "
                     f"**×{lat['predicted_speedup']:.2f}**"
                     + (f" (goal {lat['target_decode_tps']:.1f})" if lat.get("target_decode_tps") else "")
                     + f"; prefill {lat['predicted_prefill_tps_before']:.0f} → {lat['predicted_prefill_tps']:.0f} "
                       "tokens/s")
    widths = prune.get("widths")
    if widths is not None:
        shape = ", ".join("x".join(map(str, w)) for w in widths)
        lines.append(f"- **Landed**: {prune['params_before']:,} → {prune['params_after']:,} parameters "
                     f"({prune['ratio_removed']:.1%} removed, align {prune['align']}); per layer, heads x KV "
                     f"heads x FFN: {shape}")
    v = prune.get("verdict")
    if isinstance(v, dict) and "perplexity_ratio" in v:
        lines.append(f"- **At the cut**: held-out perplexity ×{v['perplexity_ratio']:.2f} the teacher's "
                     f"({v['verdict']}); the recover stage is the next step")
    return lines


# ----- quality ---------------------------------------------------------------------------------------

QUALITY_HEADERS = ["model", "params", "perplexity", "tokens scored", "bits/byte"]


def _quality_rows(recipe: Any, prune: dict, evaluation: dict) -> list[list[Any]]:
    t, s = evaluation["teacher"], evaluation["pruned"]
    method = prune.get("method", recipe.method)

    def row(label: str, e: dict) -> list[Any]:
        bpb = e.get("bits_per_byte")  # absent from an evaluation recorded before it was measured
        return [label, f"{e['params']:,}", e["ppl"], e.get("tokens"), f"{bpb:.4f}" if bpb is not None else "-"]

    rows = [row("teacher", t)]
    if "pruned_only" in evaluation:
        rows.append(row(f"pruned ({method}, {prune['ratio_removed']:.1%} removed), before recovery",
                        evaluation["pruned_only"]))
    trimmed = f", vocabulary trimmed to {s['vocab_size']:,} tokens" if s.get("vocab_size") else ""
    rows.append(row(f"pruned ({method}, {prune['ratio_removed']:.1%} removed)"
                    f"{f', recovered on {recipe.recover_tokens:,} tokens' if recipe.recover_tokens else ''}{trimmed}", s))
    return rows


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "?"


def _meta(d: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(d) / "edgeprune.json").read_text())
    except (OSError, ValueError):
        return {}


def _quality_notes(recipe: Any, teacher_dir: Path, out: Path, evaluation: dict) -> list[str]:
    """Other perplexities a user meets (logs, edgeprune.json) with what they were measured on, and
    why a recovered model can beat its teacher."""
    notes = []
    tmeta = _meta(teacher_dir)
    if tmeta.get("valid_ppl") is not None:
        notes.append(f"- The teacher's own `edgeprune.json` (and its training log) reports "
                     f"{tmeta['valid_ppl']:.2f}: measured by its training loop on fixed windows of its "
                     f"validation split after {_n(tmeta.get('trained_tokens'))} training tokens, "
                     "not on the tokens above.")
    rec = _meta(out / "model").get("recovery") or {}
    if rec.get("valid_ppl") is not None:
        notes.append(f"- `model/edgeprune.json` `recovery.valid_ppl` = {rec['valid_ppl']:.2f}: the recovery "
                     "loop's own figure on fixed windows of the validation split, not on the tokens above.")
    notes.append("- Export checks below score only a short slice of held-out tokens: compare a file's "
                 "perplexity with its PyTorch column, not with this table.")
    if evaluation["pruned"].get("vocab_size"):
        notes.append(f"- The shipped model's vocabulary is trimmed to {evaluation['pruned']['vocab_size']:,} tokens: "
                     "it reads the same text in its own tokens, so its perplexity is per one of those and its "
                     "token count differs; bits per byte of the same text compare it with the teacher.")
    t, s = evaluation["teacher"]["ppl"], evaluation["pruned"]["ppl"]
    if "vocab_size" in evaluation["pruned"]:
        t, s = evaluation["teacher"]["bits_per_byte"], evaluation["pruned"]["bits_per_byte"]
    if s < t and recipe.recover_tokens:
        trained = tmeta.get("trained_tokens")
        notes.append(
            f"- **The pruned model scores better than its teacher** ({s:.2f} vs {t:.2f}). This happens when the "
            f"teacher is under-trained{f' ({trained:,} tokens)' if trained else ''}: recovery trained the pruned "
            f"model on {recipe.recover_tokens:,} more tokens of the same text, which helps it more than the "
            "parameters it lost cost it. It says the teacher had room to improve, not that pruning improves "
            "a well-trained model.")
    return ["Other perplexities you may see:", "", *notes, ""]


# ----- what each file really is ----------------------------------------------------------------------

def _type_mix(a: dict) -> str:
    counts = (a.get("details") or {}).get("type_counts")
    if not counts:
        return "-"
    return " + ".join(f"{n} {t}" for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _bits_per_weight(a: dict, evaluation: dict) -> Optional[float]:
    bpw = (a.get("details") or {}).get("bits_per_weight")
    if bpw is not None:
        return round(float(bpw), 2)
    params = (evaluation.get("pruned") or {}).get("params")
    return round(8 * a["bytes"] / params, 2) if params and a.get("bytes") else None


def _fallbacks(a: dict) -> list[dict]:
    return list((a.get("details") or {}).get("fallbacks") or [])


def _fallback_notes(arts: list) -> list[str]:
    """One warning per GGUF whose label promises a type its matrices do not hold."""
    lines = []
    for a in arts:
        fb = _fallbacks(a)
        if not fb:
            continue
        got = sorted({f["got"] for f in fb})
        lines.append(f"- ⚠ **{a['path']}** ({a['quant']}): {len(fb)} matrices are not {fb[0]['wanted']} "
                     f"(rows not a multiple of its block size; llama.cpp fell back to {', '.join(got)}). "
                     f"The file is {_type_mix(a)}, not what its label says.")
    return (["**Quantization fallbacks**", "", *lines, ""]) if lines else []


def _check_tokens(export: dict) -> str:
    """How many held-out tokens every exported file was compared on: the export manifest's count
    (read from the manifest for a stage output recorded before ship kept the count)."""
    if "check_tokens" not in export:
        from edgeprune.export.api import manifest_check_tokens

        count = manifest_check_tokens(json.loads(Path(export["manifest"]).read_text()))
        return "?" if count is None else str(count)
    return str(export["check_tokens"])


def _pareto_points(arts: list, records: list) -> list[dict]:
    """One point per measured file: decode latency (ms/token, with its error from the std) vs the
    file's perplexity from its export validation. All files come from one model, so the plot
    draws no Pareto front among them."""
    ppl = {Path(a["path"]).name: a["fidelity"].get("ppl") for a in arts}
    pts = []
    for rec in records:
        p = ppl.get(rec["model"])
        m, sd = rec.get("tg_tps_mean"), rec.get("tg_tps_std") or 0.0
        if p and m:
            pts.append({"name": f"{rec['model']}@{rec['device']}", "model": "shipped", "latency_ms": 1000.0 / m,
                        "latency_ms_err": 1000.0 * sd / (m * m), "ppl": p, "group": rec["format"],
                        "flags": rec.get("flags") or []})
    return pts


def _predicted(fig: dict) -> str:
    """The latency model's tg prediction with its source; '(!)' when outside the validated regime."""
    if fig.get("model_tg_tps") is None:
        return "-"
    return f"{fig['model_tg_tps']:.0f} ({fig.get('model_source', '?')}{', !' if fig.get('model_caveat') else ''})"
