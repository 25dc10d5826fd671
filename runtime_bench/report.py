"""Readable tables of bench records and of roofline predictions (edgeprune.base.table everywhere)."""

from __future__ import annotations

from typing import Any, Sequence

from edgeprune.runtime_bench.schema import BenchRecord, flag_legend, flags_text, fmt_pm
from edgeprune.base.table import human_bytes, markdown_table

_pm = fmt_pm


def _other_cores(load: dict) -> str:
    v = (load or {}).get("during_other_cores")
    return "?" if v is None else f"{v:.2f}"


def records_table(records: Sequence[BenchRecord]) -> str:
    """One row per measurement: measured pp/tg (mean ± std, median) next to the roofline, the
    fitted η, the other processes' load during the run and the row's flags."""
    headers = ["model", "quant", "device", "runner", "thr", "size", "pp t/s", "tg t/s", "tg median",
               "TTFT ms", "load ms", "RSS MB", "tg roofline", "η prior", "η fitted", "other cores busy",
               "flags"]
    rows = []
    for r in records:
        roof = r.roofline or {}
        rows.append([r.model, r.quant, r.device, r.runner, r.threads, human_bytes(r.file_bytes),
                     _pm(r.pp_tps_mean, r.pp_tps_std), _pm(r.tg_tps_mean, r.tg_tps_std), r.tg_tps_median,
                     r.ttft_ms, r.load_ms, r.peak_rss_mb, roof.get("tg_pred_tps"), roof.get("efficiency_prior"),
                     roof.get("efficiency_fitted"), _other_cores(r.load), flags_text(r.flags)])
    note = (f"\n\npp = prefill of {records[0].n_prompt} tokens, tg = decode of {records[0].n_gen} tokens "
            f"(llama-bench convention), after one warm-up: mean ± std and median over {records[0].reps} reps. "
            "tg roofline = η·bandwidth / bytes per token; η fitted = measured·bytes/bandwidth. "
            "other cores busy = cores other processes kept busy on the run's CPUs.") if records else ""
    legend = flag_legend([f for r in records for f in r.flags])
    return markdown_table(headers, rows) + note + (f"\n\n{legend}" if legend else "")


def predict_table(rows: Sequence[dict[str, Any]]) -> str:
    headers = ["model", "device", "GB/s", "η", "MB/token", "tg pred t/s", "tg bound t/s", "pp bound t/s",
               "tg model t/s", "pp model t/s", "latency model"]
    return markdown_table(headers, [[r["model"], r["device"], r["bandwidth_gbs"], r["efficiency_prior"],
                                     r["bytes_per_token"] / 1e6, r["tg_pred_tps"], r["tg_bound_tps"],
                                     r["pp_bound_tps"], r.get("model_tg_tps", "-"), r.get("model_pp_tps", "-"),
                                     (r.get("model_source", "-") + (" (!)" if r.get("model_caveat") else ""))]
                                    for r in rows])
