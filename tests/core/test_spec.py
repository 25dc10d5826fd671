import json

import pytest

from edgeprune.base.errors import SpecError, UnsupportedArchitecture
from edgeprune.shape.arch_presets import preset_spec
from edgeprune.shape.spec import ArchSpec, LayerSpec, matrix_bytes
from tests.conftest import hetero_spec, tiny_spec


def test_json_round_trip_heterogeneous():
    spec = hetero_spec("qwen2", tie=False)
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec and not again.is_uniform


def test_hf_config_round_trip_uniform_and_hetero():
    for spec in (tiny_spec(), hetero_spec()):
        cfg = spec.to_hf_config()
        assert ArchSpec.from_hf_config(cfg) == spec
    assert isinstance(tiny_spec().to_hf_config()["num_attention_heads"], int)
    assert hetero_spec().to_hf_config()["intermediate_size"] == [96, 64, 128, 0, 32]


def test_rope_parameters_spelling_of_transformers_5():
    cfg = tiny_spec().to_hf_config()
    del cfg["rope_theta"]
    cfg["rope_parameters"] = {"rope_theta": 50000.0, "rope_type": "default"}
    assert ArchSpec.from_hf_config(cfg).rope_theta == 50000.0


def test_all_problems_reported_with_layer_and_field():
    with pytest.raises(SpecError) as e:
        ArchSpec(family="llama", vocab_size=10, hidden_size=8, head_dim=3,
                 layers=(LayerSpec(3, 2, 8), LayerSpec(2, 0, 8)))
    msg = str(e.value)
    assert "head_dim=3 must be even" in msg
    assert "layer 0: n_heads=3 is not divisible by n_kv_heads=2" in msg
    assert "layer 1: n_heads=2, n_kv_heads=0" in msg


def test_unsupported_family():
    with pytest.raises(UnsupportedArchitecture, match="gpt2"):
        ArchSpec.from_hf_config({"model_type": "gpt2", "n_layer": 2})


def test_param_count_hand_computed():
    # hidden 64, head 16: layer 0 attn = 64*64 + 2*64*32 + 64*64 + 64(norm) = 12352
    spec = hetero_spec()
    assert spec.layer_param_counts(0) == {"attention": 12352, "mlp": 3 * 64 * 96 + 64}
    assert spec.layer_param_counts(2)["attention"] == 0
    assert spec.layer_param_counts(3)["mlp"] == 0
    counts = spec.param_counts()
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    assert counts["head"] == 0 and hetero_spec(tie=False).param_counts()["head"] == 256 * 64


def test_qwen2_bias_counted():
    a, b = tiny_spec("llama"), tiny_spec("qwen2")
    assert b.n_params - a.n_params == 3 * (64 + 2 * 32)


def test_kv_cache_and_flops():
    spec = hetero_spec()
    # sum of kv heads = 2+1+0+3+4 = 10; K and V; head 16; f16
    assert spec.kv_cache_bytes_per_token() == 10 * 2 * 16 * 2
    f0 = spec.flops_per_token(0)
    assert spec.flops_per_token(100) - f0 == 4 * 16 * 100 * (4 + 2 + 0 + 6 + 4)


def test_weight_bytes_by_quant_type():
    # Q8_0: 34 bytes per 32 weights; Q4_0: 18 per 32; Q4_K: 144 per 256
    assert matrix_bytes(10, 256, "Q8_0") == 10 * 8 * 34
    assert matrix_bytes(10, 256, "Q4_0") == 10 * 8 * 18
    assert matrix_bytes(10, 256, "Q4_K") == 10 * 144
    # rows not a multiple of 256 fall back as llama.cpp does: Q4_K -> Q5_0 (22 B / 32), then F16
    assert matrix_bytes(10, 64, "Q4_K") == 10 * 2 * 22
    assert matrix_bytes(10, 48, "Q4_0") == 10 * 48 * 2
    spec = tiny_spec()
    assert spec.weight_bytes("F32") == 4 * spec.n_params
    assert spec.weight_bytes("F16") < spec.weight_bytes("F32")
    with pytest.raises(SpecError, match="unknown GGML type"):
        spec.weight_bytes("Q9_9")


def test_smollm_preset_shape():
    spec = preset_spec("smollm-135m")
    assert (spec.hidden_size, spec.n_layers, spec.head_dim) == (576, 30, 64)
    assert spec.n_params == 134_515_008  # published SmolLM-135M parameter count


def test_from_dict_rejects_unknown_fields():
    d = tiny_spec().to_dict()
    d["hiden_size"] = 3
    with pytest.raises(SpecError, match="hiden_size"):
        ArchSpec.from_dict(d)
    assert json.loads(tiny_spec().to_json())["layers"][0] == {"n_heads": 4, "n_kv_heads": 2, "ffn_dim": 96}
