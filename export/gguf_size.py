"""The exact size of the GGUF file `edgeprune export` would write for a checkpoint and a preset,
without writing it (`info` / `compare` said 555.5 KiB for a 940.7 KiB Q4_0 file).

A spec-only estimate misses what llama.cpp really does: its per-tensor type choices (Q4_K_M keeps
attn_v / ffn_down / output at Q6_K, token_embd at Q8_0 when rows are short, k-quants fall back
to Q5_0 / Q8_0 on rows that are not a multiple of 256) and the metadata (tokenizer, chat
template, our spec). So we ask llama.cpp itself:

1. write a *skeleton* F32 GGUF: the exporter's own metadata and tensor list (names, shapes), a
   sparse file whose tensor data is never written (no weights are loaded or copied);
2. run `llama_model_quantize` with `dry_run` on it in a child process: llama.cpp logs the type it
   would give each tensor, without quantizing anything;
3. size = the skeleton's header (llama.cpp copies every key; only values change) + each tensor's
   bytes at its type, padded to the file's alignment.

Float presets (F32 / F16 / BF16) are written by our own writer: the same header, matrices at the
float type, 1-D tensors at F32.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgeprune.base.errors import ExportError

ALIGNMENT = 32  # GGUF_DEFAULT_ALIGNMENT (neither our writer nor llama.cpp's quantizer changes it)
_LINE = re.compile(r"\]\s+(\S+)\s+-\s+\[.*?type\s*=\s*(\w+).*?(?:\((\w+)\))?\s*$")


def _pad(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def checkpoint_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from the safetensors headers (nothing loaded)."""
    from safetensors import safe_open

    d = Path(model_dir)
    index = d / "model.safetensors.index.json"
    files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
             else ["model.safetensors"])
    shapes = {}
    for f in files:
        with safe_open(str(d / f), framework="np") as st:
            for k in st.keys():
                shapes[k] = tuple(st.get_slice(k).get_shape())
    return shapes


def write_skeleton(ckpt: Any, path: Path, name: Optional[str] = None) -> tuple[int, list[tuple[str, tuple[int, ...]]]]:
    """The F32 GGUF `export` writes for `ckpt` (a Checkpoint), as a sparse file without tensor data.
    Returns (offset of the tensor data, [(tensor name, numpy shape)])."""
    import gguf

    from edgeprune.export.gguf_tokenizer import add_tokenizer
    from edgeprune.export.gguf_writer import _add_general, add_hparams, gguf_tensors
    from edgeprune.files.gguf_format import gguf_layout
    from edgeprune.shape.quant_presets import gguf_ftype

    spec = ckpt.spec
    layout = gguf_layout(spec)
    # np.empty never touches its pages: the exporter's own tensor list, at no memory cost
    state = {k: np.empty(s, np.float32) for k, s in checkpoint_shapes(ckpt.path).items()}
    tensors = [(n, a.shape) for n, a in gguf_tensors(spec, state, layout)]
    w = gguf.GGUFWriter(path, layout.arch_name)
    # the same general.* keys export writes: name/basename from the model, the stem only as fallback
    _add_general(w, spec, name, dict(getattr(ckpt, "meta", {}) or {}), layout, stem=name or Path(ckpt.path).name)
    add_hparams(w, spec, layout)
    w.add_file_type(gguf_ftype("F32"))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tokenizer(w, Path(ckpt.path), dict(getattr(ckpt, "config", {}) or {}), spec.vocab_size)
    for n, shape in tensors:
        w.add_tensor_info(n, shape, np.dtype(np.float32), int(np.prod(shape)) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    data_start = _pad(path.stat().st_size)
    with open(path, "r+b") as f:  # sparse: llama.cpp checks the size, dry_run never reads the data
        f.truncate(data_start + sum(_pad(int(np.prod(s)) * 4) for _, s in tensors))
    return data_start, tensors


_DRY_RUN = """
import ctypes, logging, sys, llama_cpp
logging.getLogger("llama-cpp-python").setLevel(logging.DEBUG)  # llama.cpp's per-tensor lines to stderr
for ftype in sys.argv[3:]:
    print("@ftype", ftype, file=sys.stderr, flush=True)
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype, p.dry_run, p.nthread = int(ftype), True, 1
    if llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)):
        sys.exit(1)
"""


def dry_run_types(skeleton: Path, presets: Sequence[str]) -> dict[str, dict[str, str]]:
    """{preset: {tensor name: GGML type}} that llama.cpp's quantizer would choose (its own log of
    a dry run; one child process for all presets)."""
    from edgeprune.export.llamacpp_runner import have_llamacpp
    from edgeprune.shape.quant_presets import gguf_ftype

    if not have_llamacpp():
        raise ExportError("predicting quantized GGUF sizes needs llama-cpp-python (pip install edgeprune[llama])")
    by_ftype = {str(gguf_ftype(q)): q for q in presets}
    done = subprocess.run([sys.executable, "-c", _DRY_RUN, str(skeleton), str(skeleton) + ".out", *by_ftype],
                          capture_output=True, text=True, timeout=600)
    types: dict[str, dict[str, str]] = {}
    current: Optional[dict[str, str]] = None
    for line in done.stderr.splitlines():
        if line.startswith("@ftype "):
            current = types.setdefault(by_ftype[line.split()[1]], {})
            continue
        m = _LINE.search(line)
        if m and current is not None:
            current[m.group(1)] = (m.group(3) or m.group(2)).upper()
    if done.returncode != 0 or any(not types.get(q) for q in presets):
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise ExportError(f"llama.cpp dry run of {', '.join(presets)} failed: {tail}")
    return types


def tensor_bytes(shape: Sequence[int], qtype: str) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype.upper()]]
    n = int(np.prod(shape))
    return n // block * size


def predict_gguf_sizes(model_dir: Any, presets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{preset: {"bytes": exact file size, "types": {GGML type: tensor count}}} for the files
    `edgeprune export MODEL_DIR --quant PRESET` writes."""
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.shape.quant_presets import GGUF_FLOAT, canonical_gguf

    ckpt = load_checkpoint(model_dir) if not hasattr(model_dir, "spec") else model_dir
    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgeprune-gguf-size-") as work:
        skel = Path(work) / "skeleton-F32.gguf"
        data_start, tensors = write_skeleton(ckpt, skel)
        wanted = [canonical_gguf(p) for p in presets]
        quantized = [q for q in wanted if q not in GGUF_FLOAT]
        chosen = dry_run_types(skel, quantized) if quantized else {}
        for q in wanted:
            types = chosen.get(q) or {n: (q if len(s) >= 2 else "F32") for n, s in tensors}
            missing = [n for n, _ in tensors if n not in types]
            if missing:
                raise ExportError(f"llama.cpp's dry run did not report {missing[:3]} for {q}")
            size = data_start + sum(_pad(tensor_bytes(s, types[n])) for n, s in tensors)
            counts: dict[str, int] = {}
            for n, _ in tensors:
                counts[types[n]] = counts.get(types[n], 0) + 1
            out[q] = {"bytes": size, "types": counts}
    return out
