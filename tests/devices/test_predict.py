"""`predict()` costs a spec once: its roofline and its latency model read the same weight bytes,
the GGUF type mix llama.cpp writes (edgeprune/shape/gguf_types.py)."""

from __future__ import annotations

import pytest

from edgeprune.devices.latency_model import (DEFAULT_LAYER_OVERHEAD_S, DEFAULT_TOKEN_OVERHEAD_S, N_GEN,
                                             decode_features)
from edgeprune.devices.predict import predict
from edgeprune.shape.gguf_types import decode_weight_bytes

from ..conftest import hetero_spec


@pytest.mark.parametrize("quant", ["Q4_0", "Q4_K_M", "Q8_0"])
@pytest.mark.parametrize("tie", [True, False])
def test_roofline_and_latency_model_read_one_byte_model(quant, tie, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))  # no calibrated table: the model is roofline + overheads
    spec = hetero_spec(tie=tie, vocab=512)
    out = predict(spec, "raspberry-pi-5", quant)
    assert out["model_source"] == "roofline+defaults"
    # the roofline's bytes per token are the latency model's byte terms (layers, head, KV at tg's context)
    weights_layers, head, kv = decode_features(spec, quant, N_GEN)[5:8]
    assert out["bytes_per_token"] == pytest.approx(weights_layers + head + kv, rel=1e-12)
    assert weights_layers + head == decode_weight_bytes(spec, quant)
    # so the two speeds differ by the default overheads alone
    overhead = DEFAULT_TOKEN_OVERHEAD_S + DEFAULT_LAYER_OVERHEAD_S * spec.n_layers
    assert 1 / out["model_tg_tps"] - overhead == pytest.approx(1 / out["tg_pred_tps"], rel=1e-9)


def test_the_type_mix_is_not_the_nominal_type():
    """Why one model matters: a Q4_K_M file of this spec is not all Q4_K, so costing it at the
    nominal type alone (what the roofline did) reads other bytes than the latency model."""
    spec = hetero_spec(vocab=512)
    assert decode_weight_bytes(spec, "Q4_K_M") != spec.weight_bytes("Q4_K")


def test_uncalibrated_prefill_is_never_below_decode_and_says_so():
    """A low probed FP32 peak made the uncalibrated local profile predict prefill (39 t/s) below
    decode (68.8 t/s) on SmolLM2: prefill now takes decode's rate as its floor, and the caveat
    says the compute estimate was lower and how to measure both."""
    import dataclasses

    from edgeprune.devices import load_device
    from edgeprune.devices.latency_model import LatencyModel

    spec = hetero_spec(vocab=4096)
    base = load_device("raspberry-pi-5")
    slow = LatencyModel(device=dataclasses.replace(base, peak_gflops=0.05))  # prior prefill far below decode
    assert slow._prefill_prior_tps(spec, "Q4_0", 0) < slow.decode_tps(spec, "Q4_0")
    figures = slow.predict(spec, "Q4_0")
    assert figures["model_pp_tps"] == pytest.approx(figures["model_tg_tps"])
    assert "prefill shown at decode's rate" in figures["model_caveat"]
    assert "devices calibrate raspberry-pi-5" in figures["model_caveat"]
    for depth in (0, 64):
        assert slow.prefill_tps(spec, "Q4_0", depth) >= slow.decode_tps(spec, "Q4_0", depth)
    fast = LatencyModel(device=base)  # the profile's own peak: the compute estimate stands, unflagged
    assert fast.prefill_tps(spec, "Q4_0") == fast._prefill_prior_tps(spec, "Q4_0", 0) > fast.decode_tps(spec, "Q4_0")
    assert "decode's rate" not in fast.predict(spec, "Q4_0")["model_caveat"]
