"""A decode-latency budget on a device profile becomes a parameter target (roofline)."""

import json

import pytest

from edgeprune.cli import main
from edgeprune.devices import load_device
from edgeprune.errors import PruneError
from edgeprune.presets import preset_spec
from edgeprune.prune.latency import params_for_decode_budget, predicted_decode_tps
from tests.prune.test_cli import _args, setup  # noqa: F401 (fixture)


def test_budget_by_hand_for_smollm_on_pi5():
    spec = preset_spec("smollm-135m")
    pi5 = load_device("raspberry-pi-5")
    now = predicted_decode_tps(spec, pi5, "Q4_0")
    target = params_for_decode_budget(spec, pi5, 2 * now, "Q4_0")
    # twice the speed -> about half the bytes; the KV share keeps it a little under half
    assert 0.45 * spec.n_params < target < 0.5 * spec.n_params
    with pytest.raises(PruneError, match="already predicted"):
        params_for_decode_budget(spec, pi5, now / 2, "Q4_0")


def test_prune_cli_decode_budget(setup, capsys):  # noqa: F811
    t = setup
    spec_tps = predicted_decode_tps(json_spec(t), load_device("raspberry-pi-4"), "Q8_0")
    budget = 1.1 * spec_tps  # reachable: the tiny model is mostly embedding
    assert main(["prune", *_args(t, "--method", "uniform", "--decode-tps", f"{budget:.3f}", "--device",
                                 "raspberry-pi-4", "--quant", "Q8_0", "--json")]) == 0
    out = capsys.readouterr().out
    meta = json.loads((t / "out" / "edgeprune.json").read_text())["pruning"]["decode_budget"]
    assert meta["device"] == "raspberry-pi-4" and meta["predicted_tokens_per_s"] >= 0.97 * budget
    assert "predicted decode on raspberry-pi-4" in out
    assert main(["prune", *_args(t, "--method", "uniform", "--decode-tps", "50")]) == 2
    assert "needs --device" in capsys.readouterr().err


def json_spec(t):
    from edgeprune.checkpoint import load_checkpoint

    return load_checkpoint(t / "m").spec
