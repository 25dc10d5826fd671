"""Quant presets, as data: the GGUF and ONNX names every room uses, and the one rule that checks them.

Device profiles (devices/*.toml) name these presets; a preset never names a device.
The exporters, the device profiles, the bench harness and ship all look names up here, so a profile
cannot ask for a type export would refuse. This lives in the core because devices/ sits below
export/ in the import order (tests/core/test_import_graph.py).

GGUF names are llama.cpp's own ftype names (`llama-quantize --help`), mapped onto
`gguf.LlamaFileType`, so a name here is exactly what a llama.cpp user types. Only ftypes that
quantize without an importance matrix are offered (IQ1/IQ2/IQ3 need one).

ONNX: `fp32` is the reference export every other preset starts from. int8 presets are dynamic
quantization (weights int8 offline, activations quantized per call) with the settings optimum's
`AutoQuantizationConfig.<isa>` uses for that instruction set; the same fields drive plain
`onnxruntime.quantization.quantize_dynamic` when optimum is not installed. int4 presets are
weight-only `MatMulNBits` (onnxruntime's blockwise 4-bit MatMul) with the block size given.

GGUF names are upper case, ONNX names lower case; lookups are case-insensitive and no name is in
both tables, so a mixed list routes by name alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from edgeprune.base.errors import ExportError


# ----- GGUF (llama.cpp ftypes) ------------------------------------------------------------------

@dataclass(frozen=True)
class GgufPreset:
    name: str  # llama.cpp ftype name as `llama-quantize` spells it
    ftype: str  # gguf.LlamaFileType member
    base_type: str  # GGML type of the ordinary matrices (llama.cpp mixes others in for the head etc.)
    description: str  # one line for help texts


GGUF_QUANTS: dict[str, GgufPreset] = {p.name: p for p in (
    GgufPreset("F32", "ALL_F32", "F32", "float32, the reference export (validated to 1e-4)"),
    GgufPreset("F16", "MOSTLY_F16", "F16", "float16 weights"),
    GgufPreset("BF16", "MOSTLY_BF16", "BF16", "bfloat16 weights"),
    GgufPreset("Q8_0", "MOSTLY_Q8_0", "Q8_0", "8-bit, 32-weight blocks"),
    GgufPreset("Q6_K", "MOSTLY_Q6_K", "Q6_K", "6-bit k-quant"),
    GgufPreset("Q5_K_M", "MOSTLY_Q5_K_M", "Q5_K", "5-bit k-quant, some tensors Q6_K"),
    GgufPreset("Q5_K_S", "MOSTLY_Q5_K_S", "Q5_K", "5-bit k-quant"),
    GgufPreset("Q5_1", "MOSTLY_Q5_1", "Q5_1", "5-bit legacy with offset"),
    GgufPreset("Q5_0", "MOSTLY_Q5_0", "Q5_0", "5-bit legacy"),
    GgufPreset("Q4_K_M", "MOSTLY_Q4_K_M", "Q4_K", "4-bit k-quant, some tensors Q6_K (the usual app default)"),
    GgufPreset("Q4_K_S", "MOSTLY_Q4_K_S", "Q4_K", "4-bit k-quant"),
    GgufPreset("Q4_1", "MOSTLY_Q4_1", "Q4_1", "4-bit legacy with offset"),
    GgufPreset("Q4_0", "MOSTLY_Q4_0", "Q4_0", "4-bit legacy, fastest on ARM"),
    GgufPreset("IQ4_NL", "MOSTLY_IQ4_NL", "IQ4_NL", "4-bit non-linear, 32-weight blocks"),
    GgufPreset("Q3_K_L", "MOSTLY_Q3_K_L", "Q3_K", "3-bit k-quant, large"),
    GgufPreset("Q3_K_M", "MOSTLY_Q3_K_M", "Q3_K", "3-bit k-quant, medium"),
    GgufPreset("Q3_K_S", "MOSTLY_Q3_K_S", "Q3_K", "3-bit k-quant, small"),
    GgufPreset("Q2_K", "MOSTLY_Q2_K", "Q2_K", "2-bit k-quant"),
)}

# float GGUF files written directly by our writer (no llama.cpp quantize step)
GGUF_FLOAT = ("F32", "F16", "BF16")

# Relative logit tolerance of the float reference export (GGUF f32 with F32 KV). fp32 sums in
# another order drift with depth and with the hidden state's size: a trained model is ~1e-5, a
# just-cut 30-layer SmolLM2 (perplexity 3e4, logits ~36) measured 1.5e-4 at top-1 agreement 1.000.
# A wrong tensor, rope or norm is 1e-2 and more.
F32_REL_TOL = 5e-4


def canonical_gguf(name: str) -> str:
    """THE check of a GGUF preset name (export, device profiles and ship all call it): its
    canonical spelling, or ExportError listing the known names."""
    up = name.strip().upper()
    if up not in GGUF_QUANTS:
        raise ExportError(f"unknown GGUF quant {name!r}; known: {', '.join(GGUF_QUANTS)}")
    return up


def gguf_base_type(name: str) -> str:
    """The GGML type the ordinary matrices of GGUF preset `name` get (Q4_K_M -> Q4_K, Q4_0 ->
    Q4_0); a name outside the table (a bare GGML type such as Q4_K) is returned as it is."""
    up = name.strip().upper()
    return GGUF_QUANTS[up].base_type if up in GGUF_QUANTS else up


# llama.cpp's fallback when a row is not a whole number of a k-quant's 256-weight blocks, and F16
# when the row does not fit the fallback's 32-weight blocks either. As measured on the llama.cpp
# that llama-cpp-python 0.3.36 builds (tests/export/test_gguf_fallback.py quantizes real files):
# Q2_K/Q3_K rows fall back to Q4_0 there (newer llama.cpp sources name IQ4_NL).
K_QUANT_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}


def ggml_block(qtype: str) -> int:
    """Weights per block of GGML type `qtype` (1 for F32/F16/BF16)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return GGML_QUANT_SIZES[GGMLQuantizationType[qtype.upper()]][0]


