"""Methods hit their parameter target within 2%, are deterministic, and `adapt` adapts."""

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.base.errors import DataError, PruneError
from edgeprune.shape.model import build_model
from edgeprune.prune import METHODS, apply_cuts, prune_model
from edgeprune.shape.spec import ArchSpec
from tests.conftest import hetero_spec, tiny_spec

CALIB = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))
FAST = {"adapt": {"steps": 4}, "adapt-latency": {"steps": 4}, "search": {"steps": 2, "finalists": 3}}  # fewer inner steps keep the suite quick


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))  # no calibrated latency table leaks in


def _latency(method):
    """A device for latency-aware methods (a parameter target: the ranking is per second)."""
    if not METHODS[method].latency_aware:
        return {}
    return {"device": "raspberry-pi-4", "quant": "Q8_0"}


def _tolerance(method, spec, res):
    """2% of the target; `uniform` on a uniform model moves every layer at once, so it may miss by
    half of one alignment chunk in every layer (the closest shape with equal widths)."""
    if method in ("uniform", "search") and spec.is_uniform:
        from edgeprune.shape.spec import mlp_params

        return max(0.02, mlp_params(spec.hidden_size, res.align) * spec.n_layers / 2 / res.target_params)
    return 0.02


def _widths(spec):
    return [(lay.n_heads, lay.n_kv_heads, lay.ffn_dim) for lay in spec.layers]


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("spec", [tiny_spec("llama", True), hetero_spec("qwen2", False)], ids=["tiny", "hetero"])
@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_method_hits_target_and_is_deterministic(method, spec, ratio):
    if method == "search" and not spec.is_uniform:
        pytest.skip("search cuts uniform models (tests/prune/test_search.py checks the refusal)")
    runs = []
    for _ in range(2 if ratio == 0.5 else 1):  # determinism checked once per method and spec
        model = build_model(spec, seed=0)
        res = prune_model(model, method=method, ratio=ratio, calib=CALIB, align=8, seed=0, progress=False,
                          **FAST.get(method, {}), **_latency(method))
        runs.append(res)
    res = runs[0]
    assert abs(res.params_after - res.target_params) / res.target_params <= _tolerance(method, spec, res), \
        (res.params_after, res.target_params)
    assert res.target_params == round(spec.n_params * (1 - ratio))
    assert res.model.spec.n_params == sum(p.numel() for p in res.model.parameters())
    assert res.spec_before == spec
    for other in runs[1:]:
        assert _widths(other.spec) == _widths(res.spec)
        for (n, a), (_, b) in zip(res.model.state_dict().items(), other.model.state_dict().items()):
            assert torch.equal(a, b), n
    for lay in res.spec.layers:  # aligned MLP widths, whole GQA groups
        assert lay.ffn_dim % 8 == 0 or lay.ffn_dim in [x.ffn_dim for x in spec.layers]
        assert lay.n_kv_heads == 0 or lay.n_heads % lay.n_kv_heads == 0
    with torch.no_grad():
        assert torch.isfinite(res.model(CALIB[:2]).logits).all()


def test_params_target_and_json_summary():
    spec = tiny_spec()
    res = prune_model(build_model(spec, 0), method="uniform", params=70_000, calib=CALIB, align=8, progress=False)
    assert abs(res.params_after - 70_000) / 70_000 <= _tolerance("uniform", spec, res)
    s = res.summary()
    assert s["params_after"] == res.params_after and len(s["widths"]) == 3
    assert "| layer |" in res.table()


def _skewed_model():
    """6 uniform layers; layers 1, 3, 4 barely change the residual stream (near-identity)."""
    spec = ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=64, n_layers=6, n_heads=4,
                            n_kv_heads=2, ffn_dim=96, head_dim=16)
    model = build_model(spec, seed=0)
    with torch.no_grad():
        for i in (1, 3, 4):
            model.model.layers[i].self_attn.o_proj.weight.mul_(1e-3)
            model.model.layers[i].mlp.down_proj.weight.mul_(1e-3)
        for i in (0, 2, 5):
            model.model.layers[i].self_attn.o_proj.weight.mul_(20)
            model.model.layers[i].mlp.down_proj.weight.mul_(20)
    return model


