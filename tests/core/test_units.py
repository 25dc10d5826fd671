"""The prunable-unit module: every unit kind's exact parameter cost, its slices, and alignment."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from edgeprune.base.errors import SpecError
from edgeprune.shape.model import build_model
from edgeprune.prune import surgery
from edgeprune.shape.spec import ArchSpec, LayerSpec
from edgeprune.shape.units import (UNIT_KINDS, alignment_for, misaligned_rows, param_slices, quant_block,
                             taylor_saliency, unit_groups)
from tests.conftest import hetero_spec, tiny_spec

SPECS = {
    "llama-uniform": tiny_spec("llama", tie=True),
    "qwen2-uniform": tiny_spec("qwen2", tie=False),
    "llama-hetero": hetero_spec("llama", tie=True),
    "qwen2-hetero": hetero_spec("qwen2", tie=False),
}


def _remove_one(spec: ArchSpec, g) -> ArchSpec:
    """The spec with one unit of group `g` removed, built by real surgery on a real model."""
    model = build_model(spec, seed=0)
    i = g.layer
    if g.kind == "hidden":
        model = surgery.remove_hidden_channels(model, [0])
    elif g.kind == "q_head":  # one query head per KV group (GQA stays integral)
        lay = spec.layers[i]
        model = surgery.remove_query_heads(model, i, [j * lay.group_size for j in range(lay.n_kv_heads)])
        return model.spec
    elif g.kind == "kv_group":
        model = surgery.remove_kv_groups(model, i, [0])
    elif g.kind == "ffn":
        model = surgery.remove_mlp_channels(model, i, [0])
    elif g.kind == "attention":
        model = surgery.remove_attention(model, i)
    elif g.kind == "mlp":
        model = surgery.remove_mlp(model, i)
    elif g.kind == "layer":
        model = surgery.remove_layers(model, [i])
    return model.spec


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_unit_cost_equals_the_spec_count_after_real_surgery(name):
    spec = SPECS[name]
    seen = set()
    for g in unit_groups(spec):
        if g.kind in ("kv_group", "ffn", "hidden") and g.count < 2:
            continue  # the last unit of a block is the block's own unit (attention / mlp)
        if g.kind == "q_head" and spec.layers[g.layer].group_size < 2:
            continue  # a group of one head: removing it is removing the KV group
        after = _remove_one(spec, g)
        removed = spec.n_params - after.n_params
        expect = g.cost * (g.step if g.kind == "q_head" else 1)
        assert removed == expect, (name, g)
        seen.add(g.kind)
    assert seen == set(UNIT_KINDS) or name.endswith("uniform") and seen >= set(UNIT_KINDS) - {"q_head"}


def test_slices_cover_every_weight_of_a_unit_and_saliency_adds_up():
    spec = hetero_spec("qwen2", tie=False)
    model = build_model(spec, seed=0)
    x = torch.randint(0, spec.vocab_size, (2, 12))
    model(x, labels=x).loss.backward()
    sal = taylor_saliency(dict(model.named_parameters()), spec)
    # every matrix and bias of the model is cut by some unit (hidden cuts everything else)
    named = {n for n, _ in model.named_parameters()}
    assert set(param_slices(spec)) <= named
    att = model.model.layers[0].self_attn  # 4 heads / 2 KV groups of 16: group 1 = kv head 1 + q heads 2, 3
    wg = lambda p: (p.detach() * p.grad).abs()  # noqa: E731
    q2 = wg(att.q_proj.weight)[32:48].sum() + wg(att.q_proj.bias)[32:48].sum() + wg(att.o_proj.weight)[:, 32:48].sum()
    torch.testing.assert_close(sal["q.0"][2], q2)
    kv1 = (wg(att.k_proj.weight)[16:32].sum() + wg(att.v_proj.weight)[16:32].sum()
           + wg(att.k_proj.bias)[16:32].sum() + wg(att.v_proj.bias)[16:32].sum())
    torch.testing.assert_close(sal["kvh.0"][1], kv1)
    torch.testing.assert_close(sal["kv.0"][1], kv1 + sal["q.0"][2] + sal["q.0"][3])


def test_quant_blocks_and_the_one_alignment_function():
    spec = tiny_spec()
    assert quant_block("Q4_0") == 32 and quant_block("q8_0") == 32 and quant_block("Q4_K_M") == 256
    assert quant_block("F16") == 1
    with pytest.raises(SpecError):
        quant_block("Q9_9")
    assert alignment_for(spec, align=16, quants=["Q4_K_M"]) == 16  # --align wins
    assert alignment_for(spec, quants=["Q4_0", "Q8_0"]) == 32
    wide = replace(spec, hidden_size=512)
    assert alignment_for(wide, quants=["Q4_0", "Q4_K_M"]) == 256  # the strictest
    # hidden 64 rows can never be whole 256-blocks: llama.cpp falls back to a 32-block type
    assert alignment_for(spec, quants=["Q4_K_M"]) == 32

    class Dev:
        align, gguf_quants = 8, ("Q4_0", "Q8_0")
    assert alignment_for(spec, devices=[Dev()]) == 32  # the device's quant types, and its kernels' 8
    assert alignment_for(spec, quants=["F16"], devices=[Dev()]) == 8  # a named type replaces the device's list
    assert alignment_for(spec) == 8  # nothing said: the model-size default (hidden 64 -> 8)


def test_misaligned_rows_names_each_row_length():
    spec = ArchSpec(family="llama", vocab_size=300, hidden_size=96, head_dim=16,
                    layers=(LayerSpec(6, 2, 96), LayerSpec(4, 2, 64)))
    assert misaligned_rows(spec, 32) == []
    bad = misaligned_rows(replace(spec, hidden_size=100), 32)
    assert bad[0] == "hidden_size 100"
    assert misaligned_rows(spec, 64) == ["hidden_size 96", "layer 0 heads·head_dim 96", "layer 0 ffn_dim 96"]
