"""The training loop: loss falls, grad accumulation is exact, schedules, sampler, KD loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgeprune.shape.model import build_model
from edgeprune.train.loop import Trainer, train
from edgeprune.train.losses import kd_loss, mixed_loss
from edgeprune.train.sampler import WindowSampler
from edgeprune.train.schedule import lr_at
from tests.conftest import hetero_spec, tiny_spec
from tests.train.helpers import pattern_data, small_cfg


def test_loss_falls_on_heterogeneous_model(tmp_path):
    data = pattern_data()
    res = train(build_model(hetero_spec(), seed=0), data, small_cfg(40), tmp_path / "run")
    losses = [r["loss"] for r in res.history if "loss" in r]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0  # a learnable stream: clearly learnt
    assert res.valid_loss is not None and res.valid_loss < math.log(256)  # better than uniform
    assert (tmp_path / "run" / "train_log.jsonl").is_file()


def test_grad_accumulation_equals_one_big_batch(tmp_path):
    """4 micro-batches of B give the gradient of one batch of 4B (same windows)."""
    data = pattern_data()
    a = Trainer(build_model(hetero_spec(), seed=1), data, small_cfg(1, micro_batch=2, grad_accum=4), tmp_path / "a")
    b = Trainer(build_model(hetero_spec(), seed=1), data, small_cfg(1, micro_batch=8, grad_accum=1), tmp_path / "b")
    wa, wb = a.sampler.next_batch(8), b.sampler.next_batch(8)
    assert torch.equal(wa, wb)
    pa, pb = a.forward_backward(wa), b.forward_backward(wb)
    torch.testing.assert_close(pa["loss"], pb["loss"], rtol=1e-5, atol=1e-6)
    grads = 0
    for (n, x), (_, y) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert x.grad is not None and float(x.grad.abs().max()) > 0, n
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-4, atol=1e-6, msg=n)
        grads += 1
    assert grads == len(list(a.model.parameters()))


def test_kd_loss_equals_hand_computed_kl():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 7, generator=g)
    t = torch.randn(2, 3, 7, generator=g)
    T = 2.0
    ps, pt = (s / T).softmax(-1), (t / T).softmax(-1)
    by_hand = (pt * (pt.log() - ps.log())).sum(-1).mean() * T * T  # mean over the 6 tokens
    torch.testing.assert_close(kd_loss(s, t, T), by_hand, rtol=1e-5, atol=1e-6)
    assert float(kd_loss(s, s, T)) == pytest.approx(0.0, abs=1e-6)
    y = torch.randint(0, 7, (2, 3), generator=g)
    mixed, parts = mixed_loss(s, y, t, alpha=0.25, temperature=T)
    ce = F.cross_entropy(s.reshape(-1, 7), y.reshape(-1))
    torch.testing.assert_close(mixed, 0.75 * ce + 0.25 * by_hand, rtol=1e-5, atol=1e-6)
    assert set(parts) == {"ce", "kd"}


def test_distillation_pulls_student_toward_teacher(tmp_path):
    data = pattern_data()
    teacher = train(build_model(tiny_spec(), seed=3), data, small_cfg(30), tmp_path / "t").model
    student = build_model(hetero_spec(), seed=4)
    x = data.valid_windows if hasattr(data, "valid_windows") else torch.from_numpy(
        np.asarray(data.valid[:33], dtype=np.int64))[None]

    def kl_to_teacher(m):
        with torch.no_grad():
            return float(kd_loss(m(x[:, :-1]).logits, teacher(x[:, :-1]).logits, 1.0))

    before = kl_to_teacher(student)
    res = train(student, data, small_cfg(20, kd_alpha=1.0, kd_temp=1.0), tmp_path / "s", teacher=teacher)
    assert "kd" in res.history[-1]
    assert kl_to_teacher(res.model) < 0.5 * before


def test_schedules():
    peak = 1.0
    cos = [lr_at(s, 100, peak, "cosine", warmup_frac=0.1, min_lr_ratio=0.1) for s in range(100)]
    assert cos[0] < cos[9] <= peak and max(cos) == pytest.approx(peak, rel=1e-6)
    assert cos[-1] == pytest.approx(0.1, abs=2e-3) and all(a >= b for a, b in zip(cos[10:], cos[11:]))
    wsd = [lr_at(s, 100, peak, "wsd", warmup_frac=0.1, decay_frac=0.2, min_lr_ratio=0.0) for s in range(100)]
    assert wsd[10:80] == [peak] * 70 and wsd[-1] == pytest.approx(0.0) and wsd[85] < peak


def test_sampler_is_resumable_and_ranks_are_disjoint():
    tokens = np.arange(10_001) % 50000
    s = WindowSampler(tokens, seq_len=10, seed=7)
    first = [s.next_batch(16) for _ in range(3)]
    state = s.state_dict()
    after = [s.next_batch(16) for _ in range(70)]  # crosses an epoch (1000 windows)
    r = WindowSampler(tokens, seq_len=10, seed=7)
    r.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(after, [r.next_batch(16) for _ in range(70)]))
    assert first[0].shape == (16, 11) and torch.equal(first[0][:, 1:], first[0][:, :-1] + 1)
    # two ranks of a world of 2 take disjoint halves of the same global batch
    r0, r1 = (WindowSampler(tokens, 10, seed=7, rank=k, world=2) for k in (0, 1))
    b0, b1 = r0.next_batch(8), r1.next_batch(8)
    starts0, starts1 = set(b0[:, 0].tolist()), set(b1[:, 0].tolist())
    assert not starts0 & starts1
    assert starts0 | starts1 == set(torch.cat(first)[:16, 0].tolist())
