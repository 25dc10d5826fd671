"""A GGUF file as a model input: converted once into a checkpoint directory.

Every command resolves its model through `checkpoint.resolve_checkpoint_dir`, which reads a
`.gguf` path through this module and writes what it holds; the file becomes an ordinary HF-style directory in the cache
(`$EDGEPRUNE_CACHE/gguf-input/<stem>-<sha256[:16]>/`, keyed by content, never beside the user's
file), so `info`, `prune`, `train --teacher`, `eval`, `export`, `ship` and `compare` accept it
unchanged.

Accepted: `llama` and `qwen2` GGUFs (uniform, as llama.cpp's converter writes them) and our own
`deci` files (per-layer widths). Weights are dequantized with gguf's numpy kernels to **float32**:
every quantized value (Q4_0/Q4_1/Q8_0/k-quants: fp16 scale × small integer, + fp16 min) is
exactly representable in float32, so the PyTorch model computes with precisely the weights the
file holds; it does not undo the quantization error. The tokenizer is rebuilt from the metadata
(edgeprune/files/gguf_tokenizer_in.py) with its special tokens and chat template.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.base.errors import CheckpointError, EdgepruneError, UnsupportedArchitecture

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


def gguf_cache_dir(path: Path) -> tuple[Path, str]:
    """(the cached checkpoint directory GGUF `path` converts into, the file's sha256): keyed by
    content, so an edited file converts again and the user's folder is never written."""
    from edgeprune.base.hashing import file_sha256
    from edgeprune.base.paths import cache_root

    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise CheckpointError(f"{path} is not a GGUF file (no GGUF magic at its start)")
    digest = file_sha256(path)
    return cache_root() / "gguf-input" / f"{path.stem}-{digest[:16]}", digest


@dataclass
class GGUFModel:
    """What a GGUF file holds, as a checkpoint needs it; edgeprune/files/checkpoint.py writes it out (this
    module reads, checkpoint.py writes: neither imports the other's half)."""

    spec: Any  # ArchSpec
    state: dict[str, Any]  # HF-named float32 tensors
    meta: dict[str, Any]  # edgeprune.json: name, source file, its sha256 and file type
    config_extra: dict[str, int]  # bos/eos/pad token ids for config.json
    metadata: dict[str, Any]  # the GGUF key/value fields (the tokenizer is rebuilt from them)

    def write_tokenizer(self, out_dir: Path) -> dict[str, Any]:
        """Write tokenizer.json / tokenizer_config.json rebuilt from the metadata; returns a summary."""
        from edgeprune.files.gguf_tokenizer_in import write_tokenizer

        summary = write_tokenizer(self.metadata, out_dir)
        self.meta["source_gguf"]["tokenizer"] = summary
        return summary


def read_gguf_model(path: Path, digest: str = "", progress: bool = False) -> GGUFModel:
    """Read GGUF `path` into float32 weights, checking first that our model computes what it holds."""
    import gguf

    from edgeprune.files.gguf_reader import _fields, open_gguf, read_gguf
    from edgeprune.files.gguf_tokenizer_in import SPECIAL_ID_KEYS

    try:  # opened once: the metadata checks, the tensors and the unread-tensor check read this reader
        reader = open_gguf(path)
    except EdgepruneError as e:
        raise CheckpointError(str(e)) from None
    md = _fields(reader)
    arch = md.get(gguf.Keys.General.ARCHITECTURE)
    if arch not in SUPPORTED_ARCHS:
        raise UnsupportedArchitecture(f"{path.name}: GGUF architecture {arch!r} is not supported as input "
                                      f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    _refuse_unsupported_hparams(path, md, arch)
    try:
        spec, state = read_gguf(path, reader, progress=progress)
    except EdgepruneError as e:
        raise CheckpointError(f"{path.name}: {e}") from None
    except (ValueError, KeyError, TypeError, NotImplementedError) as e:  # odd tensor types, missing keys
        raise CheckpointError(f"{path.name}: cannot read its tensors ({type(e).__name__}: {e})") from None
    _refuse_unread_tensors(path, reader, spec)
    _refuse_token_count(path, md, state)
    name = md.get(gguf.Keys.General.NAME) or md.get(gguf.Keys.General.BASENAME) or path.stem
    meta = {"name": str(name), "basename": str(md.get(gguf.Keys.General.BASENAME) or name), "source_model": str(path),
            "source_gguf": {"file": path.name, "sha256": digest, "arch": arch,
                            "file_type": md.get(gguf.Keys.General.FILE_TYPE),
                            "dequantized_to": "float32"}}
    ids = {f"{r}_token_id": int(md[SPECIAL_ID_KEYS[r]]) for r in ("bos", "eos", "pad")
           if md.get(SPECIAL_ID_KEYS[r]) is not None}
    log.info("read %s (%s, %d params)", path.name, arch, spec.n_params)
    return GGUFModel(spec, state, meta, ids, md)


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


def _refuse_token_count(path: Path, md: dict[str, Any], state: dict[str, Any]) -> None:
    """A token list that is not one token per embedding and output row: llama.cpp refuses such a
    file (its vocabulary size is the list's length), and ids past the rows would index nothing."""
    import gguf

    if md.get(gguf.Keys.Tokenizer.MODEL) in (None, "none"):
        return  # token ids only: the rows are the vocabulary
    n = len(md.get(gguf.Keys.Tokenizer.LIST) or [])
    rows = {name: int(t.shape[0]) for name, t in state.items() if name in ("model.embed_tokens.weight", "lm_head.weight")}
    bad = {name: r for name, r in rows.items() if r != n}
    if n == 0 or bad:
        name, r = next(iter(bad.items())) if bad else next(iter(rows.items()), ("the embedding", 0))
        raise CheckpointError(f"{path.name}: its token list (tokenizer.ggml.tokens) holds {n} tokens but {name} has "
                              f"{r} rows: one token per row is needed (llama.cpp refuses this file too)")


def _refuse_unread_tensors(path: Path, reader: Any, spec: Any) -> None:
    """A tensor the reader did not map (rope_freqs of Llama-3.1, extra norms) would be silently
    dropped and the model would compute something else: refuse instead."""
    from edgeprune.files.gguf_format import HF_TO_GGUF_GLOBAL, HF_TO_GGUF_LAYER, tensor_name

    known = {tensor_name(k, None, s) for k, s in HF_TO_GGUF_GLOBAL.values()}
    for i in range(spec.n_layers):
        known |= {tensor_name(k, i, s) for k, s in HF_TO_GGUF_LAYER.values()}
    extra = [t.name for t in reader.tensors if t.name not in known]
    if extra:
        raise UnsupportedArchitecture(f"{path.name}: tensors {extra[:3]} are not part of a Llama / Qwen2 model "
                                      f"edgeprune computes")


__all__ = ["is_gguf_file", "gguf_cache_dir", "GGUFModel", "read_gguf_model", "SUPPORTED_ARCHS"]

