"""Plots (matplotlib, Agg): every PNG is written with the data it shows as JSON beside it.

`plot_decode(records, out_png)`: decode tokens/s per file and device — measured as a dot with its
std as an error bar, the roofline prediction as a hollow marker (never a bar: a bound 30x the
measurement would flatten everything else), on a log axis when the values span a decade.
`plot_pareto(points, out_png)`: quality (lower is better) vs latency, one point per file, the
Pareto front drawn across *models* only: files of one model differ by quantization noise, and a
"front" through them would crown noise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from edgeprune.base.atomic_io import atomic_path, atomic_write_json

PathLike = Union[str, Path]
LOG_SPAN = 10.0  # use a log axis when max / min of the plotted values reaches this
MIN_Y_SPAN = 0.02  # quality axes show at least ±2%: 212.0 vs 213.1 perplexity is not a trend


def _save(fig: Any, out_png: PathLike, data: Any) -> Path:
    """PNG and `<stem>.json` with the plotted data, each written atomically."""
    import matplotlib.pyplot as plt

    out = Path(out_png)
    with atomic_path(out) as tmp:
        # the format named, not inferred: the temporary's suffix is not the file's
        fig.savefig(tmp, format=out.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_json(out.with_suffix(".json"), data, default=str)
    return out


def _record(r: Any) -> Mapping[str, Any]:
    return r.to_dict() if hasattr(r, "to_dict") else r


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def wants_log(values: Sequence[Optional[float]]) -> bool:
    """True when the positive values span at least a decade (LOG_SPAN)."""
    v = [x for x in values if x is not None and x > 0 and math.isfinite(x)]
    return len(v) > 1 and max(v) / min(v) >= LOG_SPAN


def plot_decode(records: Sequence[Any], out_png: PathLike) -> Path:
    """One row per (file, device): measured decode tokens/s ± std (dot + error bar), the roofline
    prediction as a hollow diamond; flagged rows (contended / noisy) drawn hollow and labelled."""
    plt = _pyplot()
    recs = [_record(r) for r in records if _record(r).get("tg_tps_mean")]
    data = [{"label": f"{r['model']} @ {r['device']}", "device": r["device"], "model": r["model"],
             "quant": r["quant"], "tg_tps_mean": r["tg_tps_mean"], "tg_tps_std": r.get("tg_tps_std") or 0.0,
             "tg_tps_median": r.get("tg_tps_median"), "tg_pred_tps": (r.get("roofline") or {}).get("tg_pred_tps"),
             "flags": list(r.get("flags") or [])} for r in recs]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * max(1, len(data))))
    for i, d in enumerate(data):
        flagged = bool(d["flags"])
        ax.errorbar(d["tg_tps_mean"], i, xerr=d["tg_tps_std"], fmt="o", color="C0", capsize=3,
                    mfc="white" if flagged else "C0", label="measured (mean ± std)" if i == 0 else None)
        if d["tg_pred_tps"]:
            ax.scatter(d["tg_pred_tps"], i, marker="D", facecolors="none", edgecolors="k", zorder=3,
                       label="roofline prediction" if i == 0 else None)
    ax.set_yticks(range(len(data)), [d["label"] + (f"  [{', '.join(d['flags'])}]" if d["flags"] else "")
                                     for d in data], fontsize=8)
    ax.invert_yaxis()
    values = [d["tg_tps_mean"] for d in data] + [d["tg_pred_tps"] for d in data]
    if wants_log(values):
        ax.set_xscale("log")
    ax.set_xlabel("decode speed, tokens/s" + (" (log scale)" if wants_log(values) else ""))
    ax.set_title("decode: measured vs roofline (hollow dot = flagged row)", fontsize=10)
    ax.grid(axis="x", alpha=0.3, which="both")
    if data:
        ax.legend(fontsize=7, loc="best")
    return _save(fig, out_png, data)


def pareto_front(points: Sequence[Mapping[str, Any]], x: str = "latency_ms", y: str = "ppl") -> list[int]:
    """Indices of the points no other point beats on both x and y (both minimised)."""
    front = []
    for i, p in enumerate(points):
        dominated = any(q[x] <= p[x] and q[y] <= p[y] and (q[x] < p[x] or q[y] < p[y])
                        for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][x])


def model_front(points: Sequence[Mapping[str, Any]], x: str = "latency_ms", y: str = "ppl") -> list[int]:
    """The Pareto front across models: each model is represented by its own non-dominated points,
    and a point is on the front only if no point of *another* model beats it. With a single model
    there is no front (empty list): comparing its files with each other ranks quantization noise."""
    models = {str(p.get("model", p.get("name", i))) for i, p in enumerate(points)}
    if len(models) < 2:
        return []
    front = []
    for i, p in enumerate(points):
        mine = str(p.get("model", p.get("name", i)))
        dominated = any(q[x] <= p[x] and q[y] <= p[y] and (q[x] < p[x] or q[y] < p[y])
                        for j, q in enumerate(points)
                        if j != i and str(q.get("model", q.get("name", j))) != mine)
        if not dominated:
            front.append(i)
    # one point per model on the front: its best quality among its undominated files
    best: dict[str, int] = {}
    for i in front:
        m = str(points[i].get("model", points[i].get("name", i)))
        if m not in best or points[i][y] < points[best[m]][y]:
            best[m] = i
    return sorted(best.values(), key=lambda i: points[i][x])


def plot_pareto(points: Sequence[Mapping[str, Any]], out_png: PathLike, x: str = "latency_ms",
                y: str = "ppl", title: str = "quality vs latency", x_label: Optional[str] = None,
                y_label: Optional[str] = None) -> Path:
    """Scatter: each point {name, <x>, <y>, [model], [group], [<x>_err]} (e.g. latency_ms = 1000 / tg
    t/s with its error, ppl = held-out perplexity). The Pareto front is drawn across models
    (`model` key; a point without one is its own model); `group` picks the colour."""
    plt = _pyplot()
    pts = [dict(p) for p in points]
    for p in pts:
        if x not in p or y not in p:
            from edgeprune.base.errors import BenchError

            raise BenchError(f"pareto point {p.get('name', p)!r} lacks {x!r} or {y!r}")
    front = model_front(pts, x, y)
    for i, p in enumerate(pts):
        p["pareto"] = i in front
    groups = sorted({str(p.get("group", "")) for p in pts})
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for k, g in enumerate(groups):
        gp = [p for p in pts if str(p.get("group", "")) == g]
        ax.errorbar([p[x] for p in gp], [p[y] for p in gp], xerr=[p.get(f"{x}_err") or 0 for p in gp],
                    fmt="o", color=f"C{k}", label=g or None, zorder=3, capsize=3)
    for p in pts:
        ax.annotate(str(p.get("name", "")), (p[x], p[y]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    if front:
        fx, fy = [pts[i][x] for i in front], [pts[i][y] for i in front]
        ax.plot(fx, fy, "k--", lw=1, zorder=2, label="Pareto front (across models)")
        ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="k", zorder=4)
    elif pts:
        ax.text(0.02, 0.02, "one model: no Pareto front (its files differ by quantization noise)",
                transform=ax.transAxes, fontsize=7, color="0.4")
    if wants_log([p[x] for p in pts]):
        ax.set_xscale("log")
    if wants_log([p[y] for p in pts]):
        ax.set_yscale("log")
    ys = [p[y] for p in pts]
    if ys and min(ys) > 0 and (max(ys) - min(ys)) / min(ys) < MIN_Y_SPAN:
        # differences under MIN_Y_SPAN are noise: do not zoom in until they look like a trend
        mid = (max(ys) + min(ys)) / 2
        ax.set_ylim(mid * (1 - MIN_Y_SPAN), mid * (1 + MIN_Y_SPAN))
    ax.set_xlabel(x_label or x.replace("_", " "))
    ax.set_ylabel(y_label or y)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    return _save(fig, out_png, {"x": x, "y": y, "points": pts, "front": front,
                                "front_rule": "across models only"})
