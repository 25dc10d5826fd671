"""Pruning-aware training (EfficientLLM): saliency per group, cuts, target reached, reloadable."""

from __future__ import annotations

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.shape.model import build_model
from edgeprune.shape.units import group_sizes, taylor_saliency, unit_param_cost
from edgeprune.train.loop import train
from edgeprune.train.optim import make_optimizer, named_state, sliced_state
from edgeprune.train.prune_aware import PruneAwareConfig, choose_removals, cut_model
from edgeprune.train.config import TrainConfig
from tests.conftest import hetero_spec, tiny_spec
from tests.train.helpers import pattern_data, small_cfg


def test_unit_costs_match_spec_param_counts():
    spec = hetero_spec(family="qwen2", tie=False)
    checked = 0
    for group, n in group_sizes(spec).items():
        if n < 2:
            continue  # surgery never removes a layer's last unit
        model = build_model(spec, seed=0)
        keep = {group: torch.arange(1, n)}  # drop unit 0
        cut, _ = cut_model(model, keep)
        assert spec.n_params - cut.spec.n_params == unit_param_cost(spec, group), group
        checked += 1
    assert checked >= 8


def test_saliency_sums_w_times_g_over_each_unit():
    spec = tiny_spec()
    model = build_model(spec, seed=0)
    x = torch.randint(0, spec.vocab_size, (2, 17))
    model(x[:, :-1], labels=None).logits.float().logsumexp(-1).mean().backward()
    sal = taylor_saliency(dict(model.named_parameters()), spec)
    mlp = model.model.layers[1].mlp
    wg = lambda p: (p.detach() * p.grad).abs()  # noqa: E731
    ch = 5
    by_hand = wg(mlp.gate_proj.weight)[ch].sum() + wg(mlp.up_proj.weight)[ch].sum() + wg(mlp.down_proj.weight)[:, ch].sum()
    torch.testing.assert_close(sal["ffn.1"][ch], by_hand)
    att = model.model.layers[0].self_attn  # group 1 = kv head 1 + query heads 2, 3 (head_dim 16)
    by_hand = (wg(att.q_proj.weight)[32:64].sum() + wg(att.k_proj.weight)[16:32].sum()
               + wg(att.v_proj.weight)[16:32].sum() + wg(att.o_proj.weight)[:, 32:64].sum())
    torch.testing.assert_close(sal["kv.0"][1], by_hand)
    assert sal["hidden"].shape == (spec.hidden_size,) and bool((sal["hidden"] > 0).all())


def test_optimizer_moments_are_cut_with_the_weights(tmp_path):
    spec = hetero_spec()
    model = build_model(spec, seed=0)
    opt, names = make_optimizer(model, TrainConfig(tokens=1))
    x = torch.randint(0, spec.vocab_size, (2, 9))
    model(x, labels=x).loss.backward()
    opt.step()
    before = {k: v.clone() for k, v in named_state(opt, names).items()}
    old_gate = model.model.layers[0].mlp.gate_proj.weight.detach().clone()
    keep = {"ffn.0": torch.tensor([0, 2, 5] + list(range(10, 96))), "hidden": torch.arange(1, 64)}
    model, record = cut_model(model, keep)
    state = sliced_state(before, record)
    g = "model.layers.0.mlp.gate_proj.weight"
    expect = before[f"{g}/exp_avg"][keep["ffn.0"]][:, keep["hidden"]]
    torch.testing.assert_close(state[f"{g}/exp_avg"], expect)
    torch.testing.assert_close(model.model.layers[0].mlp.gate_proj.weight, old_gate[keep["ffn.0"]][:, keep["hidden"]])
    new_opt, new_names = make_optimizer(model, TrainConfig(tokens=1))
    from edgeprune.train.optim import load_named_state

    load_named_state(new_opt, new_names, state)
    model(x, labels=x).loss.backward()
    new_opt.step()  # shapes agree: AdamW accepts the cut moments


def test_choose_removals_reaches_goal_and_respects_floors():
    spec = tiny_spec()
    ema = {g: torch.rand(n, generator=torch.Generator().manual_seed(1)) for g, n in group_sizes(spec).items()}
    cfg = PruneAwareConfig(target_params=80_000)
    goal = spec.n_params - 10_000
    keep = choose_removals(spec, ema, goal, cfg)
    model, _ = cut_model(build_model(spec, seed=0), keep)
    assert goal * 0.99 <= model.spec.n_params <= goal * 1.01
    assert all(lay.n_kv_heads >= 1 and lay.ffn_dim >= 1 for lay in model.spec.layers)


