"""Roofline predictions beside every measurement (DESIGN §7). Pure functions.

Decode (one token at a time) is memory-bound on every CPU we target: each generated token streams
every weight matrix once plus the KV cache it attends over, so

    decode tokens/s  ≈  η · bandwidth / bytes_per_token
    bytes_per_token  =  weight bytes read per token + kv_bytes_per_ctx_token · context

*Weight bytes read per token* are all tensors at their real stored (quantized) sizes, the LM head
included; the token embedding counts only when it is also the LM head (tied) — an untied
embedding is a one-row lookup, not a full read. From a GGUF file they are the file's tensor sizes
(llama.cpp keeps some tensors, e.g. the output head, at higher precision than the file's nominal
type, so the file is the truth); without a file, the same type mix predicted from the spec
(edgeprune/shape/gguf_types.py), the bytes the latency model reads too, so a prediction's roofline
and latency model never cost one spec from two different weights.
*Context*: llama-bench's tg test decodes from an empty cache, so on average it attends over
n_gen / 2 cached tokens; the KV cache is f16 in llama.cpp (2 B per element) and the export's dtype
in ONNX (f32: 4 B).
*η* (efficiency) is the fraction of theoretical bandwidth decode reaches — a per-device prior in
the profile (ARM SBC/phones 0.4–0.6, x86/Apple 0.6–0.8); on `local` it is fitted from the run:
η = measured tokens/s · bytes_per_token / bandwidth.

Prefill processes n_prompt tokens per batch, so weights are reused across the batch and it is
compute-bound: prefill tokens/s ≤ peak FLOP/s / FLOPs per token (2 per weight + 4·heads·head_dim
per attended token, at the average context n_prompt / 2). This is an upper bound, not an estimate
(quantized GEMM kernels reach a fraction of the FP32 FMA peak).

Known failure: a model whose weights fit in the last-level cache (a few MB: the test fixtures,
anything under ~10M parameters at 4 bits) is not memory-bound — decode then runs *above* the
bandwidth roofline (fitted η > 1) and is dominated by per-token overheads (thread sync, sampling,
Python) instead. η is only meaningful for models far larger than the caches (>= ~100M params).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional


@dataclass(frozen=True)
class ModelCost:
    """What one token costs a model, independent of the device."""

    weight_bytes_read: int  # weight bytes streamed per decoded token (see module doc)
    kv_bytes_per_ctx: int  # KV-cache bytes per cached token, all layers (K and V)
    matmul_flops: int  # 2 · weights multiplied per token (embedding lookup excluded, head included)
    attn_flops_per_ctx: int  # 4 · n_heads · head_dim summed over layers: FLOPs per attended token
    source: str  # "gguf" | "onnx" | "spec:<qtype>": where the byte counts come from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----- the formulas ------------------------------------------------------------------------------

def decode_bytes_per_token(cost: ModelCost, context: float) -> float:
    """Bytes one decode step reads: weights + KV cache over `context` cached tokens."""
    return cost.weight_bytes_read + cost.kv_bytes_per_ctx * context


def predict_decode_tps(bytes_per_token: float, bandwidth_gbs: float, efficiency: float) -> float:
    """Memory-bound decode rate: η · bandwidth / bytes per token (bandwidth in GB/s = 1e9 B/s)."""
    return efficiency * bandwidth_gbs * 1e9 / bytes_per_token


def fit_efficiency(measured_tps: float, bytes_per_token: float, bandwidth_gbs: float) -> float:
    """The η that makes the roofline match a measurement: measured · bytes / bandwidth."""
    return measured_tps * bytes_per_token / (bandwidth_gbs * 1e9)


def prefill_flops_per_token(cost: ModelCost, context: float) -> float:
    return cost.matmul_flops + cost.attn_flops_per_ctx * context


def predict_prefill_tps(flops_per_token: float, peak_gflops: float) -> float:
    """Compute-bound upper limit on prefill tokens/s: peak FLOP/s / FLOPs per token."""
    return peak_gflops * 1e9 / flops_per_token


def decode_context(n_gen: int) -> float:
    """Average cached tokens during llama-bench's tg test (decode from an empty cache)."""
    return n_gen / 2


def prefill_context(n_prompt: int) -> float:
    """Average keys each prompt token attends over in a causal prefill of n_prompt tokens."""
    return n_prompt / 2


def roofline(cost: ModelCost, bandwidth_gbs: float, efficiency: float, peak_gflops: float,
             n_prompt: int, n_gen: int, measured_tg_tps: Optional[float] = None) -> dict[str, Any]:
    """Every roofline figure for one model on one device, as stored in a bench record."""
    ctx = decode_context(n_gen)
    bpt = decode_bytes_per_token(cost, ctx)
    out: dict[str, Any] = {
        "source": cost.source,
        "weight_bytes_read": cost.weight_bytes_read,
        "kv_bytes_per_ctx": cost.kv_bytes_per_ctx,
        "decode_context": ctx,
        "bytes_per_token": bpt,
        "bandwidth_gbs": bandwidth_gbs,
        "efficiency_prior": efficiency,
        "tg_bound_tps": predict_decode_tps(bpt, bandwidth_gbs, 1.0),
        "tg_pred_tps": predict_decode_tps(bpt, bandwidth_gbs, efficiency),
        "peak_gflops": peak_gflops,
        "pp_bound_tps": (predict_prefill_tps(prefill_flops_per_token(cost, prefill_context(n_prompt)),
                                             peak_gflops) if n_prompt > 0 else None),
        "efficiency_fitted": None,
    }
    if measured_tg_tps:
        out["efficiency_fitted"] = fit_efficiency(measured_tg_tps, bpt, bandwidth_gbs)
    return out


