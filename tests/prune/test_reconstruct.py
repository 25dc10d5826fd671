"""Reconstruction after a cut (prune/reconstruct.py): per axis, the refitted model reproduces the
original's hidden states better than the plain cut on tokens the fit never saw; depth cuts stay
the same architecture; the fit is sequential (each layer fitted on the inputs the already
reconstructed layers produce); `reconstruct="none"` leaves the method's cut untouched."""

from __future__ import annotations

import copy

import pytest
import torch

from edgeprune.base.errors import PruneError
from edgeprune.prune import prune_model, surgery
from edgeprune.prune.methods import get_method
from edgeprune.prune.reconstruct import NormalEquations, reconstruct, source_layers, tag_sources
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec
from tests.conftest import hetero_spec

GEN = torch.Generator().manual_seed(3)
CALIB = torch.randint(0, 256, (24, 32), generator=GEN)  # the fit's tokens
HELD = torch.randint(0, 256, (8, 32), generator=GEN)  # tokens the fit never sees


def deep_spec() -> ArchSpec:
    """Uniform, 6 layers: room for a removed run of layers in the middle."""
    return ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=64, n_layers=6, n_heads=4, n_kv_heads=2,
                            ffn_dim=128, head_dim=16, tie_word_embeddings=True, max_position_embeddings=128)


def last_hidden(model, ids):
    """The residual stream after the last layer (before the final norm), (B, T, hidden)."""
    seen = {}
    h = model.model.norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    try:
        with torch.no_grad():
            model(ids)
    finally:
        h.remove()
    return seen["x"]


def rel_error(student, teacher, ids) -> float:
    """Mean per-token ‖h_s − h_t‖² / ‖h_t‖² of the last hidden state (what the final norm reads)."""
    hs, ht = last_hidden(student, ids), last_hidden(teacher, ids)
    return float(((hs - ht).pow(2).sum(-1) / ht.pow(2).sum(-1)).mean())


CUTS = {
    "ffn channels": lambda m: [surgery.remove_mlp_channels(m, i, range(0, 128, 2)) for i in range(6)],
    "kv groups": lambda m: [surgery.remove_kv_groups(m, i, [1]) for i in range(6)],
    "query heads": lambda m: [surgery.remove_query_heads(m, i, [1, 3]) for i in range(6)],
    "layers": lambda m: surgery.remove_layers(m, [2, 3]),
}


@pytest.mark.parametrize("axis", list(CUTS))
def test_a_refit_reproduces_the_original_better_than_the_cut_on_held_out_tokens(axis):
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    CUTS[axis](student)
    spec_cut = student.spec
    plain = rel_error(student, teacher, HELD)
    rec = reconstruct(student, teacher, CALIB, progress=False)
    after = rel_error(student, teacher, HELD)
    assert after < 0.95 * plain, (axis, plain, after)
    assert student.spec == spec_cut  # a refit changes weights, never the shape
    fitted = [row for row in rec["layers"] if "down_proj" in row]
    assert fitted and all(r["down_proj"][1] <= r["down_proj"][0] for r in fitted)
    assert rec["seconds"] >= 0 and rec["peak_rss_mb"] > 0


def test_a_teacher_held_in_bf16_beside_a_float32_student_gives_the_same_fit():
    """Pruning-aware training holds its KD teacher in bf16 on CUDA: the walk runs it in its own
    dtype (its rotary tables too), and the fit recovers what the float32 teacher's fit does."""
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    CUTS["ffn channels"](student)
    plain = rel_error(student, teacher, HELD)
    twin = copy.deepcopy(student)
    reconstruct(student, teacher, CALIB, progress=False)
    reconstruct(twin, copy.deepcopy(teacher).to(torch.bfloat16), CALIB, progress=False)
    assert next(twin.parameters()).dtype == torch.float32
    fit, fit_bf16 = rel_error(student, teacher, HELD), rel_error(twin, teacher, HELD)
    assert fit_bf16 < 0.95 * plain and abs(fit_bf16 - fit) < 0.1 * (plain - fit), (plain, fit, fit_bf16)


def test_removed_layers_become_a_map_merged_into_the_layer_before_them():
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    surgery.remove_layers(student, [2, 3])
    names = sorted(n for n, _ in student.named_parameters())
    rec = reconstruct(student, teacher, CALIB, progress=False)
    assert source_layers(student, 6) == [0, 1, 4, 5]
    assert rec["layers"][1]["merged_layers"] == [2, 3]  # layer 1 stands for 1, 2 and 3
    assert sorted(n for n, _ in student.named_parameters()) == names  # no new module, plain llama names
    assert student.spec.is_uniform and student.spec.n_layers == 4