def test_pruning_aware_training_reaches_target_and_reloads(tmp_path):
    spec = tiny_spec()
    target = int(spec.n_params * 0.7)
    cfg = PruneAwareConfig(target_params=target, start_frac=0.1, end_frac=0.6, events=4)
    res = train(build_model(spec, seed=0), pattern_data(), small_cfg(30, ckpt_every=10), tmp_path / "w",
                prune_aware=cfg)
    n = res.model.spec.n_params
    assert target * 0.98 <= n <= target * 1.02, (n, target)
    pruned = [r for r in res.history if "pruned" in r]
    assert 2 <= len(pruned) <= 4  # a few at a time, not in one cut
    losses = [r["loss"] for r in res.history if "loss" in r]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # it kept learning through the cuts
    out = save_checkpoint(res.model, tmp_path / "out")
    ck = load_checkpoint(out)
    assert ck.spec == res.model.spec and ck.spec.n_params == n
    x = torch.randint(0, spec.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(ck.model(x).logits, res.model.eval()(x).logits, rtol=1e-5, atol=1e-5)
    assert ck.model.generate(x, max_new_tokens=4).shape == (1, 16)


def test_pruning_aware_run_resumes_exactly_at_its_pruned_shape(tmp_path):
    spec = tiny_spec()
    cfg = PruneAwareConfig(target_params=int(spec.n_params * 0.7), start_frac=0.1, end_frac=0.8, events=4)
    data, tcfg = pattern_data(), small_cfg(20, ckpt_every=10, keep_ckpts=3)
    full = train(build_model(spec, seed=0), data, tcfg, tmp_path / "a", prune_aware=cfg)
    mid = tmp_path / "a" / "step-00000010"
    import json

    mid_spec = json.loads((mid / "state.json").read_text())["spec"]
    assert mid_spec != spec.to_dict()  # the checkpoint is already pruned ...
    resumed = train(build_model(spec, seed=0), data, tcfg, tmp_path / "b", prune_aware=cfg, resume=mid)
    assert resumed.model.spec == full.model.spec  # ... and later cuts (EMA restored) are the same
    for (n, x), (_, y) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=n)


def test_pruning_aware_training_keeps_every_width_aligned(tmp_path):
    """Issue 12: FFN widths, the hidden size and heads·head_dim stay multiples of the alignment
    through every removal event (an unaligned start is brought onto the grid first)."""
    from edgeprune.shape.spec import ArchSpec, LayerSpec
    from edgeprune.shape.units import misaligned_rows

    spec = ArchSpec(family="llama", vocab_size=256, hidden_size=80, head_dim=16,
                    layers=(LayerSpec(4, 2, 112), LayerSpec(4, 4, 96), LayerSpec(2, 1, 70)),
                    max_position_embeddings=128)
    ema = {g: torch.rand(n, generator=torch.Generator().manual_seed(3)) for g, n in group_sizes(spec).items()}
    for goal_frac in (0.9, 0.7, 0.5):
        cfg = PruneAwareConfig(target_params=int(spec.n_params * goal_frac), align=16, max_layer_frac=1.0,
                               max_hidden_frac=1.0)
        model, _ = cut_model(build_model(spec, seed=0), choose_removals(spec, ema, cfg.target_params, cfg))
        assert misaligned_rows(model.spec, 16) == [], (goal_frac, model.spec.layers)
        assert abs(model.spec.n_params - cfg.target_params) <= 0.1 * cfg.target_params
    cfg = PruneAwareConfig(target_params=int(spec.n_params * 0.6), start_frac=0.1, end_frac=0.6, events=4, align=16)
    res = train(build_model(spec, seed=0), pattern_data(), small_cfg(24, ckpt_every=100), tmp_path / "w",
                prune_aware=cfg)
    assert misaligned_rows(res.model.spec, 16) == []
    assert res.model.spec.hidden_size < spec.hidden_size or any(
        a.ffn_dim < b.ffn_dim for a, b in zip(res.model.spec.layers, spec.layers))


def _last_hidden(model, ids: torch.Tensor) -> torch.Tensor:
    """The residual stream after the last layer (what the final norm reads), (B, T, hidden)."""
    seen = {}
    handle = model.model.norm.register_forward_pre_hook(lambda m, args: seen.__setitem__("h", args[0]))
    try:
        with torch.no_grad():
            model.eval()(ids)
    finally:
        handle.remove()
    return seen["h"]


def _run_to_first_cut(tmp_path, name, reconstruct, axis):
    """A KD pruning-aware run from a copy of the teacher; the student right after its first surgery
    (a copy), the teacher channels it kept, the run's history, the teacher and the data."""
    import copy

    spec = tiny_spec()
    data = pattern_data()
    # a teacher that has learned the text, as the original model has
    teacher = train(build_model(spec, seed=0), data, small_cfg(20), tmp_path / f"{name}-teacher").model.eval()
    # "hidden": FFN and attention at their floors, so every cut is of the residual stream itself
    floors = dict(min_ffn=spec.layers[0].ffn_dim, min_kv=spec.layers[0].n_kv_heads) if axis == "hidden" else {}
    cfg = PruneAwareConfig(target_params=int(spec.n_params * 0.7), start_frac=0.3, end_frac=0.6, events=2,
                           reconstruct=reconstruct, **floors)
    snap = {}

    def at_cut(trainer):
        if trainer.step == trainer.events[0]:
            snap["model"] = copy.deepcopy(trainer.model)
            snap["kept"] = trainer.hidden_kept

    res = train(copy.deepcopy(teacher), data, small_cfg(12, kd_alpha=0.5, seed=3), tmp_path / name, teacher=teacher,
                prune_aware=cfg, on_step=at_cut)
    return snap["model"], snap["kept"], res, teacher, data


