"""Quantize an fp32 ONNX export per preset (edgeprune/shape/quant_presets.py): int8 dynamic per ISA, int4 MatMulNBits.

Pure file -> file functions: the caller (onnx_export) writes into a scratch directory and moves
finished files into place, so no half-written file is ever visible.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from edgeprune.base.errors import ExportError
from edgeprune.shape.quant_presets import OnnxPreset

log = logging.getLogger(__name__)


def optimum_available() -> bool:
    try:
        from optimum.onnxruntime import ORTQuantizer  # noqa: F401
        from optimum.onnxruntime.configuration import AutoQuantizationConfig  # noqa: F401
    except Exception:  # ImportError, or an optimum that fails against this transformers
        return False
    return True


def quantize_onnx(src: Path, dst: Path, preset: OnnxPreset, external_data: bool = False) -> str:
    """Write `src` (fp32) quantized per `preset` to `dst`; returns which tool did it."""
    if preset.kind == "int8":
        if preset.optimum_isa and optimum_available():
            _int8_optimum(src, dst, preset, external_data)
            return f"optimum ORTQuantizer + AutoQuantizationConfig.{preset.optimum_isa}(is_static=False)"
        _int8_plain(src, dst, preset, external_data)
        return "onnxruntime quantize_dynamic"
    if preset.kind == "int4":
        _int4(src, dst, preset, external_data)
        return f"onnxruntime MatMulNBitsQuantizer(block_size={preset.block_size})"
    raise ExportError(f"preset {preset.name!r} ({preset.kind}) is not a quantization preset")


def _int8_plain(src: Path, dst: Path, preset: OnnxPreset, external_data: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(src, dst, op_types_to_quantize=list(preset.op_types), per_channel=preset.per_channel,
                     reduce_range=preset.reduce_range, weight_type=QuantType[preset.weight_type],
                     use_external_data_format=external_data)


def _int8_optimum(src: Path, dst: Path, preset: OnnxPreset, external_data: bool) -> None:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig
    from transformers import PretrainedConfig

    qconfig = getattr(AutoQuantizationConfig, preset.optimum_isa)(is_static=False, per_channel=preset.per_channel)
    # an empty config: ORTQuantizer only re-saves it, and a heterogeneous config.json is not one
    # transformers' AutoConfig understands
    quantizer = ORTQuantizer(src, config=PretrainedConfig())
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".ortq-") as scratch:
        out = quantizer.quantize(quantization_config=qconfig, save_dir=scratch, file_suffix="quantized",
                                 use_external_data_format=external_data)
        out = Path(out)
        if out.is_dir():
            out = out / f"{src.stem}_quantized.onnx"
        if not out.is_file():
            raise ExportError(f"optimum's ORTQuantizer wrote no {out.name} in {scratch}")
        move_onnx(out, dst, external_data)


def move_onnx(src: Path, dst: Path, external_data: bool) -> None:
    """Move an ONNX file to `dst`; with external data, re-save so its tensors live in
    `<dst name>.data` beside it (the data file name is recorded inside the graph, so a plain
    rename of the pair would break it)."""
    if not external_data:
        shutil.move(str(src), dst)
        return
    import onnx

    model = onnx.load(str(src))  # pulls the external tensors in from src's directory
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{dst.name}.data", size_threshold=1024)


def _int4(src: Path, dst: Path, preset: OnnxPreset, external_data: bool) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(src))
    quant = MatMulNBitsQuantizer(model, bits=4, block_size=preset.block_size, is_symmetric=preset.symmetric,
                                 accuracy_level=preset.accuracy_level)
    quant.process()
    n = sum(1 for node in quant.model.model.graph.node if node.op_type == "MatMulNBits")
    if n == 0:
        raise ExportError(f"{src}: MatMulNBitsQuantizer found no MatMul with a constant weight to quantize")
    log.info("%s: %d MatMul -> MatMulNBits (block %d)", dst.name, n, preset.block_size)
    quant.model.save_model_to_file(str(dst), use_external_data_format=external_data)
