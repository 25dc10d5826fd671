"""Adapt-Pruner's schedule (prune/adapt_schedule.py) is one loop for `adapt` (layer sizes in
parameters) and `adapt-latency` (decode seconds on a device): pinned results from before the two
methods shared it, so the shared loop cuts exactly what each method cut on its own."""

import pytest
import torch

from edgeprune.devices import load_device
from edgeprune.base.hashing import json_digest, state_dict_digest
from edgeprune.shape.model import build_model
from edgeprune.prune.latency import make_target, predicted_decode_tps
from edgeprune.prune.methods import METHODS
from tests.conftest import hetero_spec, tiny_spec

CALIB = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))  # no calibrated latency table leaks in


def _pi4(decode_speedup=None):
    pi4 = load_device("raspberry-pi-4")
    if decode_speedup is None:
        return make_target(pi4, "Q8_0")
    goal = decode_speedup * predicted_decode_tps(tiny_spec(), pi4, "Q8_0")
    return make_target(pi4, "Q8_0", decode_tps=goal, spec=tiny_spec())


# (method, spec, kept share of the parameters, options) -> what the method did before the shared schedule
CASES = {
    "adapt-hetero": ("adapt", lambda: hetero_spec("qwen2", False), 0.6, lambda: {"steps": 4},
                     {"widths": [(4, 2, 16), (2, 1, 16), (0, 0, 24), (3, 3, 0), (3, 3, 8)],
                      "target_sparsity": [0.5067, 0.544, 0.591, 0.4363, 0.4771], "weights": "364693b414156dcd",
                      "final": 6144}),
    "adapt-tiny-default-steps": ("adapt", tiny_spec, 0.5, dict,
                                 {"widths": [(1, 1, 8), (4, 2, 8), (4, 2, 32)],
                                  "target_sparsity": [0.99, 0.6608, 0.1158], "weights": "32336d9cc74b441d",
                                  "final": 9216}),
    "latency-params-target": ("adapt-latency", lambda: hetero_spec("qwen2", False), 0.6,
                              lambda: {"steps": 4, "latency": _pi4()},
                              {"widths": [(4, 2, 16), (1, 1, 24), (0, 0, 32), (4, 2, 0), (3, 3, 0)],
                               "target_sparsity": [0.5054, 0.5588, 0.5876, 0.4329, 0.4733],
                               "weights": "9a6ae12a74ab4349", "final": 4608}),
    "latency-decode-target": ("adapt-latency", tiny_spec, 0.5, lambda: {"steps": 4, "latency": _pi4(1.15)},
                              {"widths": [(0, 0, 96), (0, 0, 96)], "target_sparsity": [0.3536, 0.2553, 0.263],
                               "weights": "6c8f45f099bb0c45", "final": 2.3875e-05}),
}
# each method's whole log (history included; the latency summary is prune/latency.py's), from the same runs
LOG_DIGESTS = {"adapt-hetero": "c65cf72b18dff6b6", "adapt-tiny-default-steps": "42a6949d39c7b350",
               "latency-decode-target": "87ad07e47782c6a4", "latency-params-target": "cb5ea276654ced92"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapt_schedules_cut_what_they_cut_before(case):
    method, spec_of, keep, options, want = CASES[case]
    spec = spec_of()
    model, log = METHODS[method].fn(build_model(spec, seed=0), target_params=int(spec.n_params * keep), calib=CALIB,
                                    align=8, progress=False, **options())
    assert [(lay.n_heads, lay.n_kv_heads, lay.ffn_dim) for lay in model.spec.layers] == want["widths"]
    assert log["target_sparsity"] == want["target_sparsity"]
    assert state_dict_digest(model.state_dict()) == want["weights"]  # the same units kept, not just the widths
    final = log.get("final_fill", log.get("final_fill_params"))
    assert final == pytest.approx(want["final"], rel=1e-4)
    assert json_digest({k: v for k, v in log.items() if k != "latency"}) == LOG_DIGESTS[case]