@pytest.mark.parametrize("axis", ["widths", "hidden"])
def test_pruning_aware_surgery_is_reconstructed_towards_the_teacher(tmp_path, monkeypatch, axis):
    """With a KD teacher, each surgery is followed by prune's reconstruction on training windows:
    right after the first cut the student's last hidden state is closer to the teacher's on
    held-out tokens than the plain cut of the same run (switch off, same seed), and only the
    refitted consumers (o_proj, down_proj) differ. A cut of the hidden width is fitted to the
    teacher's channels it kept."""
    import edgeprune.prune.reconstruct as rec_mod
    from edgeprune.train.sampler import fixed_windows

    calls = []
    real = rec_mod.reconstruct_model
    monkeypatch.setattr(rec_mod, "reconstruct_model", lambda *a, **k: calls.append(1) or real(*a, **k))
    on, kept, res_on, teacher, data = _run_to_first_cut(tmp_path, "on", "layerwise", axis)
    assert len(calls) == 2  # one refit per surgery
    off, _, res_off, _, _ = _run_to_first_cut(tmp_path, "off", "none", axis)
    assert len(calls) == 2  # switched off, the surgery is the plain cut: no refit runs
    assert on.spec == off.spec and on.spec.n_params < teacher.spec.n_params
    assert (on.spec.hidden_size < teacher.spec.hidden_size) == (axis == "hidden")
    assert len(kept) == on.spec.hidden_size
    refitted = 0
    for (n, a), (_, b) in zip(on.named_parameters(), off.named_parameters()):
        if n.endswith(("o_proj.weight", "down_proj.weight")):
            refitted += not torch.equal(a, b)
        else:
            assert torch.equal(a, b), n  # the two runs are identical up to the refit
    assert refitted >= 2
    held = fixed_windows(data.valid, 32, 8)[:, :-1]  # (8, 32) held-out tokens, never calibrated on
    h_t = _last_hidden(teacher, held)[..., kept]

    def rel_err(model):
        return float(((_last_hidden(model, held) - h_t).pow(2).sum(-1) / h_t.pow(2).sum(-1)).mean())

    assert rel_err(on) < 0.9 * rel_err(off), (rel_err(on), rel_err(off))
    # the record: each surgery's refit in the log, nothing when switched off
    recs = [r["reconstruction"] for r in res_on.history if "reconstruction" in r]
    assert len(recs) == len([r for r in res_on.history if "pruned" in r]) == 2
    assert recs[0]["mode"] == "layerwise" and recs[0]["seconds"] >= 0
    assert recs[0]["tokens"] == 32 * 32  # RECONSTRUCT_WINDOWS windows of seq_len
    for part in ("o_proj_error", "down_proj_error"):
        before, after = recs[0][part]
        assert after < before
    assert not any("reconstruction" in r for r in res_off.history)


def test_a_reconstructing_run_resumes_exactly_with_its_kept_hidden_channels(tmp_path):
    """The teacher channels a cut hidden width kept are in the checkpoint: a run resumed between
    surgeries refits its later cuts as the uninterrupted run does."""
    spec = tiny_spec()
    data = pattern_data()
    teacher = train(build_model(spec, seed=0), data, small_cfg(20), tmp_path / "teacher").model.eval()
    cfg = PruneAwareConfig(target_params=int(spec.n_params * 0.7), start_frac=0.1, end_frac=0.8, events=4,
                           min_ffn=spec.layers[0].ffn_dim, min_kv=spec.layers[0].n_kv_heads)
    tcfg = small_cfg(20, ckpt_every=10, keep_ckpts=3, kd_alpha=0.5)
    full = train(build_model(spec, seed=0), data, tcfg, tmp_path / "a", teacher=teacher, prune_aware=cfg)
    refits = [r for r in full.history if "reconstruction" in r]
    assert [r["step"] for r in refits if r["step"] > 10] and all("skipped" not in r["reconstruction"] for r in refits)
    mid = tmp_path / "a" / "step-00000010"
    resumed = train(build_model(spec, seed=0), data, tcfg, tmp_path / "b", teacher=teacher, prune_aware=cfg,
                    resume=mid)
    assert resumed.model.spec == full.model.spec and full.model.spec.hidden_size < spec.hidden_size
    for (n, x), (_, y) in zip(full.model.named_parameters(), resumed.model.named_parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=n)
