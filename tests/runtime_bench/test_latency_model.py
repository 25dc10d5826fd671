"""The per-device latency model: the fit itself, and a real calibration on `local` (llama.cpp runs
of synthetic GGUFs) that predicts shapes it never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.cli import main
from edgeprune.errors import BenchError
from edgeprune.runtime_bench.calibrate import calibration_shapes
from edgeprune.runtime_bench.latency_model import (DECODE_FEATURES, LatencyModel, Point, decode_features, fit_table,
                                                   load_table, nnls, prefill_features)


def test_nnls_matches_a_known_non_negative_solution():
    rng = np.random.default_rng(0)
    a = rng.random((30, 4))
    x_true = np.array([0.5, 0.0, 2.0, 1.0])
    x = nnls(a, a @ x_true)
    np.testing.assert_allclose(x, x_true, atol=1e-8)
    # a negative least-squares coefficient is clamped to 0 and the rest refitted
    b = a @ np.array([1.0, -1.0, 1.0, 1.0])
    x = nnls(a, b)
    assert (x >= 0).all() and x[1] == 0


def test_fit_recovers_times_generated_by_a_linear_cost():
    """Times made by a known per-feature cost are predicted back on shapes held out of the fit."""
    coef = np.array([1e-4, 2e-5, 1e-5, 5e-6, 1e-10, 1e-9])  # s per: token, layer, attn, mlp, byte, kv byte
    pcoef = np.array([1e-5, 1e-6, 1e-6, 1e-6, 1e-12, 1e-12])
    points = []
    for k, spec in enumerate(calibration_shapes(16, seed=1, max_params=8_000_000)):
        t = float(decode_features(spec, "Q8_0") @ coef)
        p = float(prefill_features(spec, "Q8_0") @ pcoef)
        points.append(Point(spec=spec.to_dict(), qtype="Q8_0", tg_tps=1 / t, pp_tps=1 / p, held_out=k % 4 == 0))
    table = fit_table(points, device="x", machine="test", threads=2)
    assert table.error["Q8_0"]["decode_max"] < 1e-6 and table.error["Q8_0"]["prefill_max"] < 1e-6
    assert table.error["Q8_0"]["held_out"] == 4
    with pytest.raises(BenchError, match="no Q4_0"):
        table.decode_tps(calibration_shapes(1)[0], "Q4_0")


def test_shapes_are_varied_aligned_and_heterogeneous():
    shapes = calibration_shapes(16, seed=0, max_params=40_000_000)
    assert len(shapes) == 16 and all(s.n_params <= 40_000_000 for s in shapes)
    assert any(not s.is_uniform for s in shapes) and any(s.is_uniform for s in shapes)
    assert len({s.n_layers for s in shapes}) > 4
    assert all(lay.ffn_dim % 32 == 0 for s in shapes for lay in s.layers)
    assert len(DECODE_FEATURES) == len(decode_features(shapes[0], "Q4_0"))


@pytest.mark.slow
def test_calibrate_local_predicts_held_out_shapes(tmp_path, monkeypatch, capsys):
    """Real llama.cpp runs on this machine. The bound is generous (CI shares 2 cores); the real
    held-out error is in benchmarks/latency_model.md."""
    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))
    import edgeprune.runtime_bench.calibrate as lm

    monkeypatch.setattr(lm, "calibration_shapes",
                        lambda n, seed=0, max_params=0: calibration_shapes(n, seed, max_params=2_500_000))
    assert main(["devices", "calibrate", "local", "--shapes", "10", "--reps", "2", "--quant", "Q8_0",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "held out" in out and "wrote" in out
    table = load_table("local")
    err = table.error["Q8_0"]
    assert err["held_out"] >= 2 and err["fitted_on"] >= 6
    assert err["decode_mape"] < 0.5 and err["decode_max"] < 1.0  # within 2x on every unseen shape
    assert err["prefill_mape"] < 1.0  # prefill is noisier on tiny shapes; the figures are in the benchmark
    # the stored table is what `prune` and `bench` will use for this device
    from edgeprune.devices import load_device

    model = LatencyModel(load_device("local"), table)
    held = [p for p in table.points if p["held_out"]]
    spec = __import__("edgeprune.spec", fromlist=["ArchSpec"]).ArchSpec.from_dict(held[0]["spec"])
    assert model.decode_tps(spec, "Q8_0") == pytest.approx(held[0]["tg_tps"], rel=1.0)
    assert model.regime(spec, "Q8_0") == ""
    assert "not calibrated" in LatencyModel(load_device("raspberry-pi-5")).regime(spec, "Q8_0")
    json.loads((tmp_path / "latency" / "local.json").read_text())  # plain JSON, no pickle


def test_calibrate_refuses_a_type_export_cannot_write():
    """Calibration checks its types with export's rule: an importance-matrix type (which
    llama.cpp knows) is refused before any shape is written or measured."""
    from edgeprune.devices import load_device
    from edgeprune.errors import BenchError
    from edgeprune.runtime_bench.calibrate import calibrate

    with pytest.raises(BenchError, match="cannot calibrate for 'IQ2_XXS'"):
        calibrate(load_device("raspberry-pi-5"), quants=["Q4_0", "iq2_xxs"], progress=False)
