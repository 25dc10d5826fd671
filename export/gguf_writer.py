"""ArchSpec + weights -> a GGUF file llama.cpp loads (DESIGN §6).

The layout (which GGUF architecture, the q/k permutation, the zero stand-ins for removed
attention / MLP that llama.cpp's `deci` needs) and the tensor names are edgeprune/files/gguf_format.py,
shared with the reader; this module writes tensors and metadata in that layout.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from edgeprune.base.atomic_io import atomic_path
from edgeprune.base.errors import ExportError
from edgeprune.files.gguf_format import (EDGEPRUNE_KEYS, HF_TO_GGUF_LAYER, PAD_FFN, GGUFLayout, gguf_layout, permute_rows,
                                    tensor_name)
from edgeprune.shape.spec import ArchSpec

log = logging.getLogger(__name__)

def gguf_tensors(spec: ArchSpec, state: Mapping[str, Any], layout: GGUFLayout) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every tensor to write, permuted and padded per `layout`."""
    h, d = spec.hidden_size, spec.head_dim
    arrays = {k: _np32(v) for k, v in state.items()}
    out: list[tuple[str, np.ndarray]] = [(tensor_name("TOKEN_EMBD"), arrays["model.embed_tokens.weight"])]
    for i, wrote in enumerate(layout.layers):
        prefix = f"model.layers.{i}."
        layer = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if i in layout.padded_attn:  # one zero head: q=k=v=0 -> attention adds exactly 0
            layer["input_layernorm.weight"] = np.ones(h, np.float32)
            for proj in ("q", "k", "v"):
                layer[f"self_attn.{proj}_proj.weight"] = np.zeros((d, h), np.float32)
            layer["self_attn.o_proj.weight"] = np.zeros((h, d), np.float32)
        if i in layout.padded_ffn:  # zero SwiGLU: down_proj = 0 -> MLP adds exactly 0
            layer["post_attention_layernorm.weight"] = np.ones(h, np.float32)
            layer["mlp.gate_proj.weight"] = np.zeros((PAD_FFN, h), np.float32)
            layer["mlp.up_proj.weight"] = np.zeros((PAD_FFN, h), np.float32)
            layer["mlp.down_proj.weight"] = np.zeros((h, PAD_FFN), np.float32)
        for hf_name, (kind, suffix) in HF_TO_GGUF_LAYER.items():
            if hf_name not in layer:
                continue
            arr = layer[hf_name]
            if layout.permute_qk and hf_name.startswith("self_attn.q_proj"):
                arr = permute_rows(arr, wrote.n_heads)
            elif layout.permute_qk and hf_name.startswith("self_attn.k_proj"):
                arr = permute_rows(arr, wrote.n_kv_heads)
            out.append((tensor_name(kind, i, suffix), arr))
    out.append((tensor_name("OUTPUT_NORM"), arrays["model.norm.weight"]))
    if not spec.tie_word_embeddings:
        out.append((tensor_name("OUTPUT"), arrays["lm_head.weight"]))
    return out


