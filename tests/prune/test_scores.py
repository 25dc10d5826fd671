"""Scores on hand-computed tensors; calibration statistics against direct computation."""

import torch

from edgeprune.shape.model import build_model
from edgeprune.prune import scores as S
from edgeprune.prune.calibration import calibrate
from edgeprune.prune.adapt_schedule import solve_delta
from tests.conftest import tiny_spec


def test_magnitude_l1_l2_over_coupled_weights():
    w = torch.tensor([[1.0, -2.0], [3.0, 0.0], [0.0, 4.0], [-1.0, 1.0]])  # units of 2 rows
    o = torch.tensor([[1.0, 1.0, 0.0, 2.0]])  # units are 2 columns each
    l1 = S.magnitude([(w, 0), (o, 1)], unit_size=2)
    assert torch.equal(l1, torch.tensor([1 + 2 + 3 + 0 + 1 + 1, 0 + 4 + 1 + 1 + 0 + 2.0]))
    l2 = S.magnitude([(w, 0)], unit_size=2, p=2)
    torch.testing.assert_close(l2, torch.tensor([14.0 ** 0.5, 18.0 ** 0.5]))


def test_taylor_is_sum_of_abs_weight_times_grad():
    w = torch.tensor([[1.0, 2.0], [-3.0, 4.0]])
    g = torch.tensor([[0.5, -1.0], [1.0, 0.25]])
    # rows as units: |0.5|+|-2| = 2.5 ; |-3|+|1| = 4
    assert torch.equal(S.taylor([(w, g, 0)], 1), torch.tensor([2.5, 4.0]))
    # columns as units: 0.5+3 = 3.5 ; 2+1 = 3
    assert torch.equal(S.taylor([(w, g, 1)], 1), torch.tensor([3.5, 3.0]))


def test_wanda_and_fluctuation_per_input_channel():
    w = torch.tensor([[1.0, -2.0], [3.0, 4.0]])  # (out, in)
    assert torch.equal(S.wanda(w, torch.tensor([1.0, 2.0])), torch.tensor([4.0, 12.0]))
    # var_j * ||W[:, j]||^2 : 1 * (1 + 9), 2 * (4 + 16)
    assert torch.equal(S.fluctuation(w, torch.tensor([1.0, 2.0])), torch.tensor([10.0, 40.0]))
    assert torch.equal(S.fluctuation(w, torch.tensor([1.0, 2.0]), unit_size=2), torch.tensor([50.0]))


def test_standardise_and_centre_scale():
    torch.testing.assert_close(S.standardise(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([-1.0, 0.0, 1.0]))
    torch.testing.assert_close(S.centre_scale(torch.tensor([1.0, 2.0, 4.0])), torch.tensor([-0.8, -0.2, 1.0]))
    assert torch.equal(S.centre_scale(torch.tensor([3.0, 3.0])), torch.zeros(2))


def test_layer_importance_is_negative_mean_cosine():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert float(S.layer_importance(x, 3 * x)) == -1.0  # unchanged direction: unimportant
    y = torch.tensor([[0.0, 1.0], [0.0, 5.0]])  # cos 0 then cos 1 -> mean 0.5
    assert abs(float(S.layer_importance(x, y)) + 0.5) < 1e-6


def test_calibration_stats_match_direct_computation():
    torch.manual_seed(0)
    model = build_model(tiny_spec(), seed=1)
    calib = torch.randint(0, 256, (3, 10))
    cal = calibrate(model, calib, grads=True, batch_size=2)
    # direct: capture down_proj input of layer 1 and the layer's in/out
    seen = {}
    blk = model.model.layers[1]
    h1 = blk.mlp.down_proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    h2 = blk.register_forward_hook(lambda m, a, o: seen.__setitem__("io", (a[0], o[0])))
    with torch.no_grad():
        out = model(calib, labels=calib)
    h1.remove(), h2.remove()
    x = seen["x"].reshape(-1, seen["x"].shape[-1]).double()
    torch.testing.assert_close(cal.down_in[1].var, x.var(0, unbiased=False).float(), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(cal.down_in[1].norm, x.norm(dim=0).float(), rtol=1e-5, atol=1e-6)
    expect = S.layer_importance(*seen["io"])
    assert abs(float(cal.layer_importance[1]) - float(expect)) < 1e-5
    assert abs(cal.loss - float(out.loss)) < 1e-4
    # grads of the mean loss over all samples, independent of batch size
    g2 = model.model.layers[0].mlp.up_proj.weight.grad.clone()
    calibrate(model, calib, grads=True, batch_size=3)
    torch.testing.assert_close(model.model.layers[0].mlp.up_proj.weight.grad, g2, rtol=1e-4, atol=1e-8)


def test_solve_delta_meets_goal_and_skews_by_importance():
    s = torch.zeros(4)
    imp = torch.tensor([-1.0, 1.0, 0.0, 0.0])
    sizes = torch.tensor([10.0, 10.0, 20.0, 20.0])
    new = solve_delta(s, imp, sizes, goal=12.0, a=0.1)
    assert abs(float((new * sizes).sum()) - 12.0) < 1e-4
    assert new[0] > new[2] > new[1]  # least important layer gets the most sparsity
    torch.testing.assert_close(new[0] - new[2], torch.tensor(0.1))
