import json

import pytest
import torch
import transformers

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.base.errors import CheckpointError, UnsupportedArchitecture
from edgeprune.shape.model import build_model
from tests.conftest import hetero_spec, tiny_spec


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_uniform_checkpoint_loads_in_plain_transformers(tmp_path, family):
    spec = tiny_spec(family, tie=False)
    model = build_model(spec, seed=1).eval()
    save_checkpoint(model, tmp_path / "m")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    ids = torch.randint(0, spec.vocab_size, (1, 11))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("tie", [True, False])
def test_heterogeneous_round_trip(tmp_path, tie):
    spec = hetero_spec("qwen2", tie=tie)
    model = build_model(spec, seed=2).eval()
    save_checkpoint(model, tmp_path / "h", meta={"method": "test"})
    ck = load_checkpoint(tmp_path / "h")
    assert ck.spec == spec and ck.meta["method"] == "test"
    cfg = json.loads((tmp_path / "h" / "config.json").read_text())
    assert cfg["num_attention_heads"] == [4, 2, 0, 6, 4] and cfg["head_dim"] == 16
    ids = torch.randint(0, spec.vocab_size, (1, 7))
    with torch.no_grad():
        assert torch.equal(ck.model(ids).logits, model(ids).logits)
    names = set(ck.model.state_dict())
    assert not any(n.startswith("model.layers.2.self_attn") for n in names)
    assert not any(n.startswith("model.layers.3.mlp") for n in names)


def test_sharded_and_bin_checkpoints(tmp_path):
    spec = tiny_spec(tie=False)
    model = build_model(spec, seed=3).eval()
    save_checkpoint(model, tmp_path / "s", shard_bytes=40_000)
    assert (tmp_path / "s" / "model.safetensors.index.json").exists()
    ids = torch.randint(0, spec.vocab_size, (1, 5))
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "s").model(ids).logits, model(ids).logits)
    # an HF .bin checkpoint (read with weights_only=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text((tmp_path / "s" / "config.json").read_text())
    torch.save(model.state_dict(), tmp_path / "b" / "pytorch_model.bin")
    with torch.no_grad():
        assert torch.equal(load_checkpoint(tmp_path / "b").model(ids).logits, model(ids).logits)


def test_orphan_norm_beside_removed_block_is_ignored(tmp_path):
    spec = hetero_spec()
    model = build_model(spec, seed=0)
    state = dict(model.state_dict())
    state["model.layers.2.input_layernorm.weight"] = torch.ones(64)
    from edgeprune.files.checkpoint import load_weights
    fresh = build_model(spec, seed=9)
    load_weights(fresh, state)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_weights(fresh, {**state, "model.layers.2.self_attn.q_proj.weight": torch.ones(64, 64)})


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    spec = tiny_spec()
    save_checkpoint(build_model(spec), tmp_path / "c")
    f = tmp_path / "c" / "model.safetensors"
    f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "config.json").write_text(json.dumps(
        {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    with pytest.raises(UnsupportedArchitecture):
        load_checkpoint(tmp_path / "g")


def test_hub_name_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be fetched"):
        load_checkpoint("HuggingFaceTB/SmolLM-135M-does-not-exist-here")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    spec = tiny_spec()
    save_checkpoint(build_model(spec, seed=0), tmp_path / "a")
    before = (tmp_path / "a" / "model.safetensors").read_bytes()
    import safetensors.torch as st

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(st, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(build_model(spec, seed=1), tmp_path / "a")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def test_derived_model_keeps_its_source_figures_under_source(tmp_path):
    """A shipped model's edgeprune.json never shows its teacher's name or perplexity at top level
   : the stage records stay on top, the source's own figures move under `source`."""
    from edgeprune.files.checkpoint import save_derived

    spec = hetero_spec("llama")
    save_checkpoint(build_model(spec, seed=0), tmp_path / "teacher",
                    meta={"name": "teacher-x", "valid_ppl": 118.9, "trained_tokens": 1000})
    teacher = load_checkpoint(tmp_path / "teacher")
    save_derived(build_model(spec, seed=1), tmp_path / "pruned", teacher, meta={"pruning": {"method": "flap"}})
    pruned = load_checkpoint(tmp_path / "pruned")
    save_derived(build_model(spec, seed=2), tmp_path / "model", pruned, meta={"recovery": {"valid_ppl": 99.0}})
    meta = json.loads((tmp_path / "model" / "edgeprune.json").read_text())
    assert "name" not in meta and "valid_ppl" not in meta and "trained_tokens" not in meta
    assert meta["source"] == {"name": "teacher-x", "valid_ppl": 118.9, "trained_tokens": 1000}
    assert meta["pruning"] == {"method": "flap"} and meta["recovery"] == {"valid_ppl": 99.0}
    assert meta["source_model"] == str(tmp_path / "teacher")
