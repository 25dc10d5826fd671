"""What an edgeprune GGUF file is, for the writer (export/gguf_writer.py) and the readers
(edgeprune/files/gguf_reader.py, GGUF files as model input): the GGUF architecture a spec is laid out
as, the q/k row permutation, the tensor names, our own metadata keys and the BPE pre-tokenizer
names. One place, so that what export writes and what input reads cannot drift apart; it lives
in the core because reading a GGUF as a model is a checkpoint format, not an export step.

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

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from edgeprune.shape.spec import ArchSpec, LayerSpec

PAD_FFN = 32  # width of the all-zero FFN standing in for a removed MLP (one Q4_0/Q8_0 block)

# our own metadata (no gguf constant exists for these): provenance and the padding to undo
EDGEPRUNE_KEYS = {
    "spec": "edgeprune.shape.spec",  # the ArchSpec JSON, for humans and tools
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
_ATTN = (("q", "ATTN_Q"), ("k", "ATTN_K"), ("v", "ATTN_V"))
HF_TO_GGUF_LAYER = {  # in the order the writer emits them
    "input_layernorm.weight": ("ATTN_NORM", "weight"),
    **{f"self_attn.{p}_proj.weight": (k, "weight") for p, k in (*_ATTN, ("o", "ATTN_OUT"))},
    **{f"self_attn.{p}_proj.bias": (k, "bias") for p, k in _ATTN},  # Qwen2 only
    "post_attention_layernorm.weight": ("FFN_NORM", "weight"),
    **{f"mlp.{p}_proj.weight": (k, "weight") for p, k in (("gate", "FFN_GATE"), ("up", "FFN_UP"), ("down", "FFN_DOWN"))},
}
HF_TO_GGUF_GLOBAL = {
    "model.embed_tokens.weight": ("TOKEN_EMBD", "weight"),
    "model.norm.weight": ("OUTPUT_NORM", "weight"),
    "lm_head.weight": ("OUTPUT", "weight"),
}


# Split regexes of tokenizer.json pre-tokenizers, keyed by the llama.cpp pre-tokenizer name using them
_QWEN2_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_REGEX = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
SPLIT_REGEX_PRE = {_QWEN2_REGEX: "qwen2", _LLAMA3_REGEX: "llama-bpe"}