def row_type(qtype: str, cols: int) -> str:
    """The GGML type a row of `cols` weights really gets when `qtype` is asked for: `qtype` when
    the row is whole blocks, else llama.cpp's fallback (the one place that rule is written)."""
    qtype = qtype.upper()
    if cols % ggml_block(qtype) == 0:
        return qtype
    fallback = K_QUANT_FALLBACK.get(qtype, "F16") if ggml_block(qtype) == 256 else "F16"
    return fallback if fallback != "F16" and cols % ggml_block(fallback) == 0 else "F16"


def gguf_ftype(name: str) -> int:
    """The llama_ftype integer of a GGUF preset name."""
    import gguf

    return int(gguf.LlamaFileType[GGUF_QUANTS[canonical_gguf(name)].ftype])


def gguf_name_of_ftype(ftype: int) -> str:
    """The llama.cpp name of a file's general.file_type, the inverse of `gguf_ftype` (a type
    outside the table, e.g. an IQ2 file made elsewhere, keeps llama.cpp's own name)."""
    import gguf

    return gguf.LlamaFileType(int(ftype)).name.replace("MOSTLY_", "").replace("ALL_", "")


# ----- ONNX -------------------------------------------------------------------------------------

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

# Relative logit tolerance of the fp32 export (ONNX fp32 <= 1e-4)
FP32_REL_TOL = 1e-4


def onnx_preset(name: str) -> OnnxPreset:
    """THE check of an ONNX preset name (export, device profiles and ship all call it): the
    preset, or ExportError listing the known names."""
    key = name.strip().lower()
    if key not in ONNX_PRESETS:
        raise ExportError(f"unknown ONNX quant preset {name!r}; known: {', '.join(ONNX_PRESETS)}")
    return ONNX_PRESETS[key]


def onnx_preset_of_file(file_name: str) -> Optional[OnnxPreset]:
    """The preset whose exported file is named `file_name` (`model.onnx`, `model_int8.onnx`, ...),
    or None for a file our exporter did not name."""
    return next((p for p in ONNX_PRESETS.values() if p.file_name == file_name), None)


# ----- both formats -----------------------------------------------------------------------------

def route_quants(names: list[str]) -> dict[str, list[str]]:
    """Split a mixed list (`Q4_K_M,Q8_0,int8,int4`) into {"gguf": [...], "onnx": [...]} by name,
    each in its canonical spelling. Unknown names raise one error listing all of them."""
    out: dict[str, list[str]] = {"gguf": [], "onnx": []}
    unknown = []
    for raw in names:
        n = raw.strip()
        if not n:
            continue
        if n.upper() in GGUF_QUANTS:
            if n.upper() not in out["gguf"]:
                out["gguf"].append(n.upper())
        elif n.lower() in ONNX_PRESETS:
            if n.lower() not in out["onnx"]:
                out["onnx"].append(n.lower())
        else:
            unknown.append(n)
    if unknown:
        raise ExportError(
            f"unknown quant preset(s) {unknown}; GGUF: {', '.join(GGUF_QUANTS)}; ONNX: {', '.join(ONNX_PRESETS)}"
        )
    return out


__all__ = ["GgufPreset", "GGUF_QUANTS", "GGUF_FLOAT", "F32_REL_TOL", "canonical_gguf", "gguf_base_type",
           "K_QUANT_FALLBACK", "ggml_block", "row_type", "gguf_ftype", "gguf_name_of_ftype", "OnnxPreset", "ONNX_PRESETS", "FP32_REL_TOL", "onnx_preset",
           "onnx_preset_of_file", "route_quants"]
