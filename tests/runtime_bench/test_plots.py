"""Plots: PNG + the plotted data as JSON; the Pareto front is the set of non-dominated models."""

from __future__ import annotations

import json

from edgeprune.runtime_bench.plots import pareto_front, plot_decode, plot_pareto


def test_pareto_front_marks_non_dominated_points(tmp_path):
    pts = [{"name": "teacher", "latency_ms": 20.0, "ppl": 7.4, "group": "baseline"},
           {"name": "pruned-50", "latency_ms": 11.0, "ppl": 8.9, "group": "edgeprune"},
           {"name": "pruned-30", "latency_ms": 15.0, "ppl": 7.9, "group": "edgeprune"},
           {"name": "smollm-like", "latency_ms": 16.0, "ppl": 9.5, "group": "baseline"},  # dominated
           {"name": "tie", "latency_ms": 11.0, "ppl": 9.0, "group": "edgeprune"}]  # dominated by pruned-50
    assert pareto_front(pts) == [1, 2, 0]
    out = plot_pareto(pts, tmp_path / "p" / "pareto.png")
    assert out.stat().st_size > 1000
    data = json.loads(out.with_suffix(".json").read_text())
    assert [p["pareto"] for p in data["points"]] == [True, True, True, False, False]


def test_plot_decode_per_device_and_quant(tmp_path):
    recs = [{"model": "m", "quant": q, "device": d, "tg_tps_mean": v, "tg_tps_std": 1.0,
             "roofline": {"tg_pred_tps": v * 1.3}}
            for d, q, v in [("raspberry-pi-5", "Q4_0", 60.0), ("raspberry-pi-5", "Q8_0", 35.0),
                            ("local", "Q4_0", 90.0)]]
    out = plot_decode(recs, tmp_path / "decode.png")
    assert out.stat().st_size > 1000
    data = json.loads(out.with_suffix(".json").read_text())
    assert {(d["device"], d["series"]) for d in data} == {("raspberry-pi-5", "m [Q4_0]"),
                                                         ("raspberry-pi-5", "m [Q8_0]"), ("local", "m [Q4_0]")}
