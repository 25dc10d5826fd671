"""Quant preset names, as data: which names are GGUF (llama.cpp ftypes) and which are ONNX.

Device profiles (devices/*.toml) name these presets; a preset never names a device (STYLE.md §4).
GGUF names are llama.cpp's own ftype names (`llama-quantize --help`), mapped onto
`gguf.LlamaFileType`, so a name here is exactly what a llama.cpp user types. Only ftypes that
quantize without an importance matrix are offered (IQ1/IQ2/IQ3 need one).
"""

from __future__ import annotations

from edgeprune.errors import ExportError

# name -> (gguf.LlamaFileType member name, one-line description)
GGUF_QUANTS: dict[str, tuple[str, str]] = {
    "F32": ("ALL_F32", "float32, the reference export (validated to 1e-4)"),
    "F16": ("MOSTLY_F16", "float16 weights"),
    "BF16": ("MOSTLY_BF16", "bfloat16 weights"),
    "Q8_0": ("MOSTLY_Q8_0", "8-bit, 32-weight blocks"),
    "Q6_K": ("MOSTLY_Q6_K", "6-bit k-quant"),
    "Q5_K_M": ("MOSTLY_Q5_K_M", "5-bit k-quant, some tensors Q6_K"),
    "Q5_K_S": ("MOSTLY_Q5_K_S", "5-bit k-quant"),
    "Q5_1": ("MOSTLY_Q5_1", "5-bit legacy with offset"),
    "Q5_0": ("MOSTLY_Q5_0", "5-bit legacy"),
    "Q4_K_M": ("MOSTLY_Q4_K_M", "4-bit k-quant, some tensors Q6_K (the usual app default)"),
    "Q4_K_S": ("MOSTLY_Q4_K_S", "4-bit k-quant"),
    "Q4_1": ("MOSTLY_Q4_1", "4-bit legacy with offset"),
    "Q4_0": ("MOSTLY_Q4_0", "4-bit legacy, fastest on ARM"),
    "IQ4_NL": ("MOSTLY_IQ4_NL", "4-bit non-linear, 32-weight blocks"),
    "Q3_K_L": ("MOSTLY_Q3_K_L", "3-bit k-quant, large"),
    "Q3_K_M": ("MOSTLY_Q3_K_M", "3-bit k-quant, medium"),
    "Q3_K_S": ("MOSTLY_Q3_K_S", "3-bit k-quant, small"),
    "Q2_K": ("MOSTLY_Q2_K", "2-bit k-quant"),
}

# float GGUF files written directly by our writer (no llama.cpp quantize step)
GGUF_FLOAT = ("F32", "F16", "BF16")

# ONNX presets (owned by the ONNX exporter; listed here only to route names to a format)
ONNX_QUANTS = ("fp32", "int8", "int8-arm64", "int8-avx2", "int8-avx512-vnni", "int4", "int4-b128")

# Relative logit tolerance of the float reference export (issue 6: GGUF f32 <= 1e-4 with F32 KV)
F32_REL_TOL = 1e-4


def gguf_ftype(name: str) -> int:
    """The llama_ftype integer of a GGUF preset name."""
    import gguf

    return int(gguf.LlamaFileType[GGUF_QUANTS[canonical_gguf(name)][0]])


def canonical_gguf(name: str) -> str:
    up = name.strip().upper()
    if up not in GGUF_QUANTS:
        raise ExportError(f"unknown GGUF quant {name!r}; known: {', '.join(GGUF_QUANTS)}")
    return up


def route_quants(names: list[str]) -> dict[str, list[str]]:
    """Split a mixed list (`Q4_K_M,Q8_0,int8,int4`) into {"gguf": [...], "onnx": [...]} by name.

    GGUF names are upper case ftypes, ONNX names lower case; matching is case-insensitive but
    unambiguous (no name is in both tables). Unknown names raise one error listing all of them.
    """
    out: dict[str, list[str]] = {"gguf": [], "onnx": []}
    unknown = []
    for raw in names:
        n = raw.strip()
        if not n:
            continue
        if n.upper() in GGUF_QUANTS:
            if n.upper() not in out["gguf"]:
                out["gguf"].append(n.upper())
        elif n.lower() in ONNX_QUANTS:
            if n.lower() not in out["onnx"]:
                out["onnx"].append(n.lower())
        else:
            unknown.append(n)
    if unknown:
        raise ExportError(
            f"unknown quant preset(s) {unknown}; GGUF: {', '.join(GGUF_QUANTS)}; ONNX: {', '.join(ONNX_QUANTS)}"
        )
    return out
