"""A speed target landed as measured: the correction from the measured tries, a loop that lands on
a device whose real speed the latency model gets wrong, the prune verb's flags, and the real
export + paired timing on `local`."""

import json
import math

import pytest
import torch

from edgeprune.cli import main
from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.devices import load_device
from edgeprune.shape.model import build_model
from edgeprune.pipeline.land_target import DeviceMeasure, LandingTry, land, next_goal
from edgeprune.prune.request import PruneRequest
from edgeprune.shape.spec import ArchSpec
from tests.prune.test_cli import _args, setup  # noqa: F401 (fixture)

CALIB = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))
# big enough for its layers' bytes to dominate the predicted decode (a tiny model is all fixed costs)
SPEC = ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=384, n_layers=6, n_heads=12, n_kv_heads=12,
                        ffn_dim=1024, head_dim=32, max_position_embeddings=128)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))  # the default latency table, not a calibrated one


def _try(asked, predicted, measured):
    return LandingTry(asked=asked, predicted=predicted, measured=measured, params=1, shape="s")


def test_one_try_corrects_by_its_measured_bias():
    # predicted 2.0, measured 2.4: the model is 20% pessimistic, so ask 2.0 / 1.2
    assert next_goal(2.0, [_try(2.0, 2.0, 2.4)]) == pytest.approx(2.0 / 1.2)
    # the ask is relative to what was asked: the cut overshot its ask (predicted 2.1 for 2.0)
    assert next_goal(2.0, [_try(2.0, 2.1, 2.4)]) == pytest.approx(2.0 * (2.0 / (2.4 / 2.1)) / 2.1)


def test_two_tries_fit_the_secant_in_log_space():
    # a device whose measured speed-up is predicted ** 1.5: the secant through two tries finds it exactly
    f = lambda p: p ** 1.5  # noqa: E731
    tries = [_try(2.0, 2.0, f(2.0)), _try(1.5, 1.5, f(1.5))]
    want = 2.0 ** (1 / 1.5)
    assert next_goal(2.0, tries) == pytest.approx(want, rel=1e-9)


def test_one_correction_is_bounded():
    # a wild measurement (10x) moves the ask by at most MAX_STEP
    from edgeprune.pipeline.land_target import MAX_STEP

    assert next_goal(2.0, [_try(2.0, 2.0, 20.0)]) == pytest.approx(2.0 / MAX_STEP)


def _device_off_by(power):
    """A device whose measured speed-up is the latency model's prediction ** power."""
    calls = []

    def measure(res, key):
        assert key == "speedup"
        calls.append(res.spec)
        return res.log["latency"]["predicted_speedup"] ** power
    return measure, calls


