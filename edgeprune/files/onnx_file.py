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
from typing import Any, Optional, Union


def parsed_onnx(path: Union[str, os.PathLike]) -> tuple[Optional[Any], Optional[str]]:
    """(the model without its external weights, None) when `path` parses as an ONNX model, else
    (None, one line saying why not): one parse serves the check and the reader."""
    p = Path(path)
    if not p.exists():
        return None, f"ONNX file {p} does not exist"
    if not p.is_file():
        return None, f"{p} is not an ONNX file: it is not a regular file"
    with open(p, "rb") as f:
        head = f.read(16)
    if not head:
        return None, f"{p} is not an ONNX file: it is empty"
    if head[0] != 0x08:
        return None, (f"{p} is not an ONNX file: an ONNX model begins with its IR version, this begins with "
                      f"{head[:12]!r}")
    import onnx

    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: the file is corrupt
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        return None, f"{p} is not an ONNX file: it does not parse as one ({first})"
    if not model.graph.node:
        return None, f"{p} is not an ONNX file: it holds no graph"
    return model, None


def onnx_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """One line saying why `path` is not an ONNX model, or None when it parses as one."""
    return parsed_onnx(path)[1]
