"""One pruning request: validated once, the same for `prune`, the incremental stages and `ship`,
and every target kind (parameters, decode, prefill, speed-up) reaching the method."""

from __future__ import annotations

import logging

import pytest

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.base.errors import PruneError
from edgeprune.shape.model import build_model
from edgeprune.prune import IncrementalPruner, PruneResult, prune_model
from edgeprune.prune.api import min_params
from edgeprune.prune.request import PruneRequest
from tests.conftest import tiny_spec
from tests.prune.test_search import CALIB, FAST, SPEC


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))  # no calibrated latency table leaks in


@pytest.mark.parametrize("fields, words", [
    (dict(), "exactly one target"),
    (dict(ratio=0.5, params=1000), "exactly one target"),
    (dict(ratio=0.5, speedup=2.0, device="raspberry-pi-5"), "exactly one target"),
    (dict(ratio=1.5), "outside (0, 1)"),
    (dict(params=0), "must be > 0"),
    (dict(decode_tps=-3.0, device="raspberry-pi-5"), "decode_tps -3.0 must be > 0"),
    (dict(speedup=0.5, device="raspberry-pi-5"), "speedup 0.5 must be > 1"),
    (dict(speedup=2.0), "need --device"),
    (dict(method="adapt-latency", ratio=0.3), "need --device"),
    (dict(method="adapt-latency", prefill_tps=900.0, device="raspberry-pi-5"), "aims at a decode rate"),
    (dict(method="nope", ratio=0.3), "unknown pruning method"),
    (dict(ratio=0.3, options={"warp": 9}), "no option"),
    (dict(ratio=0.3, quant="Q3_Z"), "Q3_Z"),
    (dict(ratio=0.3, align=0), "align must be >= 1"),
    (dict(ratio=0.3, device="nokia-3310"), "nokia-3310"),
])
def test_a_bad_request_is_one_line_before_any_model(fields, words):
    with pytest.raises(Exception) as e:
        PruneRequest(**fields)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_resolve_checks_the_model_and_decides_the_alignment_once(caplog):
    spec = tiny_spec()
    at8, at32 = min_params(spec, 8), min_params(spec, 32)
    assert at8 < at32  # a target between the two floors is reachable only on the finer grid
    between = (at8 + at32) // 2
    with pytest.raises(PruneError, match="below"):
        PruneRequest(method="uniform", params=between, align=32).resolve(spec)  # the user's align is kept
    caplog.set_level(logging.WARNING, logger="edgeprune.prune.request")
    plan = PruneRequest(method="uniform", params=between, quant="Q8_0").resolve(spec)
    assert plan.align == 8 and plan.target_params == between and "aligning to 8 instead" in caplog.text
    assert PruneRequest(method="uniform", ratio=0.2, quant="Q8_0").resolve(spec).align == 32
    with pytest.raises(PruneError, match="below"):
        PruneRequest(method="uniform", ratio=0.99).resolve(spec)


def test_ship_builds_the_request_prune_builds(tmp_path):
    """The recipe's keys and prune's flags give one request: equal fields, equal resolution."""
    from edgeprune.devices import load_device
    from edgeprune.pipeline.recipe import Recipe

    spec = tiny_spec()
    pi5 = load_device("raspberry-pi-5")
    r = Recipe(method="uniform", ratio=0.4, devices=["raspberry-pi-5"], quants=["Q8_0", "Q4_0", "int8"])
    shipped = r.prune_request([pi5])
    direct = PruneRequest(method="uniform", ratio=0.4, device=pi5, quant="Q8_0", quants=("Q4_0",))
    assert shipped == direct
    a, b = shipped.resolve(spec), direct.resolve(spec)
    assert (a.target_params, a.align) == (b.target_params, b.align)
    assert a.latency.device == "raspberry-pi-5" and a.latency.qtype == "Q8_0"
    speed = Recipe(method="adapt-latency", speedup=1.1, devices=["raspberry-pi-5"]).prune_request([pi5])
    assert speed.ratio is None and speed.speedup == 1.1 and speed.device is pi5


def test_ship_preflight_takes_any_method_with_a_speed_target(tmp_path):
    """adapt-latency used to pass preflight and then ask for the device it had: the request now
    carries it, and a method without one is refused before any stage."""
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import preflight

    from edgeprune.shape.spec import ArchSpec

    # deep enough that layers, not the embedding, carry the decode time: 1.2x is reachable by all
    from edgeprune.data.tokens import embedded_tokenizer_dir

    spec = ArchSpec.uniform(family="llama", vocab_size=4096, hidden_size=256, n_layers=8, n_heads=8, n_kv_heads=4,
                            ffn_dim=768, head_dim=32, max_position_embeddings=128)
    # preflight reads the model's tokenizer too (a model that cannot tokenize is refused before any stage)
    ckpt = save_checkpoint(build_model(spec, 0), tmp_path / "m", tokenizer_dir=embedded_tokenizer_dir())
    for method in ("adapt-latency", "search", "uniform", "depth", "adapt"):
        pre = preflight(Recipe(model=str(ckpt), method=method, speedup=1.2, devices=["raspberry-pi-5"]))
        assert [d.name for d in pre.devices] == ["raspberry-pi-5"] and pre.modes and pre.spec == spec
        assert pre.target.by_time and pre.target.latency.device == "raspberry-pi-5"
    with pytest.raises(PruneError, match="already predicted"):
        preflight(Recipe(model=str(ckpt), method="search", decode_tps=0.01, devices=["raspberry-pi-5"]))


def test_a_prefill_target_is_met_by_search_and_by_a_parameter_method():
    from edgeprune.devices import load_device
    from edgeprune.prune.latency import make_target

    now = make_target(load_device("raspberry-pi-5"), "Q4_0").prefill_tps_of(SPEC)
    goal = 1.1 * now
    for method, opts in (("search", FAST), ("uniform", {})):
        req = PruneRequest(method=method, prefill_tps=goal, device="raspberry-pi-5", quant="Q4_0", align=8,
                           options=opts)
        res = prune_model(build_model(SPEC, 0), req, calib=CALIB, progress=False)
        lat = res.log["latency"]
        assert lat["target_prefill_tps"] == goal and lat["target_decode_tps"] is None
        if method == "search":  # aims at the rate itself
            assert lat["predicted_prefill_tps"] >= goal * 0.999
        assert lat["predicted_prefill_tps"] > lat["predicted_prefill_tps_before"]
        assert "prefill target" in res.table()


def test_incremental_and_one_shot_return_the_same_result(tmp_path):
    req = PruneRequest(method="uniform", ratio=0.3, align=8)
    one = prune_model(build_model(tiny_spec(), 0), req, calib=CALIB[:, :16] % 256, progress=False)
    inc = IncrementalPruner(build_model(tiny_spec(), 0), req, out_dir=tmp_path / "run", calib=CALIB % 256,
                            stages=2, progress=False).run()
    assert isinstance(inc, PruneResult) and isinstance(one, PruneResult)
    assert set(one.summary()) <= set(inc.summary())
    assert inc.summary()["incremental"] and inc.summary()["stages"] == 2
    assert len(inc.log["stage_history"]) == 2
    for res in (one, inc):
        table = res.table()
        assert table.count("\n|") >= tiny_spec().n_layers and "parameters:" in table
    assert "2 stages" in inc.table()
    with pytest.raises(PruneError, match="not both"):
        prune_model(build_model(tiny_spec(), 0), req, calib=CALIB, ratio=0.2)