# ----- model costs from a spec or a file ---------------------------------------------------------

def cost_from_spec(spec: Any, qtype: str = "Q4_0", kv_bytes_per_element: int = 2) -> ModelCost:
    """Cost of an ArchSpec in a GGUF llama.cpp quantizes to ftype `qtype`: each matrix at the type
    llama.cpp gives it (the head at Q6_K / Q8_0, row fallbacks), 1-D tensors at F32; an untied
    embedding is a row lookup, not a streamed matrix."""
    from edgeprune.shape.gguf_types import decode_weight_bytes

    weights = decode_weight_bytes(spec, qtype)
    attn = sum(4 * lay.n_heads * spec.head_dim for lay in spec.layers)
    return ModelCost(weight_bytes_read=int(weights),
                     kv_bytes_per_ctx=spec.kv_cache_bytes_per_token(kv_bytes_per_element),
                     matmul_flops=spec.flops_per_token(0), attn_flops_per_ctx=attn,
                     source=f"spec:{qtype.upper()}")


def cost_from_gguf(path: Path, kv_bytes_per_element: int = 2) -> ModelCost:
    """Cost from a GGUF file's real tensor sizes (GGUF tensor names: gguf.constants.TENSOR_NAMES)."""
    from gguf.constants import MODEL_TENSOR, TENSOR_NAMES

    from edgeprune.files.gguf_reader import open_gguf

    embd, head = TENSOR_NAMES[MODEL_TENSOR.TOKEN_EMBD], TENSOR_NAMES[MODEL_TENSOR.OUTPUT]
    q_suffix = TENSOR_NAMES[MODEL_TENSOR.ATTN_Q].split(".", 2)[-1]  # "attn_q"
    k_suffix = TENSOR_NAMES[MODEL_TENSOR.ATTN_K].split(".", 2)[-1]  # "attn_k"
    reader = open_gguf(path)  # every size bounded by the file before gguf's reader allocates
    by_name = {t.name: t for t in reader.tensors}
    total = sum(int(t.n_bytes) for t in reader.tensors)
    tied = f"{head}.weight" not in by_name
    emb = by_name.get(f"{embd}.weight")
    weights = total if tied or emb is None else total - int(emb.n_bytes)
    matmul = kv = attn = 0
    for name, t in by_name.items():
        shape = [int(d) for d in t.shape]  # GGUF order: (cols, rows) = (ne0, ne1)
        if len(shape) < 2:
            continue
        rows = shape[1]
        if name == f"{embd}.weight":
            matmul += 2 * int(t.n_elements) if tied else 0  # tied: the head multiplies by it
            continue
        matmul += 2 * int(t.n_elements)
        if name.endswith(f".{k_suffix}.weight"):
            kv += 2 * rows * kv_bytes_per_element  # K and V: n_kv_heads · head_dim each
        elif name.endswith(f".{q_suffix}.weight"):
            attn += 4 * rows  # 4 · n_heads · head_dim
    return ModelCost(weight_bytes_read=weights, kv_bytes_per_ctx=kv, matmul_flops=matmul,
                     attn_flops_per_ctx=attn, source="gguf")


def cost_from_onnx(path: Path) -> ModelCost:
    """Cost from an ONNX graph: initializer bytes (minus those only gathered from, i.e. an untied
    embedding), KV bytes from the `past_key_values.*` input shapes and dtypes.

    Attention FLOPs are not recoverable from the graph alone (the number of query heads is not an
    input dimension): they are left at 0, so the prefill bound counts matmuls only; pass a spec to
    `cost_from_spec` when that matters.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    elem = {onnx.TensorProto.FLOAT: 4, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
            onnx.TensorProto.INT8: 1, onnx.TensorProto.UINT8: 1, onnx.TensorProto.INT4: 0.5,
            onnx.TensorProto.UINT4: 0.5, onnx.TensorProto.INT32: 4, onnx.TensorProto.INT64: 8,
            onnx.TensorProto.DOUBLE: 8}
    consumers: dict[str, set[str]] = {}
    for node in g.node:
        for i, name in enumerate(node.input):
            consumers.setdefault(name, set()).add(node.op_type if i == 0 or node.op_type != "Gather"
                                                  else "Gather.indices")
    weights = matmul = 0
    for init in g.initializer:
        n = 1
        for d in init.dims:
            n *= int(d)
        nbytes = int(n * elem.get(init.data_type, 4))
        if consumers.get(init.name) == {"Gather"}:
            continue  # only looked up by row: not streamed per token
        weights += nbytes
        if len(init.dims) == 2 and n > 1:
            matmul += 2 * n
    kv = 0
    for inp in g.input:
        if not inp.name.startswith("past_key_values."):
            continue
        t = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if len(dims) == 4 and dims[1] and dims[3]:  # (B, n_kv, T_past, head_dim)
            kv += dims[1] * dims[3] * int(elem.get(t.elem_type, 4))
    return ModelCost(weight_bytes_read=weights, kv_bytes_per_ctx=kv, matmul_flops=matmul,
                     attn_flops_per_ctx=0, source="onnx")


def cost_from_file(path: Path) -> ModelCost:
    path = Path(path)
    if path.suffix == ".gguf":
        return cost_from_gguf(path)
    if path.suffix == ".onnx":
        return cost_from_onnx(path)
    from edgeprune.base.errors import BenchError

    raise BenchError(f"cannot read model cost from {path}: expected a .gguf or .onnx file")
