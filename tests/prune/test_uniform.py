"""`uniform` keeps equal widths in every layer: the file is a plain llama / qwen2 GGUF, and the
parameter target is met as closely as uniform widths at the alignment allow."""

import pytest
import torch

from edgeprune.export.gguf_writer import write_gguf
from edgeprune.files.gguf_reader import read_metadata
from edgeprune.shape.model import build_model
from edgeprune.prune import prune_model
from edgeprune.prune.shapes import attention_options, closest_uniform, ffn_options, uniform_spec
from edgeprune.shape.spec import ArchSpec, mlp_params
from tests.conftest import tiny_spec
from tests.export.gguf_cases import make_tokenizer

CALIB = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(1))
SMOLLM2_135M = ArchSpec.uniform(family="llama", vocab_size=49152, hidden_size=576, n_layers=30, n_heads=9,
                                n_kv_heads=3, ffn_dim=1536, head_dim=64)


def _skewed(spec):
    """Layers of very different importance: a per-layer method would give them different widths."""
    model = build_model(spec, seed=0)
    with torch.no_grad():
        for i, lay in enumerate(model.model.layers):
            lay.mlp.down_proj.weight.mul_(1e-3 if i % 2 else 20)
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
def test_uniform_output_has_equal_layers_and_is_a_plain_gguf(tmp_path, family, ratio):
    spec = ArchSpec.uniform(family=family, vocab_size=320, hidden_size=64, n_layers=4, n_heads=4, n_kv_heads=2,
                            ffn_dim=96, head_dim=16, max_position_embeddings=128)
    res = prune_model(_skewed(spec), method="uniform", ratio=ratio, calib=CALIB, align=8, progress=False)
    assert res.spec.is_uniform and res.spec.n_layers == 4
    assert res.model.spec.n_params == sum(p.numel() for p in res.model.parameters())
    # as close as equal widths allow: no uniform shape is closer to the target
    best = min(abs(uniform_spec(spec, a, w).n_params - res.target_params)
               for a in attention_options(spec, 8) for w in ffn_options(96, 8))
    step = mlp_params(64, 8) * 4
    assert abs(res.params_after - res.target_params) <= best + step / 2
    assert res.log["target_miss"] == pytest.approx((res.params_after - res.target_params) / res.target_params,
                                                   abs=1e-5)
    assert "closest uniform widths allow" in res.table()
    path = tmp_path / "u.gguf"
    write_gguf(res.model, path, tokenizer_dir=make_tokenizer(tmp_path / "tok"),
               config={"bos_token_id": 0, "eos_token_id": 0})
    assert read_metadata(path)["general.architecture"] == family


def test_uniform_keeps_each_layers_strongest_units():
    """Widths are shared, the units kept are each layer's own: the strongest channels stay."""
    spec = tiny_spec()
    model = build_model(spec, seed=0)
    with torch.no_grad():  # channel 5 of layer 0's MLP dominates its output
        model.model.layers[0].mlp.down_proj.weight[:, 5].mul_(50)
        model.model.layers[0].mlp.up_proj.weight[5].mul_(50)
    up5 = model.model.layers[0].mlp.up_proj.weight[5].clone()
    res = prune_model(model, method="uniform", ratio=0.5, calib=CALIB, align=8, progress=False)
    kept = res.model.model.layers[0].mlp.up_proj.weight
    assert any(torch.equal(row, up5) for row in kept)


def test_closest_uniform_on_smollm2_shape_is_within_one_step():
    target = SMOLLM2_135M.n_params // 2
    choice = closest_uniform(SMOLLM2_135M, target, 32)
    step = mlp_params(576, 32) * 30 / target
    assert abs(choice.miss) <= step / 2
    assert choice.ffn % 32 == 0 and (choice.attn.n_heads * 64) % 32 == 0
    assert choice.attn.n_heads < 9  # attention shares the cut (same ratio), not only the MLP
