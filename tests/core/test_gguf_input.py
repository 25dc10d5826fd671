"""A GGUF file as a model input: spec, weights and tokenizer rebuilt from the file,
logits equal to the model written and to transformers' own GGUF loader; bad files exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.cli import main as cli_main
from edgeprune.export.gguf_writer import write_gguf
from tests.export.gguf_cases import TEXT, random_model, spec_of
from tests.export.test_gguf_chat import TEMPLATE, chat_tokenizer


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return chat_tokenizer(tmp_path_factory.mktemp("tok"))


def _gguf(tmp_path, case: str, tok_dir, ftype: str = "F32"):
    model = random_model(spec_of(case)).eval()
    src = save_checkpoint(model, tmp_path / f"{case}-src", tokenizer_dir=tok_dir,
                          config_extra={"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2},
                          meta={"name": "Tiny-Chat-7K"})
    ck = load_checkpoint(src)
    path = tmp_path / f"{case}-{ftype}.gguf"
    write_gguf(ck.model, path, ftype=ftype, tokenizer_dir=src, config=ck.config, meta=ck.meta)
    return model, path


@pytest.mark.parametrize("case", ["llama-uniform-tied", "qwen2-uniform-untied", "llama-hetero-lastfree-untied",
                                  "qwen2-hetero-untied"])
def test_gguf_input_spec_and_logits(tmp_path, tok_dir, case):
    model, path = _gguf(tmp_path, case, tok_dir)
    ck = load_checkpoint(path)
    assert ck.spec == model.spec
    from edgeprune.files.spec_of import spec_of as file_spec

    assert file_spec(path) == ck.spec  # the shape ship resolves its target for is the model it prunes
    assert ck.meta["name"] == "Tiny-Chat-7K" and ck.meta["basename"] == "Tiny-Chat-7K"
    assert ck.meta["source_gguf"]["dequantized_to"] == "float32"
    ids = torch.randint(0, model.spec.vocab_size, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(ck.model(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
    assert load_checkpoint(path).path == ck.path  # converted once, then cached by content


def test_a_gguf_input_is_opened_once_and_built_once(tmp_path, tok_dir, monkeypatch):
    """Loading a GGUF parses the file once (metadata, tensors and the unread-tensor check share one
    reader) and builds one model (the conversion's, not a second one from the folder it wrote);
    a second load reads the cached folder and never opens the file."""
    import edgeprune.files.checkpoint as checkpoint
    import edgeprune.files.gguf_reader as gguf_reader

    model, path = _gguf(tmp_path, "llama-hetero-lastfree-untied", tok_dir)
    opened, built = [], []
    real_open, real_model = gguf_reader.open_gguf, checkpoint.EdgeLM

    def open_spy(p):
        opened.append(p)
        return real_open(p)

    def model_spy(spec):
        built.append(spec)
        return real_model(spec)
    monkeypatch.setattr(gguf_reader, "open_gguf", open_spy)
    monkeypatch.setattr(checkpoint, "EdgeLM", model_spy)
    ck = load_checkpoint(path)
    assert (len(opened), len(built)) == (1, 1) and ck.spec == model.spec
    ids = torch.randint(0, model.spec.vocab_size, (1, 8))
    with torch.no_grad():
        torch.testing.assert_close(ck.model(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)
    again = load_checkpoint(path)
    assert (len(opened), len(built)) == (1, 2) and again.path == ck.path


def test_f16_gguf_dequantizes_to_the_stored_values(tmp_path, tok_dir):
    model, path = _gguf(tmp_path, "llama-hetero-tied", tok_dir, ftype="F16")
    ck = load_checkpoint(path)
    w = model.state_dict()["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(ck.model.state_dict()["model.layers.0.mlp.up_proj.weight"], w.half().float())


@pytest.mark.parametrize("case", ["llama-uniform-tied", "qwen2-uniform-untied"])
def test_matches_transformers_own_gguf_load(tmp_path, tok_dir, case):
    import transformers

    pytest.importorskip("accelerate")  # transformers' GGUF loader needs it

    _, path = _gguf(tmp_path, case, tok_dir)
    ours = load_checkpoint(path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()
    ids = torch.randint(0, ours.spec.vocab_size, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits.float(), ours.model(ids).logits, atol=1e-4, rtol=1e-4)


def test_tokenizer_rebuilt_from_metadata(tmp_path, tok_dir):
    import transformers
    from tokenizers import Tokenizer

    _, path = _gguf(tmp_path, "llama-uniform-tied", tok_dir)
    d = load_checkpoint(path).path
    orig = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    rebuilt = Tokenizer.from_file(str(d / "tokenizer.json"))
    sample = TEXT[:300] + "<|im_start|>user\nhi 12345<|im_end|>"
    assert rebuilt.encode(sample).ids == orig.encode(sample).ids
    assert rebuilt.decode(rebuilt.encode(sample).ids) == orig.decode(orig.encode(sample).ids)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == TEMPLATE and (d / "chat_template.jinja").read_text() == TEMPLATE
    assert cfg["eos_token"] == "<|im_end|>" and cfg["bos_token"] == "<|im_start|>" and cfg["pad_token"] == "<|im_end|>"
    config = json.loads((d / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 2)
    tok = transformers.AutoTokenizer.from_pretrained(d)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert ids.startswith("<|im_start|>system") and ids.endswith("<|im_start|>assistant\n")


def test_cli_info_accepts_gguf_and_refuses_bad_files(tmp_path, tok_dir, capsys):
    import gguf

    _, path = _gguf(tmp_path, "llama-hetero-tied", tok_dir)
    assert cli_main(["info", str(path)]) == 0
    capsys.readouterr()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(path.read_bytes()[:4000])
    assert cli_main(["info", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.gguf" in err
    other = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(other, "gpt2")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert cli_main(["info", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'gpt2'" in err and "not supported" in err


def test_cli_prune_eval_train_teacher_and_export_take_a_gguf(tmp_path, capsys):
    """Every command that takes a model takes the GGUF (prune, eval, train --teacher, export)."""
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer
    from edgeprune.shape.model import build_model
    from edgeprune.shape.spec import ArchSpec, LayerSpec
    from tests.pipeline.test_eval import TEXT as EVAL_TEXT

    tok = load_tokenizer(embedded_tokenizer_dir())
    spec = ArchSpec(family="llama", vocab_size=tok.vocab_size, hidden_size=64, head_dim=16,
                    layers=(LayerSpec(4, 2, 128),) * 2, max_position_embeddings=256)
    src = save_checkpoint(build_model(spec, seed=0), tmp_path / "src", tokenizer_dir=embedded_tokenizer_dir(),
                          config_extra={"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id})
    ck = load_checkpoint(src)
    g = tmp_path / "teacher.gguf"
    write_gguf(ck.model, g, tokenizer_dir=src, config=ck.config, meta={"name": "Toy-Teacher"})
    text = tmp_path / "text.txt"
    text.write_text(EVAL_TEXT * 4)
    assert cli_main(["prune", str(g), "--method", "uniform", "--ratio", "0.1", "--calib", str(text),
                     "--calib-samples", "2", "--calib-len", "32", "--out", str(tmp_path / "pruned")]) == 0
    assert cli_main(["eval", str(g), "--data", str(text), "--seq-len", "64", "--json", str(tmp_path / "eval.json")]) == 0
    assert cli_main(["train", str(tmp_path / "pruned"), "--teacher", str(g), "--data", str(text), "--tokens", "512",
                     "--seq-len", "32", "--micro-batch", "2", "--out", str(tmp_path / "trained")]) == 0
    assert cli_main(["export", str(g), "--formats", "hf", "--out", str(tmp_path / "exp")]) == 0
    meta = json.loads((tmp_path / "trained" / "edgeprune.json").read_text())
    assert "Toy-Teacher" in (meta.get("name"), (meta.get("source") or {}).get("name"))
    from edgeprune.export.gguf_writer import model_names

    assert model_names(meta) == ("Toy-Teacher pruned 10% (uniform) recovered", "Toy-Teacher")


def test_info_states_the_conversion_plan_and_reports_each_layer(tmp_path, tok_dir, capsys, monkeypatch):
    """A GGUF big enough to take a while (the threshold lowered to this tiny file) converts with a
    plan line, a line per dequantized layer and a done line with the ETA of the write."""
    import re

    import edgeprune.files.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "CONVERSION_PLAN_BYTES", 0)
    monkeypatch.setenv("EDGEPRUNE_PROGRESS_EVERY", "0")
    model, path = _gguf(tmp_path, "llama-hetero-tied", tok_dir)
    assert cli_main(["info", str(path)]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    plan = [ln for ln in lines if f"convert {path.name} plan: 2 steps" in ln]
    assert len(plan) == 1 and "1) read and dequantize its tensors, 2) write a float32 checkpoint" in plan[0]
    n = model.spec.n_layers
    deq = [ln for ln in lines if re.search(rf"dequantize {re.escape(path.name)}: \d+/{n} layer", ln)]
    assert len(deq) == n + 1  # the start line and one per layer (the last one says 100%)
    assert any(re.search(r"read and dequantize its tensors done in \d+s; ETA 2\) ~\d+s", ln) for ln in lines)
    assert cli_main(["info", str(path)]) == 0  # converted once: the second run has nothing to say about it
    assert "plan:" not in capsys.readouterr().err
