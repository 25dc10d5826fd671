"""Roofline: hand-computed SmolLM-135M numbers, file-vs-spec agreement, the fitted η."""

from __future__ import annotations

import pytest

from edgeprune.devices import load_device
from edgeprune.shape.arch_presets import preset_spec
from edgeprune.devices import roofline as rl


def _smollm_by_hand(block_bytes: int):
    """SmolLM-135M: hidden 576, 30 layers, 9 heads / 3 KV heads of 64, FFN 1536, vocab 49152, tied.
    llama.cpp writes the head (the tied embedding) at Q6_K, whose 256-blocks a 576-wide row is
    not: it falls back to Q8_0 (34 B per 32 weights) whatever the file's type."""
    per_layer = 576 * 576 * 2 + 192 * 576 * 2 + 1536 * 576 * 3  # q,o + k,v + gate,up,down = 3,538,944
    head = 49152 * 576
    matrix_weights = 30 * per_layer + head  # + tied embedding = LM head: 134,479,872
    vectors = 30 * 2 * 576 + 576  # RMSNorm weights, stored F32
    weights = 30 * per_layer // 32 * block_bytes + head // 32 * 34 + 4 * vectors
    kv_per_token = 30 * 2 * 3 * 64 * 2  # K+V, 3 heads of 64, f16: 23,040 B
    return matrix_weights, weights, kv_per_token


@pytest.mark.parametrize("qtype, block_bytes, weights_expected", [
    ("Q4_0", 18, 89_941_248),  # 32 weights -> 16 B of nibbles + f16 scale; the head at Q8_0
    ("Q8_0", 34, 143_025_408),  # 32 weights -> 32 B + f16 scale
])
def test_smollm_135m_on_raspberry_pi_5_by_hand(qtype, block_bytes, weights_expected):
    spec = preset_spec("smollm-135m")
    matrix_weights, weights, kv = _smollm_by_hand(block_bytes)
    assert matrix_weights == 134_479_872 and weights == weights_expected
    cost = rl.cost_from_spec(spec, qtype)
    assert cost.weight_bytes_read == weights
    assert cost.kv_bytes_per_ctx == kv == 23_040

    pi5 = load_device("raspberry-pi-5")
    r = rl.roofline(cost, pi5.bandwidth_gbs, pi5.efficiency, pi5.peak_gflops, n_prompt=512, n_gen=128)
    bytes_per_token = weights + kv * 64  # tg128 from an empty cache: 64 cached tokens on average
    assert r["bytes_per_token"] == bytes_per_token
    assert r["tg_pred_tps"] == pytest.approx(0.5 * 17.1e9 / bytes_per_token, rel=1e-12)
    # prefill: 2 FLOPs per matrix weight (embedding lookup excluded, tied head included) plus
    # 4 * 9 heads * 64 * 256 average keys per layer
    flops = 2 * matrix_weights + 30 * 4 * 9 * 64 * 256
    assert r["pp_bound_tps"] == pytest.approx(153.6e9 / flops, rel=1e-12)
    expected = {"Q4_0": (93.53, 535.84), "Q8_0": (59.17, 535.84)}[qtype]
    assert r["tg_pred_tps"] == pytest.approx(expected[0], abs=0.01)
    assert r["pp_bound_tps"] == pytest.approx(expected[1], abs=0.01)


def test_untied_embedding_is_a_lookup_not_a_read():
    tied = preset_spec("tiny")
    untied = type(tied).uniform(vocab_size=512, hidden_size=64, n_layers=4, n_heads=4, n_kv_heads=2,
                                ffn_dim=160, tie_word_embeddings=False, max_position_embeddings=256)
    # the untied model stores one more vocab x hidden matrix but reads the same bytes per token
    assert untied.weight_bytes("Q8_0") > tied.weight_bytes("Q8_0")
    assert rl.cost_from_spec(untied, "Q8_0").weight_bytes_read == rl.cost_from_spec(tied, "Q8_0").weight_bytes_read


@pytest.mark.parametrize("qtype", ["Q8_0", "F16"])
def test_gguf_file_cost_matches_spec(tmp_path, qtype):
    """At these types llama.cpp writes every matrix of `tiny` at the file's type (its head too), so
    a synthetic file with every matrix at `qtype` is the file it would write."""
    from edgeprune.runtime_bench.synthetic import write_random_gguf

    spec = preset_spec("tiny")
    path = write_random_gguf(spec, tmp_path / f"t.{qtype}.gguf", qtype)
    c_file, c_spec = rl.cost_from_gguf(path), rl.cost_from_spec(spec, qtype)
    assert c_file.weight_bytes_read == c_spec.weight_bytes_read
    assert (c_file.kv_bytes_per_ctx, c_file.matmul_flops, c_file.attn_flops_per_ctx) == \
        (c_spec.kv_bytes_per_ctx, c_spec.matmul_flops, c_spec.attn_flops_per_ctx)


def test_spec_cost_reads_the_head_at_the_type_llama_cpp_gives_it(tmp_path):
    """A Q4_0 file is not all Q4_0: the head (tied embedding, 64-wide rows) is Q8_0. The spec's
    cost is an all-Q4_0 file's plus exactly the head's extra bytes."""
    from edgeprune.runtime_bench.synthetic import write_random_gguf
    from edgeprune.shape.spec import matrix_bytes

    spec = preset_spec("tiny")
    all_q4 = rl.cost_from_gguf(write_random_gguf(spec, tmp_path / "t.Q4_0.gguf", "Q4_0")).weight_bytes_read
    extra = matrix_bytes(spec.vocab_size, spec.hidden_size, "Q8_0") - matrix_bytes(spec.vocab_size, spec.hidden_size,
                                                                                    "Q4_0")
    assert rl.cost_from_spec(spec, "Q4_0").weight_bytes_read == all_q4 + extra > all_q4


def test_fitted_efficiency_inverts_the_prediction():
    pred = rl.predict_decode_tps(80e6, 17.1, 0.55)
    assert rl.fit_efficiency(pred, 80e6, 17.1) == pytest.approx(0.55)
    r = rl.roofline(rl.cost_from_spec(preset_spec("smollm-135m"), "Q4_0"), 17.1, 0.5, 153.6, 512, 128,
                    measured_tg_tps=55.0)
    assert r["efficiency_fitted"] == pytest.approx(55.0 * r["bytes_per_token"] / 17.1e9)
