"""GGUF -> (ArchSpec, HF-named state dict), and per-tensor quantization facts.
In the core: a GGUF file is a model input every verb accepts (edgeprune/files/gguf_input.py).

The inverse of export/gguf_writer.py, in the layout edgeprune/files/gguf_format.py defines: reads the metadata through gguf.GGUFReader, undoes the q/k row
permutation and the zero stand-ins for removed blocks, and dequantizes with gguf's own numpy
kernels. F32 / F16 files reproduce the spec and weights exactly (F16 up to the cast).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.base.errors import ExportError
from edgeprune.shape.spec import ArchSpec, LayerSpec, bounded


def _fields(reader: Any) -> dict[str, Any]:
    out = {}
    for name, field in reader.fields.items():
        try:
            out[name] = field.contents()
        except Exception:  # exotic types we never read
            continue
    return out


def open_gguf(path: Path) -> Any:
    """gguf.GGUFReader over `path`, once its header has been walked with every size bounded by the
    file (edgeprune/files/gguf_header.py): a lying header is one line naming what is wrong, never an
    endless loop or gguf's internal exception text."""
    import gguf

    from edgeprune.files.gguf_header import check_gguf_header

    check_gguf_header(Path(path))
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, KeyError, IndexError, TypeError, RecursionError, OverflowError) as e:
        raise ExportError(f"{path} is not a readable GGUF file: {_in_user_terms(e)}") from None


def _in_user_terms(e: BaseException) -> str:
    """What gguf's reader complained about, without its exception type or internal offsets."""
    text = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
    if isinstance(e, IndexError):
        return "it is truncated (a field runs past the end of the file)"
    if isinstance(e, RecursionError):
        return "its metadata nests too deeply"
    return text.removeprefix("Sorry, ") or type(e).__name__


def read_metadata(path: Path) -> dict[str, Any]:
    return _fields(open_gguf(path))


