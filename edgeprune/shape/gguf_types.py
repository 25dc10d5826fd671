"""The GGML type llama.cpp's quantizer gives each matrix of a spec, and so the bytes it writes.

A GGUF "Q4_0" file is not all Q4_0: llama.cpp (`llama_tensor_get_type`, llama-quant.cpp) keeps
the output head — the token embedding when tied — at Q6_K (Q8_0 when its rows are not whole
256-blocks), raises attn_v / ffn_down of some layers to Q6_K in *_K_M mixes, and falls back to a
legacy type when a row is not a whole number of the target's blocks. Predicting sizes and decode
bytes from the spec alone (before any export) needs the same rules; tests compare the prediction
with files llama.cpp really writes.

The head's type is a decision, not only the preset's side effect: after a cut the output head is
most of the bytes a decoded token reads, so `head_type` (one of HEAD_TYPES) overrides llama.cpp's
choice for it (the exporter passes the same type to llama.cpp's quantizer as its output /
token-embedding type), and every size and latency figure below reads it.
"""

from __future__ import annotations

from typing import Any, Optional

from edgeprune.base.errors import ExportError
from edgeprune.shape.quant_presets import GGUF_FLOAT, gguf_base_type, ggml_block, row_type
from edgeprune.shape.spec import ArchSpec, LayerSpec, matrix_bytes

# the types the head may be stored at: llama.cpp's default (Q8_0 / Q6_K) and the cheaper legacy
# types whose 32-blocks fit any hidden size a pruned model keeps
HEAD_TYPES = ("Q8_0", "Q6_K", "Q5_0", "Q4_0")


def head_type_of(name: Optional[str]) -> Optional[str]:
    """The canonical head type for a user's `--head-type` (None stays None: llama.cpp decides)."""
    if name is None:
        return None
    t = str(name).strip().upper()
    if t not in HEAD_TYPES:
        raise ExportError(f"--head-type {name!r} is not one of {', '.join(HEAD_TYPES)}")
    return t


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: first and last eighth of the layers, and every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def matrix_type(role: str, cols: int, ftype: str, *, is_head: bool = False, more_bits: bool = False,
                head_type: Optional[str] = None) -> str:
    """The GGML type llama.cpp gives one matrix: `role` as in ArchSpec.matrices(), `cols` its row
    length, `is_head` for the LM head (the tied embedding), `more_bits` for the layers a *_K_M mix
    raises (see `_more_bits`), `head_type` the head's type when decided (HEAD_TYPES)."""
    ftype = ftype.upper()
    base = gguf_base_type(ftype)
    mixed = base != ftype  # a *_K_S / *_K_M / *_K_L mix, not a single-type file
    want = base
    if is_head and ftype not in GGUF_FLOAT and head_type:
        want = head_type.upper()  # a user's choice was checked by head_type_of; a file's is what it holds
    elif is_head and ftype not in GGUF_FLOAT:
        # the head: Q8_0 when its rows are not whole blocks of the target (or the target is
        # Q8_0 already), else Q6_K
        want = "Q8_0" if (cols % ggml_block(base) or base == "Q8_0") else "Q6_K"
    elif mixed and ftype.endswith("_M") and role in ("attn_v", "ffn_down") and more_bits:
        want = "Q6_K"
    return row_type(want, cols)  # what a row of `cols` really gets (llama.cpp's fallback)


def layer_bytes(spec: ArchSpec, lay: LayerSpec, ftype: str, *, more_bits: bool = False) -> int:
    """Bytes of one layer in a GGUF at `ftype`: matrices at their real types, norms and biases F32."""
    b = sum(matrix_bytes(r, c, matrix_type(role, c, ftype, more_bits=more_bits))
            for role, r, c in spec.layer_matrices(lay))
    h, d = spec.hidden_size, spec.head_dim
    if lay.has_attention:
        b += 4 * (h + ((lay.n_heads + 2 * lay.n_kv_heads) * d if spec.has_bias else 0))
    if lay.has_mlp:
        b += 4 * h
    return b


def tensor_types(spec: ArchSpec, ftype: str, head_type: Optional[str] = None) -> list[tuple[str, int, int, str]]:
    """(role, rows, cols, GGML type) of every matrix of `spec` in a GGUF quantized to llama.cpp
    ftype `ftype` (Q4_0, Q8_0, Q4_K_M, F16, ...), the head at `head_type` when given."""
    head_role = "token_embd" if spec.tie_word_embeddings else "output"
    n_attn = sum(1 for lay in spec.layers if lay.has_attention)
    n_mlp = sum(1 for lay in spec.layers if lay.has_mlp)
    i_attn = i_mlp = 0
    out = []
    for role, rows, cols in spec.matrices():
        more = False
        if role == "attn_v":
            more, i_attn = _more_bits(i_attn, n_attn), i_attn + 1
        elif role == "ffn_down":
            more, i_mlp = _more_bits(i_mlp, n_mlp), i_mlp + 1
        out.append((role, rows, cols, matrix_type(role, cols, ftype, is_head=role == head_role, more_bits=more,
                                                  head_type=head_type)))
    return out


def gguf_weight_bytes(spec: ArchSpec, ftype: str, head_type: Optional[str] = None) -> dict[str, Any]:
    """Bytes of the tensors a GGUF of `spec` at `ftype` holds: matrices at their real types,
    1-D tensors at F32. `head` is the bytes of the LM head (the tied embedding included), at
    `head_type` when given; `head_type` the GGML type it gets."""
    types = tensor_types(spec, ftype, head_type)
    matrices = sum(matrix_bytes(r, c, t) for _, r, c, t in types)
    head_role = "token_embd" if spec.tie_word_embeddings else "output"
    head = sum(matrix_bytes(r, c, t) for role, r, c, t in types if role == head_role)
    embd = sum(matrix_bytes(r, c, t) for role, r, c, t in types if role == "token_embd")
    counts: dict[str, int] = {}
    for *_, t in types:
        counts[t] = counts.get(t, 0) + 1
    head_types = [t for role, _, _, t in types if role == head_role]
    return {"total": matrices + 4 * spec.vector_params(), "head": head, "token_embd": embd,
            "type_counts": counts, "head_type": head_types[0] if head_types else None}


def decode_weight_bytes(spec: ArchSpec, ftype: str, head_type: Optional[str] = None) -> int:
    """Weight bytes one decoded token streams: every tensor except an untied embedding (a row
    lookup, not a read of the matrix)."""
    b = gguf_weight_bytes(spec, ftype, head_type)
    return b["total"] - (0 if spec.tie_word_embeddings else b["token_embd"])


__all__ = ["HEAD_TYPES", "head_type_of", "matrix_type", "layer_bytes", "tensor_types", "gguf_weight_bytes", "decode_weight_bytes"]
