"""ONNX quant presets, as data (STYLE.md §4: a device names a preset, a preset never names a device).

`fp32` is the reference export every other preset starts from. int8 presets are dynamic
quantization (weights int8 offline, activations quantized per call) with the settings optimum's
`AutoQuantizationConfig.<isa>` uses for that instruction set; the same fields drive plain
`onnxruntime.quantization.quantize_dynamic` when optimum is not installed. int4 presets are
weight-only `MatMulNBits` (onnxruntime's blockwise 4-bit MatMul) with the block size given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgeprune.errors import ExportError


@dataclass(frozen=True)
class OnnxPreset:
    name: str
    kind: str  # "float" | "int8" | "int4"
    description: str
    optimum_isa: Optional[str] = None  # AutoQuantizationConfig method: "arm64" | "avx2" | "avx512_vnni"
    weight_type: str = "QInt8"  # onnxruntime QuantType member for int8 weights
    per_channel: bool = True  # one scale per output row: better accuracy, what optimum defaults to
    reduce_range: bool = False  # 7-bit weights: only for AVX2/AVX512 without VNNI saturation issues
    op_types: tuple[str, ...] = ("MatMul", "Gather")  # plain int8: linear layers and the embedding
    block_size: int = 32  # int4: weights per scale along the input dimension
    symmetric: bool = True  # int4: no zero point (what MatMulNBits kernels are fastest with)
    accuracy_level: int = 4  # int4: MatMulNBits compute type 4 = int8 activations (ORT docs)

    @property
    def file_name(self) -> str:
        """`model.onnx` for fp32 (the file optimum's ORTModelForCausalLM loads by default), else
        `model_<preset>.onnx`."""
        return "model.onnx" if self.kind == "float" else f"model_{self.name}.onnx"


ONNX_PRESETS: dict[str, OnnxPreset] = {p.name: p for p in (
    OnnxPreset("fp32", "float", "float32, the reference export (validated to 1e-4 relative)"),
    # reduce_range: 7-bit weights avoid the u8 x s8 saturation of x86 CPUs without VNNI
    # (onnxruntime quantization docs), so the portable preset is safe on any CPU
    OnnxPreset("int8", "int8", "int8 dynamic, signed 7-bit per-channel weights, any CPU", reduce_range=True),
    # optimum: u8 activations / s8 weights, faster than u8/u8 on low-end ARM64, equal on high-end
    OnnxPreset("int8-arm64", "int8", "int8 dynamic for ARM64 (NEON / dot-product)", optimum_isa="arm64",
               weight_type="QInt8"),
    # optimum: AVX2's VPMADDUBSW wants u8 x u8
    OnnxPreset("int8-avx2", "int8", "int8 dynamic for x86 AVX2", optimum_isa="avx2", weight_type="QUInt8"),
    OnnxPreset("int8-avx512-vnni", "int8", "int8 dynamic for x86 AVX512-VNNI", optimum_isa="avx512_vnni",
               weight_type="QInt8"),
    OnnxPreset("int4", "int4", "4-bit weight-only MatMulNBits, 32-weight blocks", block_size=32),
    OnnxPreset("int4-b128", "int4", "4-bit weight-only MatMulNBits, 128-weight blocks (smaller, coarser)",
               block_size=128),
)}

# Relative logit tolerance of the fp32 export (issue 6: ONNX fp32 <= 1e-4)
FP32_REL_TOL = 1e-4


def onnx_preset(name: str) -> OnnxPreset:
    key = name.strip().lower()
    if key not in ONNX_PRESETS:
        raise ExportError(f"unknown ONNX quant preset {name!r}; known: {', '.join(ONNX_PRESETS)}")
    return ONNX_PRESETS[key]