def test_adapt_gives_non_uniform_widths_following_layer_importance():
    res = prune_model(_skewed_model(), method="adapt", ratio=0.4, calib=CALIB, align=8, progress=False, A=0.05,
                      steps=10)
    assert not res.spec.is_uniform
    kept = [sum(res.spec.layer_param_counts(i).values()) for i in range(6)]
    assert max(kept[i] for i in (1, 3, 4)) < min(kept[i] for i in (0, 2, 5)), kept
    sp = res.log["target_sparsity"]
    assert min(sp[i] for i in (1, 3, 4)) > max(sp[i] for i in (0, 2, 5))
    # uniform on the same model keeps equal layers
    uni = prune_model(_skewed_model(), method="uniform", ratio=0.4, calib=CALIB, align=8, progress=False)
    assert uni.spec.is_uniform


def test_depth_drops_the_near_identity_layers():
    res = prune_model(_skewed_model(), method="depth", ratio=0.4, calib=CALIB, align=8, progress=False)
    assert set(res.log["dropped_layers"]) <= {1, 3, 4} and res.log["dropped_layers"]
    assert res.spec.n_layers == 6 - len(res.log["dropped_layers"])


def test_pruned_checkpoint_reloads_and_runs(tmp_path):
    res = prune_model(build_model(hetero_spec("qwen2", True), 0), method="adapt", ratio=0.5, calib=CALIB, align=8,
                      progress=False, steps=4)
    save_checkpoint(res.model, tmp_path / "p", meta={"pruning": res.summary()})
    ck = load_checkpoint(tmp_path / "p")
    assert ck.spec == res.spec and ck.meta["pruning"]["method"] == "adapt"
    with torch.no_grad():
        torch.testing.assert_close(ck.model(CALIB[:2]).logits, res.model(CALIB[:2]).logits, rtol=0, atol=0)


def test_record_cuts_slices_adamw_state():
    model = build_model(tiny_spec("qwen2", False), 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(CALIB[:2], labels=CALIB[:2]).loss.backward()
    opt.step()
    state = {n: opt.state[p]["exp_avg"].clone() for n, p in model.named_parameters()}
    res = prune_model(model, method="adapt", ratio=0.3, calib=CALIB, align=8, progress=False, record_cuts=True,
                      steps=3)
    params = dict(res.model.named_parameters())
    for name, cuts in res.cuts.items():
        sliced = apply_cuts(state[name], cuts)
        if sliced is not None:
            assert sliced.shape == params[name].shape, name


@pytest.mark.parametrize("kw,err,match", [
    (dict(method="adapt", ratio=0.0), PruneError, "outside"),
    (dict(method="adapt", ratio=1.2), PruneError, "outside"),
    (dict(method="nope", ratio=0.5), PruneError, "unknown pruning method"),
    (dict(method="uniform", ratio=0.97), PruneError, "below"),
    (dict(method="uniform", ratio=0.5, params=1000), PruneError, "exactly one"),
    (dict(method="uniform", ratio=0.5, steps=3), PruneError, "no option"),
])
def test_bad_requests_raise_before_touching_the_model(kw, err, match):
    model = build_model(tiny_spec(), 0)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    with pytest.raises(err, match=match):
        prune_model(model, calib=CALIB, align=8, progress=False, **kw)
    assert model.spec == tiny_spec()
    assert all(torch.equal(before[n], p) for n, p in model.state_dict().items())


def test_calibration_with_wrong_vocabulary_is_a_data_error():
    with pytest.raises(DataError, match="vocabulary"):
        prune_model(build_model(tiny_spec(), 0), method="flap", ratio=0.5, calib=CALIB + 1000, align=8)
