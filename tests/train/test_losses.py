"""The chunked, fused distillation loss equals the reference CE / KL (value and gradient) for
every α, temperature and chunk size, including a teacher with a padded vocabulary."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edgeprune.train.losses import distill_loss, kd_loss, lm_loss, mixed_loss


def _inputs(b=3, t=7, v=50, v_teacher=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = (3 * torch.randn(b, t, v, generator=g, dtype=torch.float64)).requires_grad_(True)
    te = 3 * torch.randn(b, t, v_teacher, generator=g, dtype=torch.float64)
    y = torch.randint(0, v, (b, t), generator=g)
    return s, te, y


def _reference(s, te, y, alpha, temp):
    ce = F.cross_entropy(s.flatten(0, 1), y.flatten())
    v = s.shape[-1]
    ls = F.log_softmax(s.flatten(0, 1) / temp, -1)
    lt = F.log_softmax(te[..., :v].flatten(0, 1) / temp, -1)
    kd = (lt.exp() * (lt - ls)).sum(-1).mean() * temp ** 2
    return (1 - alpha) * ce + alpha * kd, ce, kd


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("temp", [1.0, 2.0])
@pytest.mark.parametrize("chunk", [1, 5, 4096])
def test_distill_loss_matches_reference_value_and_gradient(alpha, temp, chunk):
    s, te, y = _inputs(v_teacher=64)  # teacher with 14 padded vocabulary rows
    loss, ce, kd = distill_loss(s, y, te, alpha, temp, chunk=chunk)
    ref, ref_ce, ref_kd = _reference(s, te, y, alpha, temp)
    torch.testing.assert_close(loss, ref.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ce, ref_ce.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kd, ref_kd.float(), rtol=1e-5, atol=1e-6)
    (g,) = torch.autograd.grad(3.0 * loss, s)  # a non-unit upstream gradient is applied
    (g_ref,) = torch.autograd.grad(3.0 * ref, s)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-7)


def test_kd_part_equals_the_reference_kd_loss():
    s, te, y = _inputs(seed=3)
    _, _, kd = distill_loss(s.float(), y, te.float(), 1.0, 2.0, chunk=4)
    torch.testing.assert_close(kd, kd_loss(s.float(), te.float(), 2.0), rtol=1e-5, atol=1e-6)


def test_bf16_logits_get_a_bf16_gradient_close_to_fp32():
    s, te, y = _inputs(seed=1)
    s16 = s.detach().to(torch.bfloat16).requires_grad_(True)
    loss, _, _ = distill_loss(s16, y, te.to(torch.bfloat16), 0.5, 2.0, chunk=8)
    loss.backward()
    assert s16.grad.dtype == torch.bfloat16
    ref, _, _ = _reference(s16.detach().double().requires_grad_(True), te.to(torch.bfloat16).double(), y, 0.5, 2.0)
    assert abs(loss.detach().item() - ref.detach().item()) < 1e-3 * ref.detach().item()


def test_mixed_loss_without_teacher_is_plain_ce():
    s, _, y = _inputs()
    loss, parts = mixed_loss(s, y, None, 0.5, 2.0)
    torch.testing.assert_close(loss, lm_loss(s, y))
    assert set(parts) == {"ce"}
