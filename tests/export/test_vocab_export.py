"""A trimmed vocabulary travels into every export: GGUF (tokens, merges, types, pre-tokenizer, chat
template) tokenizes held-out text exactly as the trimmed tokenizer.json does, and generate / chat
run on it; the ONNX folder carries the trimmed tokenizer and config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeprune.cli import main
from edgeprune.data.tokens import load_tokenizer
from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.shape.model import build_model
from tests.conftest import tiny_spec

REF = Path("/work/shared/refcorpus")
pytestmark = [pytest.mark.skipif(not (REF / "tokenizer" / "tokenizer.json").is_file(), reason="needs shared/refcorpus"),
              pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")]
KEEP = 4096


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    """(untrimmed dir, trimmed dir, F32 GGUF of the trimmed model, held-out text)."""
    root = tmp_path_factory.mktemp("vocab")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPRUNE_CACHE", str(root / "cache"))
    text = (REF / "valid.txt").read_text()
    (root / "data.txt").write_text(text[:300_000])  # the user's text; held out: 100k characters after it
    save_checkpoint(build_model(tiny_spec(vocab=16384), 0), root / "m", tokenizer_dir=REF / "tokenizer",
                    config_extra={"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0})
    assert main(["prune", str(root / "m"), "--vocab", str(KEEP), "--data", str(root / "data.txt"),
                 "--out", str(root / "t")]) == 0
    from edgeprune.export.gguf_export import export_gguf

    ckpt = load_checkpoint(root / "t")
    check = torch.tensor(load_tokenizer(root / "t").encode(text[300_000:301_000])[:64])
    (art,) = export_gguf(ckpt, root / "gguf", ["F32"], check, greedy_tokens=0, progress=False)
    yield root / "m", root / "t", art.path, text[600_000:700_000]
    mp.undo()


def test_llamacpp_and_hf_give_the_same_ids_on_held_out_text(trimmed):
    from transformers import AutoTokenizer

    from edgeprune.export.llamacpp_runner import llamacpp_tokenize

    _, t, gguf, held = trimmed
    assert len(held) == 100_000
    ours = load_tokenizer(t).encode(held)
    assert max(ours) < KEEP and load_tokenizer(t).decode(ours) == held
    theirs = llamacpp_tokenize(gguf, held)
    mismatches = sum(a != b for a, b in zip(ours, theirs)) + abs(len(ours) - len(theirs))
    assert mismatches == 0
    assert AutoTokenizer.from_pretrained(t)(held[:20_000], add_special_tokens=False)["input_ids"] == \
        load_tokenizer(t).encode(held[:20_000])


def test_gguf_metadata_describes_the_trimmed_vocabulary(trimmed):
    import gguf as gg

    from edgeprune.files.gguf_reader import read_metadata

    _, t, path, _ = trimmed
    md = read_metadata(path)
    tj = json.loads((t / "tokenizer.json").read_text())
    tokens = md["tokenizer.ggml.tokens"]
    assert len(tokens) == KEEP and md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "gpt-2"
    by_id = {i: s for s, i in tj["model"]["vocab"].items()}
    assert all(tokens[i] == s for i, s in by_id.items())
    assert len(md["tokenizer.ggml.merges"]) == len(tj["model"]["merges"])
    types = md["tokenizer.ggml.token_type"]
    assert [i for i, ty in enumerate(types) if ty == gg.TokenType.CONTROL] == [0, 1, 2]
    assert md["tokenizer.ggml.eos_token_id"] == 0
    assert "<|im_start|>" in md["tokenizer.chat_template"]


def test_generate_and_chat_run_on_a_trimmed_gguf(trimmed, capsys):
    _, _, path, _ = trimmed
    assert main(["generate", str(path), "--prompt", "The quick brown fox", "-n", "8"]) == 0
    assert main(["chat", str(path), "--prompt", "def main():", "-n", "6"]) == 0
    assert capsys.readouterr().out.strip()


def test_onnx_export_carries_the_trimmed_tokenizer(trimmed, tmp_path):
    from edgeprune.export.onnx_export import export_onnx
    from edgeprune.export.onnx_runtime import OnnxLM

    src, t, _, held = trimmed
    ckpt = load_checkpoint(t)
    ids = load_tokenizer(t).encode(held[:400])[:32]
    (art,) = export_onnx(ckpt, tmp_path / "onnx", [], torch.tensor(ids))
    folder = art.path.parent
    assert load_tokenizer(folder).encode(held[:5000]) == load_tokenizer(t).encode(held[:5000])
    assert json.loads((folder / "config.json").read_text())["vocab_size"] == KEEP
    # the ONNX file's logits equal the untrimmed PyTorch model's, sliced to the kept rows
    kept = ckpt.meta["vocab"]["kept_ids"]
    got = OnnxLM(art.path).logits(ids)
    with torch.no_grad():
        ref = load_checkpoint(src).model(torch.tensor([[kept[i] for i in ids]])).logits[0][:, kept].numpy()
    assert got.shape == (len(ids), KEEP)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_hf_export_carries_the_trimmed_tokenizer(trimmed, tmp_path):
    from edgeprune.export.hf_dir import export_hf

    _, t, _, held = trimmed
    ckpt = load_checkpoint(t)
    (art,) = export_hf(ckpt, tmp_path, [], torch.tensor(load_tokenizer(t).encode(held[:400])[:32]))
    out = load_checkpoint(art.path)
    assert out.spec.vocab_size == KEEP and out.meta["vocab"]["kept_ids"] == ckpt.meta["vocab"]["kept_ids"]
    assert load_tokenizer(art.path).encode(held[:5000]) == load_tokenizer(t).encode(held[:5000])
