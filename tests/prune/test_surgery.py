"""Surgery is exact: cut units that were zeroed first and the logits do not change."""

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.base.errors import PruneError
from edgeprune.shape.model import build_model
from edgeprune.prune import surgery as X
from edgeprune.prune.plan import round_width
from tests.conftest import hetero_spec, tiny_spec

SPECS = {
    "uniform-llama-tied": tiny_spec("llama", True),
    "uniform-qwen2-untied": tiny_spec("qwen2", False),
    "hetero-llama-untied": hetero_spec("llama", False),
    "hetero-qwen2-tied": hetero_spec("qwen2", True),
}
IDS = torch.randint(0, 256, (2, 12), generator=torch.Generator().manual_seed(0))


def _model(spec):
    m = build_model(spec, seed=3)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # qwen2 biases non-zero so that a missed bias shows up
        for n, p in m.named_parameters():
            if n.endswith(".bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return m.eval()


def _attn_layer(spec):
    return next(i for i, lay in enumerate(spec.layers) if lay.n_kv_heads >= 2 and lay.group_size >= 1)


def _mlp_layer(spec):
    return next(i for i, lay in enumerate(spec.layers) if lay.has_mlp)


def _zero_cols(lin, idx):
    with torch.no_grad():
        lin.weight[:, idx] = 0


def _cases(spec):
    """unit kind -> (zero the units in place, cut them): every unit kind DESIGN §4 names."""
    a, f, d = _attn_layer(spec), _mlp_layer(spec), spec.head_dim
    g = spec.layers[a].group_size
    cases = {"kv_group": (lambda m: _zero_cols(m.model.layers[a].self_attn.o_proj, list(range(g * d))),
                          lambda m: X.remove_kv_groups(m, a, [0]))}  # group 0 and its query heads
    qa = next((i for i, lay in enumerate(spec.layers) if lay.group_size >= 2), None)
    if qa is not None:
        gq = spec.layers[qa].group_size
        heads = [j * gq + 1 for j in range(spec.layers[qa].n_kv_heads)]  # one head off each group
        cases["query_head"] = (
            lambda m: _zero_cols(m.model.layers[qa].self_attn.o_proj, [h * d + k for h in heads for k in range(d)]),
            lambda m: X.remove_query_heads(m, qa, heads))
    cases["mlp_channel"] = (lambda m: _zero_cols(m.model.layers[f].mlp.down_proj, [0, 5, 7]),
                            lambda m: X.remove_mlp_channels(m, f, [0, 5, 7]))
    gone = [1, 2, 30, 63]

    def zero_hidden(m):
        with torch.no_grad():
            m.model.embed_tokens.weight[:, gone] = 0
            for blk in m.model.layers:
                if blk.self_attn is not None:
                    blk.self_attn.o_proj.weight[gone] = 0
                if blk.mlp is not None:
                    blk.mlp.down_proj.weight[gone] = 0
    cases["hidden_channel"] = (zero_hidden, lambda m: X.remove_hidden_channels(m, gone))

    def zero_layer(m):
        blk = m.model.layers[1]
        with torch.no_grad():
            for mod in (blk.self_attn and blk.self_attn.o_proj, blk.mlp and blk.mlp.down_proj):
                if mod is not None:
                    mod.weight.zero_()
    cases["layer"] = (zero_layer, lambda m: X.remove_layers(m, [1]))
    cases["attention_block"] = (lambda m: _zero_cols(m.model.layers[a].self_attn.o_proj, slice(None)),
                                lambda m: X.remove_attention(m, a))
    cases["mlp_block"] = (lambda m: _zero_cols(m.model.layers[f].mlp.down_proj, slice(None)),
                          lambda m: X.remove_mlp(m, f))
    return cases


ALL = [(s, k) for s in SPECS for k in _cases(SPECS[s])]


@pytest.mark.parametrize("spec_name,kind", ALL)
def test_cut_of_zeroed_units_keeps_logits(spec_name, kind, tmp_path):
    spec = SPECS[spec_name]
    zero, cut = _cases(spec)[kind]
    ref, zeroed, model = _model(spec), _model(spec), _model(spec)
    zero(zeroed)
    zero(model)
    model = cut(model)
    assert model.spec != spec and model.spec.n_params < spec.n_params
    assert sum(p.numel() for p in model.parameters()) == model.spec.n_params
    with torch.no_grad():
        want = zeroed(IDS).logits
        got = model(IDS).logits
        assert not torch.equal(ref(IDS).logits, want)  # the zeroing mattered
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the cut model's checkpoint reloads with the same logits (and a KV cache that follows the spec)
    save_checkpoint(model, tmp_path / "m")
    again = load_checkpoint(tmp_path / "m").model
    assert again.spec == model.spec
    with torch.no_grad():
        torch.testing.assert_close(again(IDS).logits, got, rtol=0, atol=0)
        assert again.generate(IDS[:1, :4], max_new_tokens=3).shape == (1, 7)


def test_recorded_cuts_slice_optimizer_like_state():
    spec = SPECS["hetero-qwen2-tied"]
    model = _model(spec)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    rec: X.CutRecord = {}
    X.remove_query_heads(model, 0, [1, 3], rec)
    X.remove_kv_groups(model, 3, [1], rec)
    X.remove_mlp_channels(model, 2, [4, 9, 100], rec)
    X.remove_hidden_channels(model, [0, 10], rec)
    after = dict(model.named_parameters())
    assert set(rec) <= set(before)
    for name, cuts in rec.items():
        sliced = X.apply_cuts(before[name], cuts)
        if "norm" in name:  # norms are rescaled by sqrt(d/d') as well as sliced
            sliced = sliced * (64 / 62) ** 0.5
        torch.testing.assert_close(sliced, after[name].detach())


def test_surgery_refuses_accidental_block_removal_and_uneven_groups():
    model = _model(SPECS["uniform-llama-tied"])  # 4 heads / 2 KV, ffn 96
    with pytest.raises(PruneError, match="remove_attention"):
        X.remove_kv_groups(model, 0, [0, 1])
    with pytest.raises(PruneError, match="same number"):
        X.remove_query_heads(model, 0, [0])  # group 0 would keep 1, group 1 keeps 2
    with pytest.raises(PruneError, match="remove_mlp"):
        X.remove_mlp_channels(model, 0, range(96))
    with pytest.raises(PruneError, match="0..95"):
        X.remove_mlp_channels(model, 0, [96])
    assert model.spec == SPECS["uniform-llama-tied"]


def test_round_width():
    assert round_width(1000, 256) == 1024
    assert round_width(100, 256) == 256  # never below one aligned block
    assert round_width(37, 8) == 40
    assert round_width(37, 1) == 37
    with pytest.raises(PruneError):
        round_width(10, 0)
