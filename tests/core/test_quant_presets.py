"""Quant presets: one table for GGUF and ONNX names, one check per format that export,
device profiles, calibration and the bench harness share."""

from __future__ import annotations

import gguf
import pytest
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from edgeprune.base.errors import ExportError, SpecError
from edgeprune.shape.quant_presets import (GGUF_FLOAT, GGUF_QUANTS, ONNX_PRESETS, canonical_gguf, gguf_base_type,
                                     gguf_ftype, gguf_name_of_ftype, onnx_preset, onnx_preset_of_file,
                                     route_quants)
from edgeprune.shape.units import quant_block


def test_gguf_names_are_llamacpp_ftypes_with_known_base_types():
    for name, p in GGUF_QUANTS.items():
        assert p.name == name and canonical_gguf(name.lower()) == name
        assert gguf_ftype(name) == int(gguf.LlamaFileType[p.ftype])
        assert gguf_name_of_ftype(gguf_ftype(name)) == name  # what bench reads back from a file
        assert gguf_base_type(name) == p.base_type
        assert p.base_type in GGMLQuantizationType.__members__, name
    assert set(GGUF_FLOAT) <= set(GGUF_QUANTS)
    assert gguf_ftype("Q4_K_M") == int(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    assert gguf_base_type("q4_k_m") == "Q4_K" and gguf_base_type("Q4_K") == "Q4_K"  # a GGML type is its own
    assert gguf_name_of_ftype(int(gguf.LlamaFileType.MOSTLY_IQ2_XXS)) == "IQ2_XXS"  # a file made elsewhere


def test_importance_matrix_types_are_refused():
    # llama.cpp knows them, but they cannot be quantized without an importance matrix
    assert "MOSTLY_IQ2_XXS" in gguf.LlamaFileType.__members__
    for name in ("IQ2_XXS", "IQ1_S", "IQ3_XXS"):
        with pytest.raises(ExportError, match=f"unknown GGUF quant '{name}'"):
            canonical_gguf(name)


def test_quant_block_reads_the_preset_table():
    """units.quant_block (the width alignment) agrees with the table for every preset."""
    for name, p in GGUF_QUANTS.items():
        assert quant_block(name) == GGML_QUANT_SIZES[GGMLQuantizationType[p.base_type]][0]
    assert quant_block("q4_k_m") == 256 and quant_block("Q4_K") == 256  # an ftype and a GGML type
    with pytest.raises(SpecError, match="Q9_9"):
        quant_block("Q9_9")


def test_onnx_presets_and_their_file_names():
    assert onnx_preset("INT8-ARM64").name == "int8-arm64"
    with pytest.raises(ExportError, match="unknown ONNX quant preset 'fp16'"):
        onnx_preset("fp16")
    for name, p in ONNX_PRESETS.items():
        assert onnx_preset_of_file(p.file_name) is p, name
    assert onnx_preset_of_file("model.onnx").name == "fp32"
    assert onnx_preset_of_file("model_int8.onnx").name == "int8"
    assert onnx_preset_of_file("tiny.onnx") is None and onnx_preset_of_file("model_fp16.onnx") is None


def test_no_name_is_both_gguf_and_onnx():
    assert not {n.lower() for n in GGUF_QUANTS} & set(ONNX_PRESETS)
    assert route_quants(list(GGUF_QUANTS) + list(ONNX_PRESETS)) == {"gguf": list(GGUF_QUANTS),
                                                                    "onnx": list(ONNX_PRESETS)}


@pytest.mark.parametrize("qtype, cols, got", [
    ("Q4_K", 512, "Q4_K"), ("Q4_K", 288, "Q5_0"), ("Q3_K", 288, "Q4_0"), ("Q2_K", 288, "Q4_0"),
    ("Q6_K", 288, "Q8_0"), ("Q4_K", 300, "F16"), ("Q4_0", 300, "F16"), ("Q8_0", 96, "Q8_0")])
def test_row_type_is_llamacpps_fallback_and_every_reader_uses_it(qtype, cols, got):
    """A row that is not whole blocks falls back to a 32-block type, then F16 (what llama.cpp
    writes: tests/export/test_gguf_fallback.py). The size model (spec.matrix_bytes) and the
    type-mix rules (edgeprune/shape/gguf_types.py) both read the one rule."""
    from edgeprune.shape.gguf_types import matrix_type
    from edgeprune.shape.quant_presets import row_type
    from edgeprune.shape.spec import matrix_bytes

    assert row_type(qtype, cols) == got
    assert matrix_bytes(3, cols, qtype) == matrix_bytes(3, cols, got)
    ftype = {"Q4_K": "Q4_K_S", "Q3_K": "Q3_K_S", "Q2_K": "Q2_K", "Q6_K": "Q6_K", "Q4_0": "Q4_0", "Q8_0": "Q8_0"}[qtype]
    assert matrix_type("ffn_up", cols, ftype) == got