def test_a_pessimistic_model_is_landed_on_the_measured_goal():
    model = build_model(SPEC, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    req = PruneRequest(method="uniform", speedup=1.5, device=load_device("local"), quant="Q8_0", align=8)
    measure, calls = _device_off_by(1.3)
    res, landing = land(model, req, calib=CALIB, measure=measure, tolerance=0.05, tries=4, progress=False)
    first = landing.tries[0]
    assert first.measured / 1.5 - 1 > 0.05  # trusting the model alone misses the measured goal
    assert landing.landed and len(landing.tries) >= 2
    kept = landing.tries[landing.kept]
    assert abs(kept.measured / 1.5 - 1) <= 0.05
    assert kept.asked < first.asked  # it asked the model for less, because the device is faster than predicted
    assert res.spec == calls[landing.kept] and res.log["landing"]["measured"] == kept.measured
    # every try cut a copy: the model handed in is whole
    assert model.spec == SPEC and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert "kept" in landing.text() and "not landed" not in landing.text()


def test_an_unreachable_goal_keeps_the_closest_cut_and_says_so():
    model = build_model(SPEC, seed=0)
    # a profile from a data file, not the probed `local`: the asks must stay within width pruning's reach
    req = PruneRequest(method="uniform", speedup=1.4, device=load_device("raspberry-pi-5"), quant="Q8_0", align=8)
    figures = iter([1.2, 1.25, 1.22])  # a device that never moves enough
    res, landing = land(model, req, calib=CALIB, measure=lambda r, k: next(figures), tries=3, progress=False)
    assert len(landing.tries) == 3 and not landing.landed and not landing.stopped
    assert landing.kept == 1 and res.log["landing"]["landed"] is False
    assert "not landed within ±5% in 3 tries" in landing.text()
    assert all(math.isfinite(t.asked) and t.asked > 1 for t in landing.tries)


def test_a_corrected_goal_out_of_reach_ends_the_tries_with_the_closest_cut():
    from edgeprune.base.errors import PruneError

    model = build_model(SPEC, seed=0)
    dev = load_device("raspberry-pi-5")
    req = PruneRequest(method="uniform", speedup=4.0, device=dev, quant="Q8_0", align=8)  # near the reach
    # the device measures the cut at half its prediction: the corrected ask is past the reach
    res, landing = land(model, req, calib=CALIB, measure=lambda r, k: 0.5 * r.log["latency"]["predicted_speedup"],
                        tries=3, progress=False)
    assert len(landing.tries) == 1 and not landing.landed and landing.kept == 0
    assert "out of reach" in landing.stopped and "out of reach" in landing.text()
    assert res.log["landing"]["stopped"] == landing.stopped
    assert res.params_after == landing.tries[0].params  # the one cut made is the one kept
    with pytest.raises(PruneError, match="out of reach"):  # the goal itself out of reach: nothing to keep
        land(model, PruneRequest(method="uniform", speedup=50.0, device=dev, quant="Q8_0", align=8),
             calib=CALIB, measure=lambda r, k: 1.0, tries=3, progress=False)


@pytest.mark.parametrize("extra,needle", [
    (["--ratio", "0.3", "--measure-rounds", "3"], "lands a speed target"),
    (["--speedup", "1.2", "--device", "local", "--measure-rounds", "1"], "at least 2 rounds"),
    (["--speedup", "1.2", "--device", "local", "--measure-rounds", "3", "--incremental"], "--incremental"),
    (["--speedup", "1.2", "--device", "local", "--tolerance", "0.1"], "pass --measure-rounds"),
    (["--speedup", "1.2", "--device", "local", "--measure-rounds", "3", "--tolerance", "1.5"], "--tolerance 1.5"),
    (["--speedup", "1.2", "--device", "local", "--measure-rounds", "3", "--tries", "0"], "--tries 0"),
])
def test_prune_cli_refuses_a_wrong_measured_target_before_any_work(setup, capsys, extra, needle):  # noqa: F811
    t = setup
    assert main(["prune", *_args(t, "--method", "uniform", *extra)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (t / "out").exists()


@pytest.mark.slow
def test_prune_cli_measures_each_cut_on_local(setup, capsys, monkeypatch):  # noqa: F811
    """The real path: each cut exported at the quant and timed against the original's export in
    paired rounds on this machine; the record says what was measured (its value is timing, not
    asserted)."""
    t = setup
    from dataclasses import replace

    from edgeprune.files.checkpoint import save_checkpoint
    from edgeprune.data.tokens import embedded_tokenizer_dir

    # the fixture's model is all fixed costs; this one's layers dominate its decode
    save_checkpoint(build_model(replace(SPEC, vocab_size=4096), 0), t / "m", tokenizer_dir=embedded_tokenizer_dir())
    made = []
    real_init = DeviceMeasure.__post_init__

    def spy(self):
        real_init(self)
        made.append(self)
    monkeypatch.setattr(DeviceMeasure, "__post_init__", spy)
    assert main(["prune", *_args(t, "--method", "uniform", "--speedup", "1.1", "--device", "local", "--quant", "Q8_0",
                                 "--measure-rounds", "2", "--tries", "2")]) == 0
    out = capsys.readouterr().out
    rec = json.loads((t / "out" / "edgeprune.json").read_text())["pruning"]["log"]["landing"]
    assert rec["unit"] == "decode speed-up" and rec["goal"] == 1.1 and 1 <= len(rec["tries"]) <= 2
    assert all(x["measured"] > 0 and x["predicted"] >= 1.0 for x in rec["tries"])
    assert "measured on the device" in out and "try 1:" in out
    assert load_checkpoint(t / "out").spec.n_params == rec["tries"][rec["kept"]]["params"]
    assert made and not made[0].work.exists()  # the exports it timed are removed with the run


def test_the_same_cut_again_is_not_timed_again_and_the_ask_moves_on():
    # whole KV groups (12 heads / 4 KV): nearby goals give the same cut
    from dataclasses import replace

    spec = replace(SPEC, layers=tuple(replace(x, n_kv_heads=4) for x in SPEC.layers))
    req = PruneRequest(method="uniform", speedup=1.5, device=load_device("local"), quant="Q8_0", align=8)
    measure, calls = _device_off_by(1.3)
    _, landing = land(build_model(spec, seed=0), req, calib=CALIB, measure=measure, tolerance=0.05, tries=4,
                      progress=False)
    shapes = [t.shape for t in landing.tries]
    assert len(calls) == len(set(shapes))  # each distinct cut timed once
    asks = [t.asked for t in landing.tries]
    assert len(set(asks)) == len(asks)  # never the same goal twice


def _ship_model(tmp_path):
    """SPEC's shape with a tokenizer (ship's preflight reads it) and the vocabulary to match it."""
    import dataclasses

    from edgeprune.data.tokens import embedded_tokenizer_dir
    from edgeprune.files.checkpoint import save_checkpoint

    spec = dataclasses.replace(SPEC, vocab_size=4096)
    return save_checkpoint(build_model(spec, 0), tmp_path / "m", tokenizer_dir=embedded_tokenizer_dir())


@pytest.mark.parametrize("keys,needle", [
    (dict(measure_rounds=3), "lands a speed target"),
    (dict(measure_rounds=1, speedup=1.2, devices=["local"]), "at least 2 rounds"),
    (dict(measure_rounds=3, speedup=1.2, devices=["local"], incremental=True), "does not combine with incremental"),
    (dict(measure_rounds=3, speedup=1.2, devices=["raspberry-pi-5"]), "cannot be reached here"),
])
def test_ship_refuses_a_measured_target_it_cannot_land(tmp_path, keys, needle):
    from edgeprune.base.errors import PruneError
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import preflight

    ckpt = _ship_model(tmp_path)
    with pytest.raises(PruneError, match=needle):
        preflight(Recipe(model=str(ckpt), method="uniform", **keys))


def test_ship_accepts_a_measured_target_on_local(tmp_path):
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import preflight

    ckpt = _ship_model(tmp_path)
    pre = preflight(Recipe(model=str(ckpt), method="uniform", speedup=1.2, measure_rounds=3, devices=["local"]))
    assert pre.modes["local"] == "local"
