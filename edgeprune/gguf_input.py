"""A GGUF file as a model input (issue 14 §1): converted once into a checkpoint directory.

Every command resolves its model through `checkpoint.resolve_checkpoint_dir`, which hands a
`.gguf` path here; the file becomes an ordinary HF-style directory in the cache
(`$EDGEPRUNE_CACHE/gguf-input/<stem>-<sha256[:16]>/`, keyed by content, never beside the user's
file), so `info`, `prune`, `train --teacher`, `eval`, `export`, `ship` and `compare` accept it
unchanged.

Accepted: `llama` and `qwen2` GGUFs (uniform, as llama.cpp's converter writes them) and our own
`deci` files (per-layer widths). Weights are dequantized with gguf's numpy kernels to **float32**:
every quantized value (Q4_0/Q4_1/Q8_0/k-quants: fp16 scale × small integer, + fp16 min) is
exactly representable in float32, so the PyTorch model computes with precisely the weights the
file holds; it does not undo the quantization error. The tokenizer is rebuilt from the metadata
(export/gguf_tokenizer_in.py) with its special tokens and chat template.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from edgeprune.errors import CheckpointError, EdgepruneError, UnsupportedArchitecture

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHS = ("llama", "qwen2", "deci")


def is_gguf_file(path: Path) -> bool:
    """A file named *.gguf or starting with the GGUF magic."""
    if not path.is_file():
        return False
    if path.suffix.lower() == ".gguf":
        return True
    with open(path, "rb") as f:
        return f.read(4) == GGUF_MAGIC


def gguf_checkpoint_dir(path: Path) -> Path:
    """The checkpoint directory converted from GGUF `path` (converted now if not cached)."""
    from edgeprune.data import cache_root
    from edgeprune.hashing import file_sha256

    path = Path(path).expanduser()
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise CheckpointError(f"{path} is not a GGUF file (no GGUF magic at its start)")
    digest = file_sha256(path)
    out = cache_root() / "gguf-input" / f"{path.stem}-{digest[:16]}"
    if (out / "config.json").is_file():
        return out
    convert_gguf(path, out, digest)
    return out


def convert_gguf(path: Path, out: Path, digest: str = "") -> Path:
    """Write GGUF `path` as a float32 checkpoint directory `out` (atomically)."""
    import gguf

    from edgeprune.checkpoint import load_weights, save_checkpoint
    from edgeprune.export.gguf_reader import _fields, open_gguf, read_gguf
    from edgeprune.export.gguf_tokenizer_in import write_tokenizer
    from edgeprune.model import EdgeLM

    try:
        md = _fields(open_gguf(path))
    except EdgepruneError as e:
        raise CheckpointError(str(e)) from None
    arch = md.get(gguf.Keys.General.ARCHITECTURE)
    if arch not in SUPPORTED_ARCHS:
        raise UnsupportedArchitecture(f"{path.name}: GGUF architecture {arch!r} is not supported as input "
                                      f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    _refuse_unsupported_hparams(path, md, arch)
    try:
        spec, state = read_gguf(path)
    except EdgepruneError as e:
        raise CheckpointError(f"{path.name}: {e}") from None
    except (ValueError, KeyError, TypeError, NotImplementedError) as e:  # odd tensor types, missing keys
        raise CheckpointError(f"{path.name}: cannot read its tensors ({type(e).__name__}: {e})") from None
    _refuse_unread_tensors(path, md, spec)
    model = EdgeLM(spec)
    load_weights(model, state, where=path.name)
    name = md.get(gguf.Keys.General.NAME) or md.get(gguf.Keys.General.BASENAME) or path.stem
    meta = {"name": str(name), "basename": str(md.get(gguf.Keys.General.BASENAME) or name), "source_model": str(path),
            "source_gguf": {"file": path.name, "sha256": digest, "arch": arch,
                            "file_type": md.get(gguf.Keys.General.FILE_TYPE),
                            "dequantized_to": "float32"}}
    from edgeprune.export.gguf_tokenizer_in import SPECIAL_ID_KEYS

    ids = {f"{r}_token_id": int(md[SPECIAL_ID_KEYS[r]]) for r in ("bos", "eos", "pad")
           if md.get(SPECIAL_ID_KEYS[r]) is not None}
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tok-", dir=out.parent) as tok_dir:
        summary = write_tokenizer(md, Path(tok_dir))
        meta["source_gguf"]["tokenizer"] = summary
        save_checkpoint(model, out, tokenizer_dir=Path(tok_dir), config_extra=ids, meta=meta)
    log.info("converted %s (%s, %d params) to %s", path.name, arch, spec.n_params, out)
    return out


def _refuse_unsupported_hparams(path: Path, md: dict[str, Any], arch: str) -> None:
    """RoPE scaling, sliding windows, experts: things our model does not compute."""
    problems = []
    scaling = md.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none", "linear") or (scaling == "linear" and md.get(f"{arch}.rope.scaling.factor", 1.0) != 1.0):
        problems.append(f"rope scaling {scaling!r}")
    if md.get(f"{arch}.expert_count"):
        problems.append("mixture of experts")
    if md.get(f"{arch}.attention.sliding_window"):
        problems.append("sliding-window attention")
    if problems:
        raise UnsupportedArchitecture(f"{path.name}: {', '.join(problems)} is not supported (default RoPE, dense "
                                      f"Llama / Qwen2 only)")


def _refuse_unread_tensors(path: Path, md: dict[str, Any], spec: Any) -> None:
    """A tensor the reader did not map (rope_freqs of Llama-3.1, extra norms) would be silently
    dropped and the model would compute something else: refuse instead."""
    from edgeprune.export.gguf_reader import open_gguf
    from edgeprune.export.gguf_writer import HF_TO_GGUF_GLOBAL, HF_TO_GGUF_LAYER, tensor_name

    known = {tensor_name(k, None, s) for k, s in HF_TO_GGUF_GLOBAL.values()}
    for i in range(spec.n_layers):
        known |= {tensor_name(k, i, s) for k, s in HF_TO_GGUF_LAYER.values()}
    extra = [t.name for t in open_gguf(path).tensors if t.name not in known]
    if extra:
        raise UnsupportedArchitecture(f"{path.name}: tensors {extra[:3]} are not part of a Llama / Qwen2 model "
                                      f"edgeprune computes")


__all__ = ["is_gguf_file", "gguf_checkpoint_dir", "convert_gguf", "SUPPORTED_ARCHS"]

