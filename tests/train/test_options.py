"""Speed/memory options must not change the numbers (CPU), and the CUDA path (GPU-only)."""

from __future__ import annotations

import pytest
import torch

from edgeprune.shape.model import build_model
from edgeprune.train.loop import Trainer
from tests.conftest import hetero_spec
from tests.train.helpers import pattern_data, small_cfg


def _grads(tmp_path, name, **kw):
    t = Trainer(build_model(hetero_spec(), seed=2), pattern_data(), small_cfg(1, **kw), tmp_path / name)
    t.forward_backward(t.sampler.next_batch(4))
    return {n: p.grad.clone() for n, p in t.model.named_parameters()}


def test_activation_checkpointing_gives_the_same_gradients(tmp_path):
    a = _grads(tmp_path, "a")
    b = _grads(tmp_path, "b", activation_checkpointing=True)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-7, msg=n)


@pytest.mark.gpu
def test_cuda_bf16_fused_compiled_training_learns(tmp_path):
    from edgeprune.train.distributed import DistEnv

    env = DistEnv(device=torch.device("cuda"))
    t = Trainer(build_model(hetero_spec(), seed=0), pattern_data(), small_cfg(30, compile=True), tmp_path / "g",
                env=env)
    assert t.use_bf16 and t.optimizer.defaults.get("fused")
    res = t.fit()
    losses = [r["loss"] for r in res.history if "loss" in r]
    assert losses[-1] < losses[0] - 1.0
    assert "mfu" in res.history[-1] or t.peak is None
