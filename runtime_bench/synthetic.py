"""Random-weight GGUF files of a given ArchSpec: latency depends on shapes and types, not on the
weights, so the harness can be tested and a device's speed measured (e.g. a SmolLM-135M shape at
Q4_0) before or without a trained model. Not a model export: `edgeprune.export` writes real models.

The file is a plain llama-architecture GGUF (key and tensor names from gguf's own constants) with
a byte-level SentencePiece-style vocabulary (<unk>, <s>, </s>, the 256 <0xXX> byte tokens, then
fillers) so llama.cpp loads it; every matrix is stored at `qtype`, 1-D tensors at F32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeprune.errors import BenchError


def _vocab(n: int) -> tuple[list[str], list[float], list[int]]:
    from gguf.constants import TokenType

    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    if n < len(toks):
        raise BenchError(f"vocab_size {n} too small for a synthetic GGUF: need >= {len(toks)} "
                         "(3 control + 256 byte tokens)")
    toks += [f"t{i}" for i in range(n - len(toks))]
    types += [TokenType.NORMAL] * (n - len(types))
    return toks, [0.0] * n, [int(t) for t in types]


def write_random_gguf(spec, path: Path, qtype: str = "Q8_0", seed: int = 0) -> Path:
    """Write a llama GGUF with random weights shaped by `spec`, matrices at GGML type `qtype`."""
    import gguf
    from gguf.constants import MODEL_TENSOR, TENSOR_NAMES, GGMLQuantizationType, LlamaFileType

    if any(not lay.has_attention or not lay.has_mlp for lay in spec.layers):
        raise BenchError("synthetic GGUF needs every layer to have attention and an MLP "
                         "(use edgeprune.export for pruned models with removed blocks)")
    try:
        gtype = GGMLQuantizationType[qtype.upper()]
        ftype = LlamaFileType[f"MOSTLY_{qtype.upper()}"] if qtype.upper() != "F32" else LlamaFileType.ALL_F32
    except KeyError:
        raise BenchError(f"unknown GGML type {qtype!r} (try Q4_0, Q8_0, F16)") from None
    rng = np.random.default_rng(seed)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    w = gguf.GGUFWriter(str(tmp), "llama")
    heads = [lay.n_heads for lay in spec.layers]
    kv = [lay.n_kv_heads for lay in spec.layers]
    ffn = [lay.ffn_dim for lay in spec.layers]
    one = lambda xs: xs[0] if len(set(xs)) == 1 else xs  # noqa: E731  (per-layer arrays when hetero)
    w.add_name("edgeprune-synthetic")
    w.add_block_count(spec.n_layers)
    w.add_context_length(spec.max_position_embeddings)
    w.add_embedding_length(spec.hidden_size)
    w.add_feed_forward_length(one(ffn))
    w.add_head_count(one(heads))
    w.add_head_count_kv(one(kv))
    w.add_key_length(spec.head_dim)
    w.add_value_length(spec.head_dim)
    w.add_rope_dimension_count(spec.head_dim)
    w.add_rope_freq_base(spec.rope_theta)
    w.add_layer_norm_rms_eps(spec.rms_norm_eps)
    w.add_vocab_size(spec.vocab_size)
    w.add_file_type(int(ftype))
    w.add_tokenizer_model("llama")
    toks, scores, types = _vocab(spec.vocab_size)
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)

    def mat(name: str, rows: int, cols: int) -> None:
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)  # (out, in)
        if gtype == GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, gguf.quants.quantize(data, gtype), raw_dtype=gtype)

    def vec(name: str, n: int) -> None:
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    T = lambda t, **kw: TENSOR_NAMES[t].format(**kw) + ".weight"  # noqa: E731
    h, d = spec.hidden_size, spec.head_dim
    mat(T(MODEL_TENSOR.TOKEN_EMBD), spec.vocab_size, h)
    for i, lay in enumerate(spec.layers):
        vec(T(MODEL_TENSOR.ATTN_NORM, bid=i), h)
        mat(T(MODEL_TENSOR.ATTN_Q, bid=i), lay.n_heads * d, h)
        mat(T(MODEL_TENSOR.ATTN_K, bid=i), lay.n_kv_heads * d, h)
        mat(T(MODEL_TENSOR.ATTN_V, bid=i), lay.n_kv_heads * d, h)
        mat(T(MODEL_TENSOR.ATTN_OUT, bid=i), h, lay.n_heads * d)
        vec(T(MODEL_TENSOR.FFN_NORM, bid=i), h)
        mat(T(MODEL_TENSOR.FFN_GATE, bid=i), lay.ffn_dim, h)
        mat(T(MODEL_TENSOR.FFN_UP, bid=i), lay.ffn_dim, h)
        mat(T(MODEL_TENSOR.FFN_DOWN, bid=i), h, lay.ffn_dim)
    vec(T(MODEL_TENSOR.OUTPUT_NORM), h)
    if not spec.tie_word_embeddings:
        mat(T(MODEL_TENSOR.OUTPUT), spec.vocab_size, h)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)  # atomic: readers never see a half-written file
    return path
