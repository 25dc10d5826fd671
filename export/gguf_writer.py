"""ArchSpec + weights -> a GGUF file llama.cpp loads (DESIGN §6, issue 6).

Which GGUF architecture (`gguf_layout`):
- uniform `llama` family  -> arch `llama`  (q/k rows permuted to llama.cpp's interleaved RoPE);
- uniform `qwen2` family  -> arch `qwen2`  (NEOX RoPE: no permutation; q/k/v biases);
- anything heterogeneous  -> arch `deci` with per-layer `head_count`, `head_count_kv`,
  `feed_forward_length` arrays (llama.cpp's `llama` arch rejects per-layer arrays at load). Deci
  uses interleaved RoPE, so q/k rows *and* q/k biases are permuted; its loader takes optional
  q/k/v biases of size n_head·head_dim / n_kv·head_dim (src/models/deci.cpp via
  create_tensor_qkv), so heterogeneous Qwen2 models go there too.
Two llama.cpp `deci` quirks are written around, each with an exactly equivalent function:
- a layer with `feed_forward_length` 0 makes the graph `continue` before the residual add, i.e.
  it *drops that layer's attention output* (and aborts when it is the last layer): we write such
  a layer with a PAD_FFN-wide all-zero SwiGLU (down_proj 0 => adds exactly 0);
- llama.cpp derives head size and n_rot from layer 0's head count (llama-model.cpp
  load_hparams: `if (hparams.n_head() > 0)`), so an attention-free layer 0 would zero them for
  every layer: we write layer 0 with one all-zero head (v = 0 => attention adds exactly 0).
Which layers were padded is recorded under EDGEPRUNE_KEYS so `read_gguf` restores the spec.

Tensor names and metadata keys come from the gguf package (gguf.TENSOR_NAMES, gguf.Keys through
GGUFWriter.add_*); only our own provenance keys (EDGEPRUNE_KEYS) are spelled here.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from edgeprune.errors import ExportError
from edgeprune.spec import ArchSpec, LayerSpec

log = logging.getLogger(__name__)

PAD_FFN = 32  # width of the all-zero FFN standing in for a removed MLP (one Q4_0/Q8_0 block)

# our own metadata (no gguf constant exists for these): provenance and the padding to undo
EDGEPRUNE_KEYS = {
    "spec": "edgeprune.spec",  # the ArchSpec JSON, for humans and tools
    "padded_ffn": "edgeprune.padded_ffn_layers",  # layers whose zero FFN stands for "no MLP"
    "padded_attn": "edgeprune.padded_attn_layers",  # layers whose zero head stands for "no attention"
    "prune_method": "edgeprune.prune.method",
    "prune_ratio": "edgeprune.prune.ratio",
}


@dataclass(frozen=True)
class GGUFLayout:
    """How a spec is laid out in GGUF: the arch, whether q/k are permuted, the widths written."""

    arch: Any  # gguf.MODEL_ARCH
    permute_qk: bool  # llama.cpp's interleaved ("normal") RoPE wants HF rows permuted
    layers: tuple[LayerSpec, ...]  # widths as written (padded layers included)
    padded_ffn: tuple[int, ...]  # layer indices whose FFN is the zero stand-in
    padded_attn: tuple[int, ...]  # layer indices whose attention is the zero stand-in

    @property
    def arch_name(self) -> str:
        import gguf

        return gguf.MODEL_ARCH_NAMES[self.arch]


def gguf_layout(spec: ArchSpec) -> GGUFLayout:
    import gguf

    complete = all(lay.has_attention and lay.has_mlp for lay in spec.layers)
    if spec.is_uniform and complete:
        if spec.family == "qwen2":
            return GGUFLayout(gguf.MODEL_ARCH.QWEN2, False, spec.layers, (), ())
        return GGUFLayout(gguf.MODEL_ARCH.LLAMA, True, spec.layers, (), ())
    layers = list(spec.layers)
    padded_ffn = tuple(i for i, lay in enumerate(layers) if not lay.has_mlp)
    for i in padded_ffn:
        layers[i] = LayerSpec(layers[i].n_heads, layers[i].n_kv_heads, PAD_FFN)
    padded_attn: tuple[int, ...] = ()
    if not layers[0].has_attention:
        padded_attn = (0,)
        layers[0] = LayerSpec(1, 1, layers[0].ffn_dim)
    return GGUFLayout(gguf.MODEL_ARCH.DECI, True, tuple(layers), padded_ffn, padded_attn)


# ----- q/k row permutation (HF rotate-half RoPE <-> llama.cpp interleaved pairs) --------------

def permute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF -> GGUF: within each head, row order [x0..x(d/2-1), y0..] becomes [x0, y0, x1, y1, ...].
    Works for weights (rows, cols) and biases (rows,)."""
    d = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, d // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """GGUF -> HF: inverse of permute_rows."""
    d = w.shape[0] // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ----- tensors ------------------------------------------------------------------------------