def _np32(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().to("cpu").float().numpy()
    return np.ascontiguousarray(np.asarray(t, dtype=np.float32))


# ----- metadata -----------------------------------------------------------------------------

def add_hparams(w: Any, spec: ArchSpec, layout: GGUFLayout) -> None:
    w.add_context_length(spec.max_position_embeddings)
    w.add_embedding_length(spec.hidden_size)
    w.add_block_count(spec.n_layers)
    w.add_vocab_size(spec.vocab_size)
    if layout.arch_name == "deci":  # per-layer arrays; uniform archs get scalars
        w.add_head_count([lay.n_heads for lay in layout.layers])
        w.add_head_count_kv([lay.n_kv_heads for lay in layout.layers])
        w.add_feed_forward_length([lay.ffn_dim for lay in layout.layers])
    else:
        lay = layout.layers[0]
        w.add_head_count(lay.n_heads)
        w.add_head_count_kv(lay.n_kv_heads)
        w.add_feed_forward_length(lay.ffn_dim)
    # explicit head size: llama.cpp would otherwise guess hidden / n_head, wrong for pruned heads
    w.add_key_length(spec.head_dim)
    w.add_value_length(spec.head_dim)
    w.add_rope_dimension_count(spec.head_dim)
    w.add_rope_freq_base(float(spec.rope_theta))
    w.add_layer_norm_rms_eps(float(spec.rms_norm_eps))


GENERIC_STEMS = {"model", "dist", "out", "output", "pruned", "recovered", "student", "teacher", "ckpt",
                 "checkpoint", "final", "tmp", "hf", "export"}


def _looks_like_hub_name(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not Path(text).exists()


def _pruning(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The pruning record of edgeprune.json ("pruning", from prune/ship; "prune" in older files)."""
    for key in ("pruning", "prune"):
        if isinstance(meta.get(key), dict):
            return dict(meta[key])
    return {}


def model_names(meta: Mapping[str, Any], stem: Optional[str] = None) -> tuple[str, str]:
    """(general.name, general.basename) for a model: what apps list it as.

    The base name is the model's own (`name` in edgeprune.json, e.g. from an input GGUF's
    general.name or the embedded teacher), else its source model's (a hub name's last part, or a
    source directory's name), else the file stem; generic directory names ("model", "dist", ...)
    never stand for a model. A pruned model's name says so, with the method and the share of
    parameters removed. Never a filesystem path."""
    def usable(text: Any) -> Optional[str]:
        if not text:
            return None
        last = Path(str(text).rstrip("/")).name
        return last if last and last.lower() not in GENERIC_STEMS and not last.startswith(".") else None

    src = meta.get("source") if isinstance(meta.get("source"), dict) else {}  # a derived model's source figures
    base = (usable(meta.get("name")) or usable(src.get("name")) or usable(meta.get("source_model")) or usable(stem)
            or "edgeprune-model")
    prune = _pruning(meta)
    name = base
    if prune.get("method"):
        ratio = prune.get("ratio_removed", prune.get("ratio"))
        pct = f" {100 * float(ratio):.0f}%" if ratio is not None else ""
        name = f"{base} pruned{pct} ({prune['method']})"
    if meta.get("recovery") or (prune.get("method") and meta.get("train")):  # ship / `edgeprune train`
        name += " recovered"
    # an input GGUF's own basename ("smollm2"), kept by derived models under "source"
    return name, usable(meta.get("basename")) or usable(src.get("basename")) or base


def _add_general(w: Any, spec: ArchSpec, name: Optional[str], meta: Mapping[str, Any], layout: GGUFLayout,
                 stem: Optional[str] = None) -> None:
    import gguf

    full, base = model_names(meta, stem)
    w.add_name(name or full)
    w.add_basename(base)
    w.add_size_label(gguf.size_label(spec.n_params, 0, 0, 0))
    source = str(meta.get("source_model") or "")
    if source and _looks_like_hub_name(source):  # a local path never goes into the file
        w.add_base_model_count(1)
        w.add_base_model_name(0, source.split("/")[-1])
        w.add_base_model_organization(0, source.split("/")[0])
        w.add_base_model_repo_url(0, f"https://huggingface.co/{source}")
    prune = _pruning(meta) or meta
    method, ratio = prune.get("method"), prune.get("ratio_removed", prune.get("ratio", prune.get("target_ratio")))
    if method:
        w.add_string(EDGEPRUNE_KEYS["prune_method"], str(method))
    if ratio is not None:
        w.add_float32(EDGEPRUNE_KEYS["prune_ratio"], float(ratio))
    w.add_string(EDGEPRUNE_KEYS["spec"], spec.to_json())
    if layout.padded_ffn:
        w.add_array(EDGEPRUNE_KEYS["padded_ffn"], list(layout.padded_ffn))
    if layout.padded_attn:
        w.add_array(EDGEPRUNE_KEYS["padded_attn"], list(layout.padded_attn))


# ----- the file -----------------------------------------------------------------------------

def write_gguf(
    model: Any,  # EdgeLM
    path: Path,
    *,
    ftype: str = "F32",
    tokenizer_dir: Optional[Path] = None,
    config: Optional[Mapping[str, Any]] = None,
    meta: Optional[Mapping[str, Any]] = None,
    name: Optional[str] = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write `model` as a float GGUF (`ftype` F32 / F16 / BF16) atomically; return a summary
    (arch, padded layers, tokenizer) for the manifest."""
    import gguf

    from edgeprune.export.gguf_tokenizer import add_tokenizer
    from edgeprune.shape.quant_presets import gguf_ftype

    ftype = ftype.upper()
    if ftype not in ("F32", "F16", "BF16"):
        raise ExportError(f"write_gguf writes float files only (F32, F16, BF16), not {ftype!r}; "
                          f"quantized types come from llama.cpp's quantizer (gguf_export)")
    spec: ArchSpec = model.spec
    layout = gguf_layout(spec)
    path = Path(path)
    meta = dict(meta or {})
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(tmp, layout.arch_name)
        _add_general(w, spec, name, meta, layout, stem=path.stem.rsplit("-", 1)[0])
        add_hparams(w, spec, layout)
        w.add_file_type(gguf_ftype(ftype))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tok = add_tokenizer(w, Path(tokenizer_dir) if tokenizer_dir else None, dict(config or {}), spec.vocab_size)
        for tname, arr in gguf_tensors(spec, model.state_dict(), layout):
            _add_tensor(w, tname, arr, ftype)
        try:
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file(progress=progress)
        finally:  # closed on a failed write too: an open, deleted temporary keeps a full disk full
            w.close()
    log.info("wrote %s (%s, arch %s)", path, ftype, layout.arch_name)
    return {"arch": layout.arch_name, "permuted_qk": layout.permute_qk, "padded_ffn_layers": list(layout.padded_ffn),
            "padded_attn_layers": list(layout.padded_attn), "tokenizer": tok}


def _add_tensor(w: Any, name: str, arr: np.ndarray, ftype: str) -> None:
    """1-D tensors (norms, biases) stay F32 as llama.cpp expects; matrices take `ftype`."""
    import gguf

    if arr.ndim < 2 or ftype == "F32":
        w.add_tensor(name, arr.astype(np.float32))
    elif ftype == "F16":
        w.add_tensor(name, arr.astype(np.float16))
    else:  # BF16: gguf stores it as raw bytes
        raw = gguf.quants.quantize(arr, gguf.GGMLQuantizationType.BF16)
        w.add_tensor(name, raw, raw_dtype=gguf.GGMLQuantizationType.BF16)
