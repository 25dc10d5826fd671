"""`spec_of(path)`: the ArchSpec any model input describes, read from its metadata alone (no
weights loaded). A checkpoint folder or hub name (edgeprune.json's spec, else config.json), a spec
JSON file, a GGUF (its llama.cpp hyper-parameters; a missing `output.weight` means a tied head) or
an ONNX file written by edgeprune (the spec stored in its metadata). Every verb that needs a
shape without the weights asks here, so a file means the same model to prune, bench, info,
compare and ship.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Union

from edgeprune.base.errors import EdgepruneError, SpecError
from edgeprune.shape.spec import ArchSpec

MODEL_FILES = (".json", ".gguf", ".onnx")


def spec_of(source: Union[str, Path]) -> ArchSpec:
    """The ArchSpec of `source`, or a one-line EdgepruneError naming it."""
    p = Path(source).expanduser()
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".json":
            return _spec_json(p)
        if suffix == ".gguf":
            return _spec_gguf(p)
        if suffix == ".onnx":
            return _spec_onnx(p)
        raise _not_a_model(p)
    if p.exists() and not p.is_dir():  # a device, a FIFO: never read
        raise _not_a_model(p)
    from edgeprune.files.checkpoint import resolve_checkpoint_dir, spec_from_dir

    return spec_from_dir(resolve_checkpoint_dir(str(source)))


def _not_a_model(p: Path) -> SpecError:
    return SpecError(f"{p} is not a spec JSON file, a checkpoint folder, a .gguf or an .onnx file")


def spec_or_none(source: Union[str, Path]) -> Optional[ArchSpec]:
    """spec_of, or None for a file that does not describe its shape (a foreign ONNX graph, a GGUF
    of another architecture): a measurement of such a file still stands, only its prediction is
    left out."""
    try:
        return spec_of(source)
    except EdgepruneError:
        return None


def _spec_json(p: Path) -> ArchSpec:
    try:
        return ArchSpec.from_json(p.read_text())
    except json.JSONDecodeError as e:
        raise SpecError(f"{p} is not valid JSON ({e})") from None
    except (TypeError, KeyError, ValueError) as e:
        raise SpecError(f"{p} is not a spec JSON file ({type(e).__name__}: {e})") from None


def _spec_gguf(p: Path) -> ArchSpec:
    from edgeprune.files.gguf_reader import _fields, open_gguf, spec_from_metadata

    reader = open_gguf(p)
    spec = spec_from_metadata(_fields(reader))
    return replace(spec, tie_word_embeddings=not any(t.name == "output.weight" for t in reader.tensors))


def onnx_graph(p: Path) -> Any:
    """An ONNX file's graph without its weights; anything else is one line saying so (a text file
    or an empty one is told "not an ONNX file")."""
    from edgeprune.files.onnx_file import parsed_onnx

    model, problem = parsed_onnx(p)
    if problem is not None:
        raise SpecError(problem)
    return model


def quant_of(path: Union[str, Path]) -> str:
    """The quant a model file is stored at: a GGUF's general.file_type; for ONNX the preset our
    exporter named the file for (`model.onnx`, `model_<preset>.onnx`), else what its weights'
    dtypes show ('unknown' when neither says)."""
    from edgeprune.shape.quant_presets import gguf_name_of_ftype, onnx_preset_of_file

    p = Path(path)
    if p.suffix == ".gguf":
        from gguf.constants import Keys

        from edgeprune.files.gguf_reader import open_gguf

        f = open_gguf(p).get_field(Keys.General.FILE_TYPE)
        return "unknown" if f is None else gguf_name_of_ftype(int(f.contents()))
    if p.suffix == ".onnx":
        preset = onnx_preset_of_file(p.name)
        if preset is not None:
            return preset.name
        # half-precision weights are no preset of ours: "unknown", as a GGUF without a file type
        import onnx

        types = {i.data_type for i in onnx_graph(p).graph.initializer}
        if types & {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}:
            return "int8"
        if types & {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}:
            return "int4"
        return "unknown" if types & {onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16} else "fp32"
    return "unknown"


def _spec_onnx(p: Path) -> ArchSpec:
    meta = {m.key: m.value for m in onnx_graph(p).metadata_props}
    try:
        return ArchSpec.from_dict(json.loads(meta["edgeprune"])["spec"])
    except KeyError:
        raise SpecError(f"{p} carries no edgeprune spec in its metadata (not exported by edgeprune)") from None
    except (ValueError, TypeError) as e:
        raise SpecError(f"{p}: its edgeprune metadata is not a spec ({type(e).__name__}: {e})") from None


__all__ = ["spec_of", "spec_or_none", "quant_of", "onnx_graph", "MODEL_FILES"]