def tensor_name(kind: str, bid: Optional[int] = None, suffix: str = "weight") -> str:
    """GGUF tensor name from gguf's own table, e.g. ("ATTN_Q", 3) -> "blk.3.attn_q.weight"."""
    import gguf

    base = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR[kind]]
    return f"{base.format(bid=bid) if bid is not None else base}.{suffix}"


# HF per-layer tensor -> (gguf MODEL_TENSOR member, suffix)
HF_TO_GGUF_LAYER = {
    "input_layernorm.weight": ("ATTN_NORM", "weight"),
    "self_attn.q_proj.weight": ("ATTN_Q", "weight"),
    "self_attn.k_proj.weight": ("ATTN_K", "weight"),
    "self_attn.v_proj.weight": ("ATTN_V", "weight"),
    "self_attn.o_proj.weight": ("ATTN_OUT", "weight"),
    "self_attn.q_proj.bias": ("ATTN_Q", "bias"),
    "self_attn.k_proj.bias": ("ATTN_K", "bias"),
    "self_attn.v_proj.bias": ("ATTN_V", "bias"),
    "post_attention_layernorm.weight": ("FFN_NORM", "weight"),
    "mlp.gate_proj.weight": ("FFN_GATE", "weight"),
    "mlp.up_proj.weight": ("FFN_UP", "weight"),
    "mlp.down_proj.weight": ("FFN_DOWN", "weight"),
}
HF_TO_GGUF_GLOBAL = {
    "model.embed_tokens.weight": ("TOKEN_EMBD", "weight"),
    "model.norm.weight": ("OUTPUT_NORM", "weight"),
    "lm_head.weight": ("OUTPUT", "weight"),
}


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
    parameters removed. Never a filesystem path (issue 14 §5)."""
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
    from edgeprune.export.presets import gguf_ftype

    ftype = ftype.upper()
    if ftype not in ("F32", "F16", "BF16"):
        raise ExportError(f"write_gguf writes float files only (F32, F16, BF16), not {ftype!r}; "
                          f"quantized types come from llama.cpp's quantizer (gguf_export)")
    spec: ArchSpec = model.spec
    layout = gguf_layout(spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    meta = dict(meta or {})
    try:
        w = gguf.GGUFWriter(tmp, layout.arch_name)
        _add_general(w, spec, name, meta, layout, stem=path.stem.rsplit("-", 1)[0])
        add_hparams(w, spec, layout)
        w.add_file_type(gguf_ftype(ftype))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        tok = add_tokenizer(w, Path(tokenizer_dir) if tokenizer_dir else None, dict(config or {}), spec.vocab_size)
        for tname, arr in gguf_tensors(spec, model.state_dict(), layout):
            _add_tensor(w, tname, arr, ftype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=progress)
        w.close()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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


def spec_json_of(fields: Mapping[str, Any]) -> Optional[dict[str, Any]]:
    text = fields.get(EDGEPRUNE_KEYS["spec"])
    return json.loads(text) if text else None
