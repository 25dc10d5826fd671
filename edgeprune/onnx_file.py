"""Is this file an ONNX model? Asked before anything else about it (its tokenizer, its runtime),
so a text file that happens to be named `.onnx` is told what is wrong with it, by every verb.

An ONNX file is a serialized ModelProto; protobuf writes fields in number order, so a model
begins with field 1, its IR version (tag byte 0x08), which every ONNX file carries. The graph is
then parsed without external weights (cheap), and an empty one (an empty file parses as one) is
no model either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union


def onnx_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """One line saying why `path` is not an ONNX model, or None when it parses as one."""
    p = Path(path)
    if not p.exists():
        return f"ONNX file {p} does not exist"
    if not p.is_file():
        return f"{p} is not an ONNX file: it is not a regular file"
    with open(p, "rb") as f:
        head = f.read(16)
    if not head:
        return f"{p} is not an ONNX file: it is empty"
    if head[0] != 0x08:
        return f"{p} is not an ONNX file: an ONNX model begins with its IR version, this begins with {head[:12]!r}"
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: the file is corrupt
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        return f"{p} is not an ONNX file: it does not parse as one ({first})"
    if not model.graph.node:
        return f"{p} is not an ONNX file: it holds no graph"
    return None
