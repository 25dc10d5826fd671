"""`search`: every axis removes exactly what it reports, speed targets are met by the prediction,
and the finalists are ranked by their loss after a short distillation."""

import pytest
import torch

from edgeprune.devices import load_device
from edgeprune.shape.model import build_model
from edgeprune.prune import prune_model
from edgeprune.prune.latency import make_target
from edgeprune.prune.search_space import candidates
from edgeprune.shape.spec import ArchSpec

CALIB = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(1))
SPEC = ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=64, n_layers=6, n_heads=4, n_kv_heads=2,
                        ffn_dim=96, head_dim=16, max_position_embeddings=128)
FAST = {"steps": 2, "finalists": 3}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))  # no calibrated latency table leaks in


def _run(axes, **kw):
    model = build_model(SPEC, seed=0)
    orig = {k: v.clone() for k, v in model.state_dict().items()}
    res = prune_model(model, method="search", calib=CALIB, align=8, progress=False, axes=axes, **FAST, **kw)
    return orig, res


def test_depth_axis_removes_exactly_the_reported_layers():
    orig, res = _run("depth", ratio=0.3)
    drop = res.log["dropped_layers"]
    assert drop and res.spec.n_layers == 6 - len(drop)
    assert res.spec.layers[0] == SPEC.layers[0] and res.spec.hidden_size == 64
    kept = [i for i in range(6) if i not in drop]
    sd = res.model.state_dict()
    for j, i in enumerate(kept):  # the kept layers are the original layers, untouched
        assert torch.equal(sd[f"model.layers.{j}.mlp.up_proj.weight"], orig[f"model.layers.{i}.mlp.up_proj.weight"])


def test_hidden_axis_removes_exactly_the_reported_channels():
    orig, res = _run("hidden", ratio=0.25)
    n = res.log["hidden_removed"]
    assert n > 0 and res.spec.hidden_size == 64 - n and res.spec.n_layers == 6
    emb = res.model.state_dict()["model.embed_tokens.weight"]
    cols = [c for c in range(64) if any(torch.equal(emb[:, k], orig["model.embed_tokens.weight"][:, c])
                                        for k in range(emb.shape[1]))]
    assert len(cols) == 64 - n  # every kept column is an original column


@pytest.mark.parametrize("axes,field", [("heads", "n_heads"), ("ffn", "ffn_dim")])
def test_width_axes_remove_exactly_the_reported_widths(axes, field):
    _, res = _run(axes, ratio=0.25)
    chosen = res.log["finalists"][[r["shape"] for r in res.log["finalists"]].index(res.log["chosen"])]
    assert res.spec.is_uniform and res.spec.n_layers == 6 and res.spec.hidden_size == 64
    lay = res.spec.layers[0]
    assert (lay.n_heads, lay.n_kv_heads, lay.ffn_dim) == (chosen["heads"], chosen["kv_heads"], chosen["ffn"])
    assert getattr(lay, field) < getattr(SPEC.layers[0], field)
    assert res.params_after == chosen["params"] == res.model.spec.n_params
    assert res.model.spec.n_params == sum(p.numel() for p in res.model.parameters())


def test_all_axes_hit_a_parameter_target_with_a_plain_uniform_shape():
    _, res = _run("depth,heads,ffn,hidden", ratio=0.5)
    assert res.spec.is_uniform
    assert abs(res.params_after - res.target_params) / res.target_params <= 0.1
    assert len(res.log["finalists"]) >= 2 and res.log["candidates"] > len(res.log["finalists"])
    for r in res.log["finalists"]:
        assert r["loss_after_distill"] > 0 and r["kl_after_distill"] > 0
    best = min(r["kl_after_distill"] for r in res.log["finalists"])
    assert [r for r in res.log["finalists"] if r["shape"] == res.log["chosen"]][0]["kl_after_distill"] == best


