"""A speed target on a device (--decode-tps / --speedup) through the device's latency model."""

import json

import pytest

from edgeprune.cli import main
from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.devices import load_device
from edgeprune.base.errors import PruneError
from edgeprune.shape.arch_presets import preset_spec
from edgeprune.prune.latency import make_target, params_for_latency, predicted_decode_tps, shrunk
from edgeprune.shape.units import misaligned_rows
from tests.prune.test_cli import _args, setup  # noqa: F401 (fixture)


def test_speedup_target_by_hand_for_smollm_on_pi5(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))  # no calibrated table: roofline + default overheads
    spec = preset_spec("smollm-135m")
    pi5 = load_device("raspberry-pi-5")
    target = make_target(pi5, "Q4_0", speedup=2.0, spec=spec)
    assert target.model.source == "roofline+defaults"
    now = predicted_decode_tps(spec, pi5, "Q4_0")
    assert target.decode_tps == pytest.approx(2 * now)
    keep = params_for_latency(spec, target, 32)
    # twice the speed: the embedding / head (28M) and per-layer costs stay, so well under half the rest
    assert keep < 0.5 * spec.n_params
    small = shrunk(spec, keep / spec.n_params, 32)
    assert misaligned_rows(small, 32) == []
    with pytest.raises(PruneError, match="already predicted"):
        make_target(pi5, "Q4_0", decode_tps=now / 2, spec=spec)
    with pytest.raises(PruneError, match="must be > 1"):
        make_target(pi5, "Q4_0", speedup=0.5, spec=spec)


def test_prune_cli_decode_target_is_met_by_adapt_latency(setup, capsys):  # noqa: F811
    t = setup
    spec = load_checkpoint(t / "m").spec
    now = predicted_decode_tps(spec, load_device("raspberry-pi-4"), "Q8_0")
    goal = 1.15 * now  # reachable: the tiny model is mostly embedding
    assert main(["prune", *_args(t, "--method", "adapt-latency", "--decode-tps", f"{goal:.3f}", "--device",
                                 "raspberry-pi-4", "--quant", "Q8_0", "--json")]) == 0
    out = capsys.readouterr().out
    lat = json.loads((t / "out" / "edgeprune.json").read_text())["pruning"]["log"]["latency"]
    assert lat["device"] == "raspberry-pi-4" and lat["quant"] == "Q8_0"
    assert lat["predicted_decode_tps"] >= goal  # the target is a floor
    assert lat["predicted_decode_tps"] <= 1.15 * goal  # ... and not overshot by much
    assert "predicted on raspberry-pi-4" in out
    # the shape really is what was predicted: recompute from the saved checkpoint
    assert predicted_decode_tps(load_checkpoint(t / "out").spec, load_device("raspberry-pi-4"), "Q8_0") == \
        pytest.approx(lat["predicted_decode_tps"], abs=0.1)


def test_prune_cli_speed_targets_need_a_device(setup, capsys):  # noqa: F811
    t = setup
    assert main(["prune", *_args(t, "--method", "uniform", "--decode-tps", "50")]) == 2
    assert "need --device" in capsys.readouterr().err
    assert main(["prune", *_args(t, "--method", "adapt-latency", "--ratio", "0.3")]) == 2
    assert "need --device" in capsys.readouterr().err
    assert main(["prune", *_args(t, "--method", "uniform", "--speedup", "1.2", "--device", "raspberry-pi-4",
                                 "--quant", "Q9_9")]) == 2
    assert "Q9_9" in capsys.readouterr().err
    assert not (t / "out").exists()
