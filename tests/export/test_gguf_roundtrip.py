"""GGUF writer <-> reader without llama.cpp: layouts, permutation, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeprune.base.errors import ExportError
from edgeprune.files.gguf_reader import read_gguf, read_metadata, tensor_report
from edgeprune.export.gguf_tokenizer import bpe_pre_name
from edgeprune.export.gguf_writer import write_gguf
from edgeprune.files.gguf_format import PAD_FFN, gguf_layout, permute_rows, unpermute_rows
from tests.export.gguf_cases import CASES, make_tokenizer, random_model, spec_of


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def test_layout_per_case():
    import gguf

    assert gguf_layout(spec_of("llama-uniform-tied")).arch == gguf.MODEL_ARCH.LLAMA
    q = gguf_layout(spec_of("qwen2-uniform-untied"))
    assert q.arch == gguf.MODEL_ARCH.QWEN2 and not q.permute_qk  # NEOX rope: no permutation
    h = gguf_layout(spec_of("llama-hetero-tied"))
    assert h.arch == gguf.MODEL_ARCH.DECI and h.permute_qk
    assert h.padded_ffn == (3,) and h.layers[3].ffn_dim == PAD_FFN and h.padded_attn == ()
    last = gguf_layout(spec_of("llama-hetero-lastfree-untied"))
    assert last.padded_ffn == (2, 3) and last.padded_attn == (0,) and last.layers[0].n_heads == 1


def test_permutation_is_llamacpp_interleave_and_inverts():
    w = np.arange(2 * 8 * 3, dtype=np.float32).reshape(16, 3)  # 2 heads of dim 8
    p = permute_rows(w, 2)
    # head 0 rows [0..3 | 4..7] (rotate-half halves) become pairs (0,4), (1,5), ...
    assert p[:8, 0].tolist() == [0, 12, 3, 15, 6, 18, 9, 21]
    assert np.array_equal(unpermute_rows(p, 2), w)
    b = np.arange(16, dtype=np.float32)
    assert np.array_equal(unpermute_rows(permute_rows(b, 4), 4), b)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("ftype", ["F32", "F16", "BF16"])
def test_round_trip_exact(tmp_path, tok_dir, case, ftype):
    spec = spec_of(case)
    model = random_model(spec)
    path = tmp_path / f"{case}.gguf"
    write_gguf(model, path, ftype=ftype, tokenizer_dir=tok_dir, config={"bos_token_id": 0, "eos_token_id": 0},
               meta={"source_model": "teacher", "prune": {"method": "flap", "ratio": 0.5}})
    spec2, state = read_gguf(path)
    assert spec2 == spec
    ref = {k: v for k, v in model.state_dict().items() if not (k == "lm_head.weight" and spec.tie_word_embeddings)}
    assert set(state) == set(ref)
    cast = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[ftype]
    for k, v in ref.items():
        want = v.to(cast).float() if v.dim() == 2 else v  # 1-D tensors stay F32
        assert torch.equal(state[k], want), k
    rep = tensor_report(path)
    assert set(rep["type_counts"]) <= {"F32", ftype}
    assert rep["bits_per_weight"] == pytest.approx(32.0 if ftype == "F32" else 16.0, rel=0.05)


def test_metadata_general_and_tokenizer(tmp_path, tok_dir):
    import gguf

    path = tmp_path / "m.gguf"
    write_gguf(random_model(spec_of("llama-hetero-tied")), path, tokenizer_dir=tok_dir,
               config={"bos_token_id": 0, "eos_token_id": 0},
               meta={"source_model": "/models/teacher", "prune": {"method": "flap", "ratio": 0.5}}, name="pruned")
    md = read_metadata(path)
    K = gguf.Keys
    assert md[K.General.ARCHITECTURE] == "deci" and md[K.General.NAME] == "pruned"
    assert md[K.Attention.HEAD_COUNT.format(arch="deci")] == [4, 2, 0, 6, 4]
    assert md[K.Attention.HEAD_COUNT_KV.format(arch="deci")] == [2, 1, 0, 3, 4]
    assert md[K.LLM.FEED_FORWARD_LENGTH.format(arch="deci")] == [96, 64, 128, PAD_FFN, 32]
    assert md[K.Attention.KEY_LENGTH.format(arch="deci")] == 16 and md[K.Rope.DIMENSION_COUNT.format(arch="deci")] == 16
    assert md[K.Tokenizer.MODEL] == "gpt2" and md[K.Tokenizer.PRE] == "gpt-2"
    assert md[K.Tokenizer.EOS_ID] == 0 and md[K.Tokenizer.MERGES]
    assert "messages" in md[K.Tokenizer.CHAT_TEMPLATE]
    # a local source path is never written; a hub name is, as the base model
    assert K.General.BASE_MODEL_NAME.format(id=0) not in md
    assert not any("/models/teacher" in v for v in md.values() if isinstance(v, str))
    assert md["edgeprune.prune.method"] == "flap" and md["edgeprune.prune.ratio"] == pytest.approx(0.5)
    write_gguf(random_model(spec_of("llama-uniform-tied")), path, tokenizer_dir=tok_dir,
               meta={"source_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
                     "pruning": {"method": "adapt", "ratio_removed": 0.5}})
    md = read_metadata(path)
    assert md[K.General.BASE_MODEL_NAME.format(id=0)] == "SmolLM2-135M-Instruct"
    assert md[K.General.BASE_MODEL_REPO_URL.format(id=0)] == "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
    assert md[K.General.BASENAME] == "SmolLM2-135M-Instruct"
    assert md[K.General.NAME] == "SmolLM2-135M-Instruct pruned 50% (adapt)"
    assert md["edgeprune.prune.method"] == "adapt" and md["edgeprune.prune.ratio"] == pytest.approx(0.5)


def test_pre_tokenizer_names():
    assert bpe_pre_name({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}) == "gpt-2"
    assert bpe_pre_name({"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "use_regex": True}]}) == "smollm"
    with pytest.raises(ExportError, match="no known llama.cpp"):
        bpe_pre_name({"type": "Whitespace"})


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(random_model(spec_of("llama-uniform-tied")), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    from edgeprune.base.errors import CheckpointError

    # the bounded header walk names what is wrong, in the file's terms, before gguf's reader runs
    with pytest.raises(CheckpointError, match="not a valid GGUF file: .* truncated"):
        read_gguf(path)
