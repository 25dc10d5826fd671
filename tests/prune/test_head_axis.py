"""The head's GGUF type as an axis of the search: lowered where the decode target needs it, priced by
the latency model at that type, recorded for the export; the vocabulary is never touched."""

import pytest
import torch

from edgeprune.base.errors import PruneError
from edgeprune.devices import load_device
from edgeprune.prune import prune_model
from edgeprune.prune.head_axis import choose_head, head_costs, head_options, round_trip
from edgeprune.prune.latency import make_target
from edgeprune.shape.gguf_types import decode_weight_bytes, gguf_weight_bytes
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec

CALIB = torch.randint(0, 4096, (8, 16), generator=torch.Generator().manual_seed(1))
# a wide vocabulary on a small body: the head is most of the bytes a decoded token reads
SPEC = ArchSpec.uniform(family="llama", vocab_size=4096, hidden_size=64, n_layers=6, n_heads=4, n_kv_heads=2,
                        ffn_dim=96, head_dim=16, max_position_embeddings=128)
FAST = {"steps": 1, "finalists": 2, "refine": 0}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))  # no calibrated latency table leaks in


def test_options_are_the_presets_head_and_the_cheaper_types_a_row_takes():
    assert head_options(SPEC, "Q4_0") == [None, "Q5_0", "Q4_0"]  # preset: Q8_0 (64 is not a 256-block)
    assert head_options(SPEC, "Q8_0") == [None, "Q5_0", "Q4_0"]
    assert head_options(SPEC, "F16") == [None]


def test_the_head_cost_is_the_first_order_loss_of_its_quantization_error():
    model = build_model(SPEC, seed=0)
    ids = CALIB[:2]
    model(ids, labels=ids).loss.backward()
    w, g = model.lm_head.weight.detach(), model.lm_head.weight.grad
    costs = head_costs(model, [None, "Q5_0", "Q4_0"])
    assert costs[None] == 0.0
    assert costs["Q4_0"] == pytest.approx(float((g * (round_trip(w, "Q4_0") - w)).abs().sum()), rel=1e-6)
    assert 0 < costs["Q5_0"] < costs["Q4_0"]  # fewer bits, a larger error
    err = (round_trip(w, "Q4_0") - w).abs().max()
    assert 0 < err < w.abs().max() / 4  # a real round trip through the 4-bit blocks, not a copy or a wipe


def test_choice_adds_the_head_cost_to_the_least_body_saliency():
    assert choose_head({None: 0.0, "Q5_0": 1.0, "Q4_0": 2.0}, {None: 10.0, "Q5_0": 5.0, "Q4_0": 4.5}) == "Q5_0"
    assert choose_head({None: 0.0, "Q5_0": 1.0}, {None: 0.5, "Q5_0": 0.0}) is None  # the preset's head costs less
    assert choose_head({None: 0.0, "Q4_0": 3.0}, {None: None, "Q4_0": 9.0}) == "Q4_0"  # only a cheaper head reaches it


def test_a_target_width_cannot_reach_at_the_presets_head_lowers_the_head():
    dev = load_device("raspberry-pi-5")
    target = make_target(dev, "Q4_0", speedup=1.6, spec=SPEC)
    with pytest.raises(PruneError, match="no shape"):  # the body alone cannot get there
        prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, device=dev,
                    quant="Q4_0", speedup=1.6, head="keep", **FAST)
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, device=dev,
                      quant="Q4_0", speedup=1.6, **FAST)
    head = res.summary()["head"]
    assert head["decided"] and head["type"] in ("Q5_0", "Q4_0") and head["preset_type"] == "Q8_0"
    assert head["predicted_decode_bytes"] == decode_weight_bytes(res.spec, "Q4_0", head["type"])
    assert head["predicted_decode_bytes"] < head["predicted_decode_bytes_preset_head"]
    assert head["predicted_decode_bytes_preset_head"] - head["predicted_decode_bytes"] == (
        gguf_weight_bytes(res.spec, "Q4_0")["head"] - gguf_weight_bytes(res.spec, "Q4_0", head["type"])["head"])
    # the prediction the record carries is at the decided head, and it meets the target
    assert target.with_head(head["type"]).decode_tps_of(res.spec) >= target.decode_tps
    assert res.log["latency"]["head_type"] == head["type"] and res.log["latency"]["predicted_speedup"] >= 1.6
    assert res.spec.vocab_size == SPEC.vocab_size  # no trimming asked: the vocabulary stays whole
    assert "head stored at" in res.table()


def test_without_a_speed_target_the_head_and_the_vocabulary_stay():
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, ratio=0.1,
                      axes="depth,ffn", **FAST)
    assert "head" not in res.summary() and res.spec.vocab_size == SPEC.vocab_size
    with pytest.raises(PruneError, match="head"):
        prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, ratio=0.1,
                    head="q3", **FAST)
