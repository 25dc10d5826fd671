"""The PyTorch reference every export is compared with (export/fidelity.py): float32 logits that
leave the caller's model as it was."""

from __future__ import annotations

import numpy as np
import torch

from edgeprune.export.fidelity import float32_model, reference_logits
from edgeprune.shape.model import build_model
from tests.conftest import hetero_spec


def test_reference_logits_leave_the_callers_model_unchanged():
    """A bf16 model in train mode stays bf16 and in train mode (the export used to cast it in
    place); its logits are those of its float32 copy."""
    model = build_model(hetero_spec("llama", tie=False), seed=3).to(torch.bfloat16).train()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = np.arange(12) % model.spec.vocab_size
    ref = reference_logits(model, tokens)
    assert model.training and all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    want = model.float().eval()(torch.as_tensor(tokens)[None]).logits[0].double().detach().numpy()
    assert ref.dtype == np.float64 and ref.shape == (12, model.spec.vocab_size)
    np.testing.assert_array_equal(ref, want)


def test_float32_model_copies_only_when_it_must():
    model = build_model(hetero_spec("qwen2", tie=True), seed=3).train()
    assert float32_model(model) is model and float32_model(model, "cpu") is model
    reference_logits(model, [1, 2, 3])
    assert model.training  # its mode is given back too
    half = model.to(torch.float16)  # Module.to casts in place: `half` is `model`
    copy = float32_model(half)
    assert copy is not half and next(copy.parameters()).dtype == torch.float32
    assert next(half.parameters()).dtype == torch.float16