def test_the_fit_is_sequential_each_layer_sees_the_reconstructed_layers_before_it():
    """Layer 1's o_proj is fitted on the inputs that reconstructed layer 0 produces (its own input does
    not depend on its own o_proj), not on the plain cut's nor on the original's."""
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    CUTS["ffn channels"](student)
    cut_copy = copy.deepcopy(student)
    seen = []
    o1 = student.model.layers[1].self_attn.o_proj
    handle = o1.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    reconstruct(student, teacher, CALIB[:8], batch_size=8, progress=False)
    handle.remove()
    fitted_on = seen[0]  # the first call: gathering the normal equations of layer 1's attention
    own, plain, orig = [], [], []
    for model, store in ((student, own), (cut_copy, plain), (teacher, orig)):
        h = model.model.layers[1].self_attn.o_proj.register_forward_pre_hook(lambda m, a, s=store: s.append(a[0]))
        with torch.no_grad():
            model(CALIB[:8])
        h.remove()
    torch.testing.assert_close(fitted_on, own[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(fitted_on, plain[0], atol=1e-4)
    assert not torch.allclose(fitted_on, orig[0], atol=1e-4)


def test_reconstruct_none_is_the_methods_cut_bit_for_bit():
    base = build_model(hetero_spec(), seed=0)
    by_api = prune_model(copy.deepcopy(base), method="adapt", ratio=0.3, calib=CALIB[:4, :16], progress=False,
                         reconstruct="none", steps=4)
    torch.manual_seed(0)  # prune_model seeds the same way before calling the method
    direct, _ = get_method("adapt").fn(copy.deepcopy(base), target_params=by_api.target_params, calib=CALIB[:4, :16],
                                       align=by_api.align, progress=False, record=None, steps=4)
    a, b = by_api.model.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert by_api.summary()["reconstruction"] == {"mode": "none"}


@pytest.mark.parametrize("method", ["uniform", "flap", "depth", "adapt"])
def test_every_method_reconstructs_by_default_and_gets_closer_to_the_original(method):
    base = build_model(deep_spec(), seed=1).eval()
    opts = {"steps": 4} if method == "adapt" else {}
    cut = prune_model(copy.deepcopy(base), method=method, ratio=0.4, calib=CALIB, progress=False,
                      reconstruct="none", **opts)
    rec = prune_model(copy.deepcopy(base), method=method, ratio=0.4, calib=CALIB, progress=False, **opts)
    assert rec.spec == cut.spec  # the same shape: reconstruction only refits weights
    assert rel_error(rec.model, base, HELD) < rel_error(cut.model, base, HELD)
    summary = rec.summary()["reconstruction"]
    assert summary["mode"] == "layerwise" and summary["seconds"] >= 0 and summary["peak_rss_mb"] > 0
    assert summary["down_proj_error"][1] <= summary["down_proj_error"][0]
    assert "reconstruction" in rec.table()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained on a repetitive text, and windows of that text: a cut of a trained model
    loses what reconstruction can give back (a random one has little structure to recover)."""
    from tests.export.gguf_cases import encode, make_tokenizer, random_model, train_tiny

    ids = encode(make_tokenizer(tmp_path_factory.mktemp("tok")))
    spec = ArchSpec.uniform(family="llama", vocab_size=320, hidden_size=64, n_layers=6, n_heads=4, n_kv_heads=2,
                            ffn_dim=128, head_dim=16, tie_word_embeddings=True, max_position_embeddings=128)
    starts = torch.randint(0, len(ids) - 33, (24,), generator=torch.Generator().manual_seed(0))
    return train_tiny(random_model(spec), ids).eval(), torch.stack([ids[s:s + 32] for s in starts])


def test_search_scores_its_candidates_after_reconstruction(trained):
    """The same screened shapes measure a lower held-out KL when the search reconstructs them (a shape
    with a cut hidden width is left as cut: the same KL)."""
    base, calib = trained
    opts = dict(method="search", ratio=0.4, calib=calib, progress=False, steps=0, finalists=2, screen=2, refine=0,
                fit_windows=12)
    plain = prune_model(copy.deepcopy(base), reconstruct="none", **opts)
    rec = prune_model(copy.deepcopy(base), **opts)
    assert rec.log["candidates_reconstructed"] == "layerwise"
    kl_plain = {r["shape"]: r["kl_after_cut"] for r in plain.log["screened"]}
    kl_rec = {r["shape"]: r["kl_after_cut"] for r in rec.log["screened"]}
    assert kl_plain.keys() == kl_rec.keys()
    assert all(kl_rec[k] <= kl_plain[k] for k in kl_rec)
    assert sum(kl_rec.values()) < 0.8 * sum(kl_plain.values())


def test_weighting_keeps_a_massive_token_from_owning_the_fit():
    """One token with a huge target (an attention sink) that the map does not hold for: weighted by
    1/‖target‖², the fit still recovers the map the other tokens follow."""
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(8, 16, generator=g)
    x = torch.randn(400, 16, generator=g)
    y = x @ w_true.T
    y[0] = 5e3 * torch.randn(8, generator=g)  # the sink: huge, and off the map
    from edgeprune.prune.reconstruct import _weights

    eq_w, eq_u = NormalEquations.of(16, 8), NormalEquations.of(16, 8)
    eq_w.add(x, y, _weights(y))
    eq_u.add(x, y, torch.ones(400))
    zero = torch.zeros(8, 16)
    err_w = (eq_w.solve(zero, 1e-6) - w_true).norm() / w_true.norm()
    err_u = (eq_u.solve(zero, 1e-6) - w_true).norm() / w_true.norm()
    assert err_w < 0.05 < err_u


def test_normal_equations_error_equals_the_direct_sum():
    g = torch.Generator().manual_seed(1)
    x, y, w = torch.randn(50, 6, generator=g), torch.randn(50, 4, generator=g), torch.rand(50, generator=g)
    eq = NormalEquations.of(6, 4)
    eq.add(x[:20], y[:20], w[:20])
    eq.add(x[20:], y[20:], w[20:])
    weight = torch.randn(4, 6, generator=g)
    direct = float((w[:, None] * (x @ weight.T - y).pow(2)).sum())
    assert eq.error(weight) == pytest.approx(direct, rel=1e-5)


def test_a_cut_layer_order_without_tags_is_refused_in_one_line():
    teacher = build_model(deep_spec(), seed=0)
    student = copy.deepcopy(teacher)
    surgery.remove_layers(student, [1])
    with pytest.raises(PruneError, match="tag_sources"):
        reconstruct(student, teacher, CALIB, progress=False)
    with pytest.raises(PruneError, match="reconstruction 'fast'"):
        reconstruct(student, teacher, CALIB, mode="fast", progress=False)


def test_a_cut_hidden_width_is_left_as_cut_and_says_why():
    teacher = build_model(deep_spec(), seed=0)
    student = copy.deepcopy(teacher)
    tag_sources(student)
    surgery.remove_hidden_channels(student, range(8))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    rec = reconstruct(student, teacher, CALIB, progress=False)
    assert "hidden width" in rec["skipped"]
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_a_cut_hidden_width_is_refitted_towards_the_teachers_kept_channels():
    """Pruning-aware training knows which residual channels it kept: the targets are the
    teacher's states on them, and the refit beats the plain cut there on held-out tokens."""
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    kept = torch.arange(8, 64)
    surgery.remove_hidden_channels(student, range(8))
    for i in range(6):
        surgery.remove_mlp_channels(student, i, range(0, 128, 2))

    def err():
        hs, ht = last_hidden(student, HELD), last_hidden(teacher, HELD)[..., kept]
        return float(((hs - ht).pow(2).sum(-1) / ht.pow(2).sum(-1)).mean())

    plain = err()
    rec = reconstruct(student, teacher, CALIB, progress=False, hidden_channels=kept)
    assert "skipped" not in rec and err() < 0.95 * plain, (plain, err())
    with pytest.raises(PruneError, match="kept hidden channels"):
        reconstruct(student, teacher, CALIB, progress=False, hidden_channels=torch.arange(10))


def test_an_interrupted_search_resumes_after_its_last_finished_candidate(trained, tmp_path, monkeypatch):
    """Killed after two scored cuts, a rerun scores only the rest and picks what an uninterrupted
    search picks; a journal of another search (other tokens) is not mixed in. A shape's scores do
    not depend on the target, so a rerun at another target reuses the shapes both share."""
    import edgeprune.prune.methods.search as search

    base, calib = trained
    opts = dict(method="search", ratio=0.4, calib=calib, progress=False, steps=1, finalists=2, screen=2, refine=0)
    whole = prune_model(copy.deepcopy(base), **opts)
    real, calls = search.held_scores, []

    def counted(*a, **k):
        calls.append(1)
        if len(calls) == 3 and counted.die:
            raise KeyboardInterrupt
        return real(*a, **k)

    counted.die = True
    monkeypatch.setattr(search, "held_scores", counted)
    journal = tmp_path / "journal.json"
    with pytest.raises(KeyboardInterrupt):
        prune_model(copy.deepcopy(base), journal=str(journal), **opts)
    counted.die, calls[:] = False, []
    resumed = prune_model(copy.deepcopy(base), journal=str(journal), **opts)
    assert resumed.log["resumed_scores"] == 2
    total = len(whole.log["screened"]) + len(whole.log["finalists"])  # one held_scores per cut and per distillation
    assert len(calls) == total - 2
    assert resumed.log["chosen"] == whole.log["chosen"] and resumed.spec == whole.spec
    other = prune_model(copy.deepcopy(base), journal=str(journal), **{**opts, "calib": calib[:-2]})
    assert other.log["resumed_scores"] == 0  # other calibration tokens: other scores, none reused


def test_a_teacher_spilled_to_disk_gives_the_in_memory_teachers_fit_bit_for_bit(tmp_path):
    """prune_model keeps the uncut model on disk, a layer in memory at a time: the same fit as a copy
    held in memory, and cutting the model after spilling it leaves the file's weights as they were."""
    from edgeprune.prune.spilled_teacher import spill

    teacher = build_model(hetero_spec(), seed=0).eval()
    a, b = copy.deepcopy(teacher), copy.deepcopy(teacher)
    tag_sources(a), tag_sources(b)
    spilled = spill(b, tmp_path)
    for m in (a, b):
        surgery.remove_layers(m, [1])
        surgery.remove_mlp_channels(m, 0, range(0, 16, 2))
    reconstruct(a, teacher, CALIB[:8, :16], progress=False)
    reconstruct(b, spilled, CALIB[:8, :16], progress=False)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert torch.equal(spilled.model.layers[2].mlp.down_proj.weight, teacher.model.layers[2].mlp.down_proj.weight)


def test_calibration_scores_the_projections_without_gradients_for_the_embedding():
    """The embedding (a fifth of a small model) and the norms get no gradient; the Taylor scores read
    only the projections' gradients, and a lowered batch size gives the same gradients."""
    from edgeprune.prune import calibration

    model = build_model(hetero_spec(), seed=0)
    calibration.calibrate(model, CALIB[:8, :16], grads=True, activations=False, batch_size=8)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(n.endswith("_proj.weight") for n in grads)
    assert model.model.embed_tokens.weight.requires_grad  # restored after the pass
    calibration.calibrate(model, CALIB[:8, :16], grads=True, activations=False, batch_size=3)
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6)
    # the search's hidden-width saliency sums every parameter's gradient: it asks for them all
    calibration.calibrate(model, CALIB[:8, :16], grads=True, activations=False, all_grads=True)
    assert model.model.embed_tokens.weight.grad is not None and model.model.norm.weight.grad is not None
    # a vocabulary-wide batch is cut to fit the logits budget
    assert calibration.calibration_batch_size(8, 128, 128_256) == 1
    assert calibration.calibration_batch_size(8, 32, 256) == 8


@pytest.mark.parametrize("method", ["uniform", "search"])
def test_a_frozen_model_prunes_as_one_that_is_not_and_stays_frozen(method):
    """A model whose parameters were frozen (a distillation's teacher) is pruned as if they were
    not: the scores read the same gradients, and its requires_grad flags are as they were after."""
    opts = dict(method=method, ratio=0.3, calib=CALIB[:8, :16], progress=False, align=8)
    if method == "search":
        opts.update(steps=1, finalists=2, screen=1, refine=0)
    plain = prune_model(build_model(deep_spec(), seed=0), **opts)
    model = build_model(deep_spec(), seed=0).requires_grad_(False)
    frozen = prune_model(model, **opts)
    assert frozen.spec == plain.spec
    sa, sb = frozen.model.state_dict(), plain.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not any(p.requires_grad for p in frozen.model.parameters())


def test_the_parallel_walk_fits_each_layer_on_the_teachers_inputs():
    """sequential=False (the comparison the benchmark runs) feeds layer 1 the teacher's state after
    layer 0, not the reconstructed student's; the default walk feeds the student's own."""
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    CUTS["ffn channels"](student)
    seen = {}
    for sequential in (True, False):
        s = copy.deepcopy(student)
        o1 = s.model.layers[1].self_attn.o_proj
        got = []
        h = o1.register_forward_pre_hook(lambda m, a, got=got: got.append(a[0].detach().clone()))
        reconstruct(s, teacher, CALIB[:8], batch_size=8, progress=False, sequential=sequential)
        h.remove()
        seen[sequential] = got[0]
    orig = []
    h = teacher.model.layers[1].self_attn.o_proj.register_forward_pre_hook(lambda m, a: orig.append(a[0]))
    with torch.no_grad():
        teacher(CALIB[:8])
    h.remove()
    torch.testing.assert_close(seen[False], orig[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(seen[True], orig[0], atol=1e-4)
