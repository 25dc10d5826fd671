"""Plots (matplotlib, Agg): every PNG is written with the data it shows as JSON beside it.

`plot_decode(records, out_png)`: decode tokens/s per device × quant (bars, roofline prediction
as a marker). `plot_pareto(points, out_png)`: quality (perplexity, lower is better) vs latency, one
point per model, the Pareto front marked — ship / compare call these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

PathLike = Union[str, Path]


def _save(fig: Any, out_png: PathLike, data: Any) -> Path:
    """PNG and `<stem>.json` with the plotted data, each written atomically."""
    import matplotlib.pyplot as plt

    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out)
    js = out.with_suffix(".json")
    tmp_js = js.with_name(f".{js.name}.tmp")
    tmp_js.write_text(json.dumps(data, indent=1, default=str))
    tmp_js.replace(js)
    return out


def _record(r: Any) -> Mapping[str, Any]:
    return r.to_dict() if hasattr(r, "to_dict") else r


def plot_decode(records: Sequence[Any], out_png: PathLike) -> Path:
    """Grouped bars: x = device, one bar per (model, quant), height = measured tg tokens/s with
    its std as an error bar, and the roofline prediction as a black tick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [_record(r) for r in records if _record(r).get("tg_tps_mean")]
    devices = sorted({r["device"] for r in recs})
    series = sorted({f"{r['model']} [{r['quant']}]" for r in recs})
    data = [{"device": r["device"], "series": f"{r['model']} [{r['quant']}]", "tg_tps_mean": r["tg_tps_mean"],
             "tg_tps_std": r.get("tg_tps_std"), "tg_pred_tps": (r.get("roofline") or {}).get("tg_pred_tps")}
            for r in recs]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(devices) * max(1, len(series)) ** 0.5), 4))
    width = 0.8 / max(1, len(series))
    for j, s in enumerate(series):
        for i, dev in enumerate(devices):
            pts = [d for d in data if d["device"] == dev and d["series"] == s]
            if not pts:
                continue
            d = pts[0]
            x = i - 0.4 + width * (j + 0.5)
            ax.bar(x, d["tg_tps_mean"], width, yerr=d["tg_tps_std"] or 0, color=f"C{j}",
                   label=s if i == 0 or not any(dd["series"] == s for dd in data if dd["device"] in devices[:i]) else None)
            if d["tg_pred_tps"]:
                ax.plot([x - width / 2, x + width / 2], [d["tg_pred_tps"]] * 2, color="k", lw=2)
    ax.set_xticks(range(len(devices)), devices)
    ax.set_ylabel("decode tokens/s")
    ax.set_title("decode speed (bars: measured ± std; black: roofline η·BW/bytes)")
    if series:
        ax.legend(fontsize=7)
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


def plot_pareto(points: Sequence[Mapping[str, Any]], out_png: PathLike, x: str = "latency_ms",
                y: str = "ppl", title: str = "quality vs latency") -> Path:
    """Scatter of models: each point {name, <x>, <y>, [group]} (e.g. latency_ms = 1000 / tg t/s,
    ppl = held-out perplexity). Pareto-optimal points are joined by a line and ringed; `group`
    (e.g. "edgeprune" / "baseline") picks the colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [dict(p) for p in points]
    for p in pts:
        if x not in p or y not in p:
            from edgeprune.errors import BenchError

            raise BenchError(f"pareto point {p.get('name', p)!r} lacks {x!r} or {y!r}")
    front = pareto_front(pts, x, y)
    for i, p in enumerate(pts):
        p["pareto"] = i in front
    groups = sorted({str(p.get("group", "")) for p in pts})
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for k, g in enumerate(groups):
        gp = [p for p in pts if str(p.get("group", "")) == g]
        ax.scatter([p[x] for p in gp], [p[y] for p in gp], color=f"C{k}", label=g or None, zorder=3)
    for p in pts:
        ax.annotate(str(p.get("name", "")), (p[x], p[y]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    fx, fy = [pts[i][x] for i in front], [pts[i][y] for i in front]
    ax.plot(fx, fy, "k--", lw=1, zorder=2, label="Pareto front")
    ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="k", zorder=4)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out_png, {"x": x, "y": y, "points": pts, "front": front})