def spec_from_metadata(md: dict[str, Any]) -> ArchSpec:
    """The ArchSpec a GGUF describes, from the standard llama.cpp keys (edgeprune's own keys only
    undo the padding of removed blocks)."""
    import gguf
    from edgeprune.files.gguf_format import EDGEPRUNE_KEYS

    K = gguf.Keys
    arch = md.get(K.General.ARCHITECTURE)
    if arch not in ("llama", "qwen2", "deci"):
        raise ExportError(f"GGUF architecture {arch!r} is not one edgeprune writes (llama, qwen2, deci)")
    a = {"arch": arch}

    def get(key: str, default: Any = None) -> Any:
        return md.get(key.format(**a), default)

    n_layers = bounded(get(K.LLM.BLOCK_COUNT), "n_layers", K.LLM.BLOCK_COUNT.format(**a))

    def per_layer(key: str) -> list[int]:
        v = get(key)
        if isinstance(v, list) and len(v) != n_layers:
            raise ExportError(f"GGUF metadata {key.format(**a)} has {len(v)} entries for {n_layers} layers")
        return [int(x) for x in v] if isinstance(v, list) else [int(v)] * n_layers

    heads = per_layer(K.Attention.HEAD_COUNT)
    kv = per_layer(K.Attention.HEAD_COUNT_KV) if get(K.Attention.HEAD_COUNT_KV) is not None else list(heads)
    ffn = per_layer(K.LLM.FEED_FORWARD_LENGTH)
    for i in md.get(EDGEPRUNE_KEYS["padded_ffn"]) or []:
        ffn[int(i)] = 0
    for i in md.get(EDGEPRUNE_KEYS["padded_attn"]) or []:
        heads[int(i)] = kv[int(i)] = 0
    hidden = int(get(K.LLM.EMBEDDING_LENGTH))
    extra = {}
    own = md.get(EDGEPRUNE_KEYS["spec"])
    if own:  # family and tie are not llama.cpp hparams: take them from our own record
        d = json.loads(own)
        extra = {"family": d["family"], "tie_word_embeddings": d["tie_word_embeddings"]}
        # GGUF stores these as float32: keep our exact float64 when it is the same number
        for key, gkey in (("rms_norm_eps", K.Attention.LAYERNORM_RMS_EPS), ("rope_theta", K.Rope.FREQ_BASE)):
            if key in d and np.float32(d[key]) == np.float32(get(gkey, np.nan)):
                extra[key] = d[key]
    family = extra.get("family", "qwen2" if arch == "qwen2" else "llama")
    return ArchSpec(
        family=family,
        vocab_size=int(get(K.LLM.VOCAB_SIZE, 0)) or len(md.get(K.Tokenizer.LIST, [])),
        hidden_size=hidden,
        head_dim=int(get(K.Attention.KEY_LENGTH, hidden // max(1, heads[0]))),
        layers=tuple(LayerSpec(a_, b_, c_) for a_, b_, c_ in zip(heads, kv, ffn)),
        rope_theta=float(extra.get("rope_theta", get(K.Rope.FREQ_BASE, 10000.0))),
        rms_norm_eps=float(extra.get("rms_norm_eps", get(K.Attention.LAYERNORM_RMS_EPS, 1e-5))),
        max_position_embeddings=int(get(K.LLM.CONTEXT_LENGTH, 2048)),
        tie_word_embeddings=bool(extra.get("tie_word_embeddings", True)),
    )


def tensor_array(t: Any) -> np.ndarray:
    """Dequantized float32 array of a ReaderTensor in numpy (rows, cols) order."""
    import gguf

    T = gguf.GGMLQuantizationType
    if t.tensor_type in (T.F32, T.F16):
        arr = np.asarray(t.data, dtype=np.float32)
    else:
        arr = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32)
    shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # ggml ne is (cols, rows)
    return arr.reshape(shape)


def read_gguf(path: Path, reader: Any = None, progress: bool = False) -> tuple[ArchSpec, dict[str, Any]]:
    """(spec, state dict with HF names as float32 torch tensors) of a GGUF edgeprune wrote;
    `reader`: the file already opened (`open_gguf`), so a caller that read its metadata first does
    not parse it again. `progress`: a progress line per layer dequantized (a real model's
    quantized tensors take a minute on a CPU)."""
    import torch

    from edgeprune.base.progress import progress_bar

    from edgeprune.files.gguf_format import HF_TO_GGUF_GLOBAL, HF_TO_GGUF_LAYER, gguf_layout, tensor_name, unpermute_rows

    reader = reader if reader is not None else open_gguf(Path(path))
    md = _fields(reader)
    spec = spec_from_metadata(md)
    layout = gguf_layout(spec)
    tensors = {t.name: t for t in reader.tensors}
    has_output = tensor_name("OUTPUT") in tensors
    if not spec.tie_word_embeddings and not has_output:
        raise ExportError(f"{path}: untied model but no {tensor_name('OUTPUT')} tensor")
    spec = spec if has_output == (not spec.tie_word_embeddings) else _with_tie(spec, not has_output)
    state: dict[str, Any] = {}
    for hf, (kind, suffix) in HF_TO_GGUF_GLOBAL.items():
        name = tensor_name(kind, None, suffix)
        if name in tensors:
            state[hf] = tensor_array(tensors[name])
    layers = progress_bar(list(enumerate(zip(spec.layers, layout.layers))), desc=f"dequantize {Path(path).name}",
                          unit="layer", disable=not progress)
    for i, (lay, wrote) in layers:
        for hf_suffix, (kind, suffix) in HF_TO_GGUF_LAYER.items():
            name = tensor_name(kind, i, suffix)
            if name not in tensors:
                continue
            is_attn = hf_suffix.startswith(("self_attn", "input_layernorm"))
            if (is_attn and not lay.has_attention) or (not is_attn and not lay.has_mlp):
                continue  # a zero stand-in for a removed block
            arr = tensor_array(tensors[name])
            if layout.permute_qk and hf_suffix.startswith("self_attn.q_proj"):
                arr = unpermute_rows(arr, wrote.n_heads)
            elif layout.permute_qk and hf_suffix.startswith("self_attn.k_proj"):
                arr = unpermute_rows(arr, wrote.n_kv_heads)
            state[f"model.layers.{i}.{hf_suffix}"] = arr
    return spec, {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in state.items()}


def _with_tie(spec: ArchSpec, tie: bool) -> ArchSpec:
    from dataclasses import replace

    return replace(spec, tie_word_embeddings=tie)


def tensor_report(path: Path) -> dict[str, Any]:
    """What llama.cpp's quantizer really did: per-tensor GGML type, the fallbacks (a matrix
    left at a type other than the file's target because its row length is not a multiple of
    the block size), and the real bits per weight over all tensors and over the matrices."""
    import gguf

    reader = open_gguf(Path(path))
    md = _fields(reader)
    ftype = md.get(gguf.Keys.General.FILE_TYPE)
    target = _target_type(ftype)
    per_tensor, fallbacks = {}, []
    total_bytes = total_elems = mat_bytes = mat_elems = 0
    for t in reader.tensors:
        tname = t.tensor_type.name
        per_tensor[t.name] = tname
        total_bytes += int(t.n_bytes)
        total_elems += int(t.n_elements)
        if len(t.shape) >= 2:
            mat_bytes += int(t.n_bytes)
            mat_elems += int(t.n_elements)
            row = int(t.shape[0])
            block = gguf.GGML_QUANT_SIZES[target][0] if target is not None else 1
            if target is not None and row % block and tname != target.name:
                fallbacks.append({"tensor": t.name, "row": row, "wanted": target.name, "got": tname})
    counts: dict[str, int] = {}
    for v in per_tensor.values():
        counts[v] = counts.get(v, 0) + 1
    return {
        "file_type": int(ftype) if ftype is not None else None,
        "tensor_types": per_tensor,
        "type_counts": counts,
        "fallbacks": fallbacks,
        "bits_per_weight": 8 * total_bytes / max(1, total_elems),
        "matrix_bits_per_weight": 8 * mat_bytes / max(1, mat_elems),
    }


def _target_type(ftype: Any) -> Any:
    """The GGML type a llama ftype aims its matrices at (Q4_K_M -> Q4_K, ...); None for float."""
    import gguf

    from edgeprune.shape.quant_presets import gguf_base_type, gguf_name_of_ftype

    if ftype is None:
        return None
    try:
        return gguf.GGMLQuantizationType[gguf_base_type(gguf_name_of_ftype(ftype))]
    except KeyError:
        return None
