"""Plots: PNG + the plotted data as JSON; the Pareto front is drawn across models, never across the
files of one model; log axes when values span a decade."""

from __future__ import annotations

import json

from edgeprune.runtime_bench.plots import model_front, pareto_front, plot_decode, plot_pareto, wants_log


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


def test_front_is_across_models_not_files_of_one_model(tmp_path):
    """Two files of one model differ by quantization noise: no front among them; a second model
    brings a front with one point per model."""
    one = [{"name": "m-Q8_0", "model": "m", "latency_ms": 1.0, "ppl": 212.0},
           {"name": "m-int8", "model": "m", "latency_ms": 0.5, "ppl": 213.1}]
    out = plot_pareto(one, tmp_path / "one.png")
    assert json.loads(out.with_suffix(".json").read_text())["front"] == []
    two = one + [{"name": "teacher-Q8_0", "model": "teacher", "latency_ms": 2.0, "ppl": 150.0},
                 {"name": "teacher-int8", "model": "teacher", "latency_ms": 3.0, "ppl": 149.0}]
    assert model_front(two) == [0, 3]  # each model: its best-quality file not beaten by another model
    assert model_front(two + [{"name": "bad", "model": "b", "latency_ms": 4.0, "ppl": 300.0}]) == [0, 3]


def test_log_axis_only_when_values_span_a_decade():
    assert wants_log([900.0, 30_000.0]) and not wants_log([212.0, 213.1]) and not wants_log([5.0])


def test_plot_decode_per_device_and_quant(tmp_path):
    recs = [{"model": "m", "quant": q, "device": d, "tg_tps_mean": v, "tg_tps_std": 1.0,
             "roofline": {"tg_pred_tps": v * 30}, "flags": ["noisy"] if q == "Q8_0" else []}
            for d, q, v in [("raspberry-pi-5", "Q4_0", 60.0), ("raspberry-pi-5", "Q8_0", 35.0),
                            ("local", "Q4_0", 90.0)]]
    out = plot_decode(recs, tmp_path / "decode.png")
    assert out.stat().st_size > 1000
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(d["device"], d["quant"], d["flags"]) for d in data] == [
        ("raspberry-pi-5", "Q4_0", []), ("raspberry-pi-5", "Q8_0", ["noisy"]), ("local", "Q4_0", [])]
    assert data[0]["tg_pred_tps"] == 1800.0 and data[0]["tg_tps_std"] == 1.0
