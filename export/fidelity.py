"""How close an exported model is to PyTorch: the figures every export reports (DESIGN §6).

Pure functions over logits; each runtime's validator produces `got` logits for the same tokens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgeprune.base.errors import FidelityError


def float32_model(model: Any, device: Any = None) -> Any:
    """`model` itself when all its floating tensors are float32 (and on `device`, if given),
    else a float32 copy (on `device`): exports compare against float32 PyTorch without casting
    or moving the caller's model (`Module.float()` and `.to()` work in place)."""
    import copy

    import torch

    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    same = all(t.dtype == torch.float32 and (device is None or t.device == torch.device(device)) for t in tensors)
    return model if same else copy.deepcopy(model).to(device=device, dtype=torch.float32)


def reference_logits(model: Any, tokens: Any) -> np.ndarray:
    """PyTorch logits (T, V) as float64 for one 1-D token sequence (tensor or array), from the
    model in float32 and eval mode: the reference every runtime's export is compared with. The
    caller's model keeps its dtype, device and train/eval mode."""
    import torch

    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64)).reshape(1, -1)
    m, was_training = float32_model(model), model.training
    try:
        with torch.no_grad():
            return m.eval()(ids.to(m.device)).logits[0].double().cpu().numpy()
    finally:
        model.train(was_training)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def perplexity_from_logits(logits: np.ndarray, tokens: np.ndarray) -> float:
    """exp(mean NLL) of tokens[1:] under logits[:-1]; logits (T, V), tokens (T,)."""
    logp = _log_softmax(logits[:-1])  # (T-1, V)
    nll = -logp[np.arange(len(tokens) - 1), tokens[1:]]
    return float(math.exp(nll.mean()))


def logit_fidelity(ref: Any, got: Any, tokens: Any) -> dict[str, float]:
    """Compare `got` logits with the PyTorch reference `ref` on the same `tokens`.

    max_abs_diff: max |Δlogit|; rel_diff: that divided by the reference's logit scale
    (max |ref|), the figure tolerances are stated in; top1_agreement: share of positions
    whose argmax agrees; ppl_ref / ppl / ppl_delta: perplexity of tokens[1:].
    """
    ref = np.asarray(ref, dtype=np.float64).reshape(-1, np.shape(ref)[-1])  # (T, V)
    got = np.asarray(got, dtype=np.float64).reshape(-1, np.shape(got)[-1])
    tokens = np.asarray(tokens).reshape(-1)
    if ref.shape != got.shape:
        raise FidelityError(f"logit shapes differ: reference {ref.shape} vs export {got.shape}")
    diff = float(np.abs(ref - got).max())
    scale = float(np.abs(ref).max()) or 1.0
    ppl_ref = perplexity_from_logits(ref, tokens)
    ppl = perplexity_from_logits(got, tokens)
    return {
        "max_abs_diff": diff,
        "rel_diff": diff / scale,
        "top1_agreement": float((ref.argmax(-1) == got.argmax(-1)).mean()),
        "ppl_ref": ppl_ref,
        "ppl": ppl,
        "ppl_delta": ppl - ppl_ref,
    }


def check_tolerance(fid: dict[str, float], rel_tol: float, what: str) -> None:
    """Raise FidelityError naming the artifact and figures when rel_diff exceeds `rel_tol`."""
    if not fid["rel_diff"] <= rel_tol:  # NaN fails too
        raise FidelityError(
            f"{what}: logits differ from PyTorch by {fid['max_abs_diff']:.3g} "
            f"(relative {fid['rel_diff']:.3g} > tolerance {rel_tol:g}); top-1 agreement "
            f"{fid['top1_agreement']:.3f}, perplexity {fid['ppl']:.4g} vs {fid['ppl_ref']:.4g}"
        )
