"""The one speed prediction of a model on a device: `predict(spec_or_file, device, quant)`.

Prune's speed targets and summary, bench (beside each measurement and in --predict-only), ship
(for devices it cannot reach) and compare all show this: the roofline figures (bandwidth bound,
η·bandwidth / bytes per token, prefill compute bound) and the device's latency model (pp512 /
tg128 from its measured table, else the roofline plus default overheads, with its source and
any caveat). A file is costed by its real tensors and type mix; a spec by the GGUF type mix
llama.cpp writes at `quant` (edgeprune/shape/gguf_types.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, Union

from edgeprune.devices import roofline as rl
from edgeprune.devices.latency_model import N_GEN, N_PROMPT, latency_model_for
from edgeprune.shape.gguf_types import gguf_weight_bytes
from edgeprune.shape.quant_presets import GGUF_QUANTS
from edgeprune.shape.spec import ArchSpec


def file_cost(path: Path, spec: Optional[ArchSpec] = None) -> rl.ModelCost:
    """Roofline cost of a .gguf / .onnx file: real tensor sizes from the file; a spec (given, or
    the one the file carries) adds the attention FLOPs an ONNX graph does not reveal."""
    from edgeprune.files.spec_of import spec_or_none

    cost = rl.cost_from_file(path)
    spec = spec if spec is not None else spec_or_none(path)
    if spec is not None and cost.attn_flops_per_ctx == 0:
        cost = dataclasses.replace(cost, attn_flops_per_ctx=rl.cost_from_spec(spec).attn_flops_per_ctx)
    return cost


def gguf_head_type(path: Path) -> Optional[str]:
    """The GGML type of a GGUF's output head (output.weight, else the tied token_embd.weight)."""
    from gguf.constants import MODEL_TENSOR, TENSOR_NAMES

    from edgeprune.files.gguf_reader import tensor_report

    types = tensor_report(path)["tensor_types"]
    for role in (MODEL_TENSOR.OUTPUT, MODEL_TENSOR.TOKEN_EMBD):
        t = types.get(f"{TENSOR_NAMES[role]}.weight")
        if t is not None:
            return t
    return None


def predict(model: Union[ArchSpec, str, Path], device: Any, quant: Optional[str] = None, *,
            spec: Optional[ArchSpec] = None, depth: int = 0, n_prompt: int = N_PROMPT, n_gen: int = N_GEN,
            measured_tg_tps: Optional[float] = None, head_type: Optional[str] = None) -> dict[str, Any]:
    """Predicted speed of `model` (an ArchSpec, or a .gguf / .onnx file) on `device` (a profile or
    its name) at `quant` (a spec's GGUF type, Q4_0 by default; a file's own type when omitted).

    Returns the roofline's keys (tg_pred_tps, tg_bound_tps, pp_bound_tps, bytes_per_token, ...,
    efficiency_fitted when `measured_tg_tps` is given) and, for GGUF types, the latency model's
    model_tg_tps / model_pp_tps after `depth` cached tokens, model_source and model_caveat. ONNX
    files get the roofline only: the latency model is calibrated on llama.cpp. `head_type` stores a
    spec's output head at that type (HEAD_TYPES); a GGUF file's head is priced at the type it holds."""
    from edgeprune.devices import load_device
    from edgeprune.files.spec_of import quant_of, spec_or_none

    dev = load_device(device) if isinstance(device, str) else device
    if isinstance(model, ArchSpec):
        spec, q, gguf = model, (quant or "Q4_0").upper(), True
        cost = rl.cost_from_spec(spec, q)
    else:
        path = Path(model)
        spec = spec if spec is not None else spec_or_none(path)
        q, gguf = quant or quant_of(path), path.suffix == ".gguf"
        cost = file_cost(path, spec)
        if gguf:
            head_type = gguf_head_type(path)
    out = rl.roofline(cost, dev.bandwidth_gbs, dev.efficiency, dev.peak_gflops, n_prompt, n_gen,
                      measured_tg_tps=measured_tg_tps)
    if gguf and spec is not None and q != "unknown":
        lat = latency_model_for(dev)
        out.update(lat.predict(spec, q, head_type))
        if depth:
            out.update(model_tg_tps=lat.decode_tps(spec, q, depth, head_type), model_pp_tps=lat.prefill_tps(spec, q, depth))
        out["depth"] = depth
        out["head_type"] = gguf_weight_bytes(spec, q, head_type)["head_type"] if q in GGUF_QUANTS else head_type
    return out


__all__ = ["predict", "file_cost", "gguf_head_type"]