def test_the_proxy_is_kl_to_the_teacher_on_a_half_the_distillation_never_sees():
    import copy

    from edgeprune.prune import PlainDistil
    from edgeprune.prune.methods.search import distilled_loss, split_calibration

    teacher = build_model(SPEC, seed=0).eval()
    train, held = split_calibration(CALIB)
    assert train.shape[0] == held.shape[0] == 4 and torch.equal(torch.cat([train, held]), CALIB)
    kl, lm, record = distilled_loss(copy.deepcopy(teacher), teacher, CALIB, 0, PlainDistil(1e-3), 2)
    assert kl == pytest.approx(0.0, abs=1e-6) and record == []  # the teacher itself, untrained: no divergence
    assert lm == pytest.approx(float(teacher(held, labels=held).loss), rel=1e-5)
    other = CALIB.clone()
    other[4:] = (other[4:] + 7) % 256  # only the held-out half differs
    a, b = build_model(SPEC, seed=3), build_model(SPEC, seed=3)
    budget = 3 * 2 * CALIB.shape[1]  # three batches of two windows
    assert len(distilled_loss(a, teacher, CALIB, budget, PlainDistil(1e-3), 2)[2]) == 3
    distilled_loss(b, teacher, other, budget, PlainDistil(1e-3), 2)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k  # the distillation never saw the held-out windows
    assert not torch.equal(a.state_dict()["model.embed_tokens.weight"],
                           build_model(SPEC, seed=3).state_dict()["model.embed_tokens.weight"])


class Recording:
    """A DistilFn that records what it is handed and trains by plain KL (so the search still ranks)."""

    def __init__(self):
        from edgeprune.prune import PlainDistil

        self.calls, self.inner = [], PlainDistil(1e-3)
        self.settings = {"kind": "recording"}

    def __call__(self, student, teacher, batches, tokens):
        self.calls.append({"tokens": tokens, "shapes": [tuple(b.shape) for b in batches],
                           "params": student.spec.n_params, "teacher_params": teacher.spec.n_params})
        return self.inner(student, teacher, batches, tokens)


def test_the_finalists_are_trained_by_the_supplied_callable():
    rec = Recording()
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False,
                      axes="depth,ffn", ratio=0.3, steps=3, finalists=3, refine=0, batch_size=2, distil=rec)
    rows = res.log["finalists"]
    assert len(rec.calls) == len(rows) >= 2  # once per finalist, never for the screened-only shapes
    for call in rec.calls:
        assert call["tokens"] == 3 * 2 * CALIB.shape[1]  # steps × batch × window length
        assert call["shapes"] == [(2, CALIB.shape[1])] * 2  # the distillation half, in batches of 2
        assert call["teacher_params"] == SPEC.n_params and call["params"] < SPEC.n_params
    assert sorted(c["params"] for c in rec.calls) == sorted(r["params"] for r in rows)
    assert all(len(r["distill_losses"]) == 3 for r in rows)  # the loss record the callable returned
    assert res.log["distill"] == {"kind": "recording"} and res.log["distill_tokens"] == 3 * 2 * CALIB.shape[1]


def test_each_depth_sends_on_the_screened_shape_with_the_least_kl_after_its_cut():
    import copy

    from edgeprune.prune.methods.search import held_scores, split_calibration

    _, res = _run("depth,heads,ffn", ratio=0.4, screen=3)
    scr = res.log["screened"]
    assert len(scr) > len(res.log["finalists"])  # more shapes were cut than were distilled
    by_depth: dict = {}
    for r in scr:
        by_depth.setdefault(int(r["shape"].split()[0][1:]), []).append(r)
    assert max(len(v) for v in by_depth.values()) == 3
    for rows in by_depth.values():
        sent = [r for r in rows if r["finalist"]]
        assert len(sent) == 1 and sent[0]["kl_after_cut"] == min(r["kl_after_cut"] for r in rows)
    for f in res.log["finalists"]:  # the KL the screen read is the finalist's own, before distillation
        assert f["kl_after_cut"] == [r for r in scr if r["shape"] == f["shape"]][0]["kl_after_cut"]
    # without distillation the least KL after the cut wins, and the returned model measures that KL
    teacher = build_model(SPEC, seed=0).eval()
    cut0 = prune_model(copy.deepcopy(teacher), method="search", calib=CALIB, align=8, progress=False,
                       axes="depth,heads,ffn", ratio=0.4, screen=3, steps=0, finalists=3)
    chosen = [f for f in cut0.log["finalists"] if f["shape"] == cut0.log["chosen"]][0]
    assert chosen["kl_after_cut"] == min(f["kl_after_cut"] for f in cut0.log["finalists"])
    held = split_calibration(CALIB)[1]
    assert held_scores(cut0.model, teacher, held, 4)[0] == pytest.approx(chosen["kl_after_cut"], abs=1e-3)


