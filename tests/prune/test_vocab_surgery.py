"""Vocabulary surgery and `prune --vocab / --vocab-coverage`: the head keeps a slice of its rows, so
logits of kept tokens equal the untrimmed model's; ids are renumbered everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edgeprune.cli import main
from edgeprune.data.tokens import load_tokenizer
from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.prune.vocab_surgery import trim_rows
from edgeprune.shape.model import build_model
from tests.conftest import hetero_spec, tiny_spec

REF = Path("/work/shared/refcorpus")
pytestmark = pytest.mark.skipif(not (REF / "tokenizer" / "tokenizer.json").is_file(), reason="needs shared/refcorpus")
VOCAB = 16384


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("tie", [True, False])
def test_trim_rows_slices_the_head_exactly(tie):
    spec = hetero_spec(tie=tie, vocab=300)
    model = build_model(spec, seed=0)
    kept = sorted(set(range(0, 300, 3)) | {1, 2, 299})
    ids = [kept[i] for i in (5, 0, 17, 33, 2, 99, 40)]
    ref = _logits(model, ids)
    trim_rows(model, kept)
    new = {o: n for n, o in enumerate(kept)}
    got = _logits(model, [new[i] for i in ids])
    assert model.spec.vocab_size == len(kept) and got.shape == (len(ids), len(kept))
    assert torch.equal(got, ref[:, kept])
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tie


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    save_checkpoint(build_model(tiny_spec(vocab=VOCAB, tie=False), 0), tmp_path / "m",
                    tokenizer_dir=REF / "tokenizer",
                    config_extra={"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0})
    text = (REF / "valid.txt").read_text()
    (tmp_path / "data.txt").write_text(text[:200_000])
    (tmp_path / "held.txt").write_text(text[400_000:420_000])
    return tmp_path


def test_prune_vocab_only_writes_a_trimmed_checkpoint(setup, capsys):
    t = setup
    assert main(["prune", str(t / "m"), "--vocab", "2000", "--data", str(t / "data.txt"), "--out", str(t / "out")]) == 0
    assert "16,384 -> 2,000 tokens" in capsys.readouterr().out
    src, out = load_checkpoint(t / "m"), load_checkpoint(t / "out")
    kept = out.meta["vocab"]["kept_ids"]
    assert out.spec.vocab_size == len(kept) == 2000 and kept == sorted(kept)
    assert out.spec.with_layers(src.spec.layers) == out.spec and out.meta["vocab"]["original_size"] == VOCAB
    assert out.meta["vocab"]["data"] == str(t / "data.txt")
    # eos <|im_end|> = 2 and bos/pad 0 are specials: kept in front, ids unchanged; generation config too
    assert (out.config["bos_token_id"], out.config["eos_token_id"], out.config["pad_token_id"]) == (0, 2, 0)
    assert json.loads((t / "out" / "generation_config.json").read_text())["eos_token_id"] == 2
    old_tok, new_tok = load_tokenizer(t / "m"), load_tokenizer(t / "out")
    assert new_tok.vocab_size == 2000 and (t / "out" / "chat_template.jinja").is_file()
    held = (t / "held.txt").read_text()
    new_ids = new_tok.encode(held)
    assert new_tok.decode(new_ids) == held and max(new_ids) < 2000
    # logits of kept tokens equal the untrimmed model's on the same (renumbered) input
    ids = [kept[i] for i in new_ids[:64]]
    assert torch.equal(_logits(out.model, new_ids[:64]), _logits(src.model, ids)[:, kept])
    # transformers' own tokenizer reads the trimmed files the same way
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(t / "out")
    assert hf(held[:3000], add_special_tokens=False)["input_ids"] == new_tok.encode(held[:3000])
    assert hf.eos_token_id == 0 or hf.convert_ids_to_tokens(2) == "<|im_end|>"


def test_prune_with_target_and_coverage(setup):
    t = setup
    assert main(["prune", str(t / "m"), "--method", "depth", "--ratio", "0.012", "--vocab-coverage", "0.99",
                 "--data", str(t / "data.txt"), "--out", str(t / "out"), "--align", "8",
                 "--calib-samples", "4", "--calib-len", "16"]) == 0
    out = load_checkpoint(t / "out")
    v = out.meta["vocab"]
    assert v["covered"] >= 0.99 and out.spec.vocab_size == v["size"] < VOCAB
    assert out.meta["pruning"]["method"] == "depth"
    assert sum(lay.ffn_dim for lay in out.spec.layers) < 3 * 96  # the cut and the trimming both happened


@pytest.mark.parametrize("extra,match", [
    ([], "a target is required"),
    (["--vocab", "0"], "must be >= 1"),
    (["--vocab", "100"], "below the"),
    (["--vocab-coverage", "1.5"], "must be in"),
    (["--vocab", "3000", "--vocab-coverage", "0.9"], "not allowed with"),
])
def test_prune_vocab_refusals(setup, capsys, extra, match):
    t = setup
    rc = main(["prune", str(t / "m"), "--data", str(t / "data.txt"), "--out", str(t / "out"), *extra])
    assert rc == 2 and match in capsys.readouterr().err
    assert not (t / "out").exists()
