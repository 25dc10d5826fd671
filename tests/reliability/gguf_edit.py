"""A copy of a real GGUF with some metadata changed: how the suite makes a file whose header a
hostile writer chose (a chat template, a token list) while its tensors stay loadable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional


def edit_gguf(src: Path, dst: Path, changes: Mapping[str, Optional[tuple[Any, Any]]]) -> Path:
    """Copy `src` to `dst` with `changes`: key -> (value, GGUFValueType) to set (arrays take their
    element type), or None to remove the key."""
    import gguf

    class Writer(gguf.GGUFWriter):
        def _pack_val(self, val, vtype, add_vtype, sub_type=None):  # an empty array, as a hostile file has
            if vtype == gguf.GGUFValueType.ARRAY and isinstance(val, list) and not val:
                return (self._pack("I", vtype) if add_vtype else b"") + self._pack("I", sub_type) + self._pack("Q", 0)
            return super()._pack_val(val, vtype, add_vtype, sub_type)

    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = Writer(dst, arch=arch, endianess=reader.endianess)
    pending = dict(changes)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        if field.name in pending:
            change = pending.pop(field.name)
            if change is None:
                continue
            value, t = change
            writer.add_key_value(field.name, value, gguf.GGUFValueType.ARRAY if isinstance(value, list) else t,
                                 sub_type=t if isinstance(value, list) else None)
        else:
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    for key, change in pending.items():
        if change is not None:
            value, t = change
            writer.add_key_value(key, value, gguf.GGUFValueType.ARRAY if isinstance(value, list) else t,
                                 sub_type=t if isinstance(value, list) else None)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return dst