def test_screen_of_one_leaves_the_pick_to_the_saliency_and_zero_is_refused():
    from edgeprune.base.errors import PruneError

    _, res = _run("depth,heads,ffn", ratio=0.4, screen=1)
    assert all(r["finalist"] for r in res.log["screened"])
    with pytest.raises(PruneError, match="screen"):
        _run("depth,heads,ffn", ratio=0.4, screen=0)


def test_refinement_searches_the_skipped_depths_beside_the_grid_winner():
    from edgeprune.base.errors import PruneError
    from edgeprune.prune.methods.search import refine_depths
    from edgeprune.prune.search_space import depth_options

    assert refine_depths(24, [30, 27, 24, 21], 30, 1) == [23, 25]
    assert refine_depths(30, [30, 27], 30, 2) == [28, 29]  # never past the original depth
    assert refine_depths(24, [24], 30, 0) == []
    deep = ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=32, n_layers=20, n_heads=2, n_kv_heads=1,
                            ffn_dim=64, head_dim=16, max_position_embeddings=128)
    grid = depth_options(20, ("depth", "ffn"))
    assert set(range(min(grid), 21)) - set(grid)  # the grid skips depths, so there is something to refine
    res = prune_model(build_model(deep, seed=0), method="search", calib=CALIB, align=8, progress=False,
                      axes="depth,ffn", ratio=0.3, steps=2, finalists=len(grid), refine=1)
    rows = res.log["finalists"]
    won = min((r for r in rows if r["stage"] == "grid"), key=lambda r: (r["kl_after_distill"], -r["params"]))
    refined = [r for r in rows if r["stage"] == "refined"]
    assert res.log["refined_depths"] == sorted(r["n_layers"] for r in refined)
    assert refined and all(abs(r["n_layers"] - won["n_layers"]) == 1 and r["n_layers"] not in grid for r in refined)
    best = min(rows, key=lambda r: (r["kl_after_distill"], -r["params"]))  # the pick is over both stages
    assert res.log["chosen"] == best["shape"] and res.spec.n_layers == best["n_layers"]
    with pytest.raises(PruneError, match="refine"):
        _run("depth,heads,ffn", ratio=0.4, refine=-1)


def test_decode_target_is_met_by_the_prediction():
    dev = load_device("raspberry-pi-5")
    target = make_target(dev, "Q4_0", speedup=1.5, spec=SPEC)
    model = build_model(SPEC, seed=0)
    res = prune_model(model, method="search", calib=CALIB, align=8, progress=False, device=dev, quant="Q4_0", speedup=1.5, **FAST)
    assert target.decode_tps_of(res.spec) >= target.decode_tps
    assert res.log["latency"]["predicted_speedup"] >= 1.5
    assert res.spec.is_uniform


def test_every_candidate_meets_the_speed_target_and_uses_its_widest_ffn():
    dev = load_device("raspberry-pi-5")
    target = make_target(dev, "Q4_0", speedup=1.3, spec=SPEC)
    cands = candidates(SPEC, 8, decode_tps=target.decode_tps, decode_tps_of=target.decode_tps_of)
    assert cands
    for c in cands:
        assert c.decode_tps >= target.decode_tps
        if c.ffn < 96:  # one chunk wider would miss the target
            from edgeprune.prune.shapes import uniform_spec

            wider = uniform_spec(SPEC, c.attn, c.ffn + 8, n_layers=c.n_layers, hidden=c.hidden)
            assert target.decode_tps_of(wider) < target.decode_tps


def test_bad_axes_and_heterogeneous_inputs_are_refused():
    from edgeprune.base.errors import PruneError
    from tests.conftest import hetero_spec

    with pytest.raises(PruneError, match="axes"):
        _run("depth,width", ratio=0.3)
    with pytest.raises(PruneError, match="per-layer widths"):
        prune_model(build_model(hetero_spec(), 0), method="search", ratio=0.3, calib=CALIB, align=8,
                    progress=False, **FAST)
