"""A latency budget as a pruning target (DESIGN §4): "decode at least N tokens/s on device D at
quant Q" becomes a parameter count through the roofline (runtime_bench/roofline.py).

Decode is memory-bound: tokens/s ≈ η · bandwidth / bytes read per token, and the bytes are the
weights at their quantized size (all of them: the LM head streams the full embedding matrix for
a tied model) plus the KV cache. Pruning removes parameters of every kind of matrix roughly in
proportion to their bytes, so the budget maps to parameters by the model's own bytes per
parameter. The prediction for the pruned spec is reported so the user sees where it landed.
"""

from __future__ import annotations

from typing import Any

from edgeprune.errors import PruneError
from edgeprune.spec import ArchSpec

DEFAULT_GEN = 128  # llama-bench's tg128: average cached context n_gen / 2


def predicted_decode_tps(spec: ArchSpec, device: Any, qtype: str = "Q4_0", n_gen: int = DEFAULT_GEN) -> float:
    from edgeprune.runtime_bench.roofline import (cost_from_spec, decode_bytes_per_token, decode_context,
                                                   predict_decode_tps)

    cost = cost_from_spec(spec, qtype)
    return predict_decode_tps(decode_bytes_per_token(cost, decode_context(n_gen)), device.bandwidth_gbs,
                              device.efficiency)


def params_for_decode_budget(spec: ArchSpec, device: Any, tokens_per_s: float, qtype: str = "Q4_0",
                             n_gen: int = DEFAULT_GEN) -> int:
    """Parameters to keep so that `device` is predicted to decode at >= `tokens_per_s`."""
    from edgeprune.runtime_bench.roofline import cost_from_spec, decode_context

    if not tokens_per_s > 0:
        raise PruneError(f"decode budget {tokens_per_s} tokens/s must be > 0")
    now = predicted_decode_tps(spec, device, qtype, n_gen)
    if now >= tokens_per_s:
        raise PruneError(f"{device.name} is already predicted to decode this model at {now:.1f} tokens/s "
                         f"at {qtype} (budget {tokens_per_s}): nothing to prune for that target")
    cost = cost_from_spec(spec, qtype)
    budget_bytes = device.efficiency * device.bandwidth_gbs * 1e9 / tokens_per_s
    kv = cost.kv_bytes_per_ctx * decode_context(n_gen)
    bytes_per_param = cost.weight_bytes_read / spec.n_params
    target = int((budget_bytes - kv) / bytes_per_param)
    if target <= 0:
        raise PruneError(f"{tokens_per_s} tokens/s on {device.name} leaves no room for weights at {qtype} "
                         f"(the KV cache alone takes the budget)")
    return target
