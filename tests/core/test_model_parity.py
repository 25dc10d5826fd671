"""Our model against transformers' own Llama / Qwen2 (DESIGN §2: 1e-5 in fp32)."""

import pytest
import torch
import transformers

from edgeprune.files.checkpoint import load_weights
from edgeprune.shape.model import EdgeLM, build_model
from edgeprune.shape.arch_presets import preset_spec
from tests.conftest import hetero_spec, tiny_spec

TOL = dict(atol=1e-5, rtol=1e-5)


def hf_model(spec):
    cfg_dict = spec.to_hf_config()
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM)}[spec.family]
    cfg = cls[0](**{k: v for k, v in cfg_dict.items() if k not in ("architectures", "model_type", "torch_dtype")})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = cls[1](cfg).eval()
    with torch.no_grad():  # HF zero-inits biases; randomise them so qwen2 biases are exercised
        for n, p in model.named_parameters():
            if n.endswith("bias") or "norm" in n:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def ours_from(hf, spec):
    ours = EdgeLM(spec).eval()
    load_weights(ours, hf.state_dict())
    return ours


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("T", [1, 17])
def test_logits_equal_transformers(family, tie, T):
    spec = tiny_spec(family, tie=tie)
    hf = hf_model(spec)
    ours = ours_from(hf, spec)
    ids = torch.randint(0, spec.vocab_size, (2, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        ref = hf(ids).logits
        got = ours(ids).logits
    torch.testing.assert_close(got, ref, **TOL)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
@pytest.mark.parametrize("T", [1, 17])
def test_kv_cache_equals_transformers(family, T):
    spec = tiny_spec(family)
    hf = hf_model(spec)
    ours = ours_from(hf, spec)
    g = torch.Generator().manual_seed(1)
    prefix = torch.randint(0, spec.vocab_size, (2, 5), generator=g)
    nxt = torch.randint(0, spec.vocab_size, (2, T), generator=g)
    with torch.no_grad():
        hf_out = hf(prefix, use_cache=True)
        ref = hf(nxt, past_key_values=hf_out.past_key_values, use_cache=True).logits
        o = ours(prefix, use_cache=True)
        got = ours(nxt, past_key_values=o.past_key_values, use_cache=True).logits
        full = ours(torch.cat([prefix, nxt], 1)).logits[:, 5:]
    torch.testing.assert_close(got, ref, **TOL)
    torch.testing.assert_close(got, full, **TOL)


def test_left_padding_mask_matches_transformers():
    spec = tiny_spec()
    hf = hf_model(spec)
    ours = ours_from(hf, spec)
    ids = torch.randint(0, spec.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask).logits
        got = ours(ids, attention_mask=mask).logits
    torch.testing.assert_close(got[0, 3:], ref[0, 3:], **TOL)
    torch.testing.assert_close(got[1], ref[1], **TOL)


def test_heterogeneous_cache_and_generation():
    spec = hetero_spec()
    model = build_model(spec, seed=0).eval()
    ids = torch.randint(0, spec.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    out = model(ids, use_cache=True)
    shapes = [None if kv is None else tuple(kv[0].shape) for kv in out.past_key_values]
    assert shapes == [(1, 2, 6, 16), (1, 1, 6, 16), None, (1, 3, 6, 16), (1, 4, 6, 16)]
    seq = model.generate(ids, max_new_tokens=8)
    # greedy generation with cache equals recomputing the whole sequence each step
    check = ids
    for _ in range(8):
        nxt = model(check).logits[:, -1].argmax(-1, keepdim=True)
        check = torch.cat([check, nxt], 1)
    assert torch.equal(seq, check)


def test_smollm_135m_param_count_equals_transformers():
    spec = preset_spec("smollm-135m")
    cfg = transformers.LlamaConfig(**{k: v for k, v in spec.to_hf_config().items()
                                      if k not in ("architectures", "model_type", "torch_dtype")})
    with torch.device("meta"):
        hf = transformers.LlamaForCausalLM(cfg)
        ours = EdgeLM(spec)
    hf_count = sum(p.numel() for p in hf.parameters())
    ours_count = sum(p.numel() for p in ours.parameters())
    assert hf_count == ours_count == spec.n_params == 134_515_008
