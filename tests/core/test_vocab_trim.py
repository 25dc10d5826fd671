"""Vocabulary trimming's token choice and tokenizer files, on the refcorpus byte-level BPE
(16,384 tokens) with counts from half of its held-out text and checks on the other half."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from edgeprune.base.errors import DataError
from edgeprune.data.vocab_trim import (BpeVocab, byte_alphabet, plan_trim, remap_token_ids, template_texts,
                                       trimmed_tokenizer_config, trimmed_tokenizer_json)

REF = Path("/work/shared/refcorpus")
TOK = REF / "tokenizer"
pytestmark = pytest.mark.skipif(not (TOK / "tokenizer.json").is_file(), reason="needs shared/refcorpus")

OTHER_LANGUAGES = ["Der schnelle braune Fuchs springt über den faulen Hund. Größe: 12 µm.",
                   "Быстрая коричневая лиса перепрыгивает через ленивую собаку.",
                   "敏捷的棕色狐狸跳过了懒狗。日本語のテキストも。",
                   "الثعلب البني السريع يقفز فوق الكلب الكسول",
                   "🦊💨 → 🐕 ✓ naïve café — ‘quotes’ …\t\r\n  \x00\x7f end"]


@pytest.fixture(scope="module")
def ref():
    from tokenizers import Tokenizer

    tj = json.loads((TOK / "tokenizer.json").read_text())
    tok = Tokenizer.from_file(str(TOK / "tokenizer.json"))
    text = (REF / "valid.txt").read_text()[:600_000]
    half = len(text) // 2
    ids = [i for e in tok.encode_batch(text[:half].split("\n\f\n"), add_special_tokens=False) for i in e.ids]
    counts = np.bincount(ids, minlength=tok.get_vocab_size())
    return tj, tok, counts, text[half:], (TOK / "chat_template.jinja").read_text()


def _trimmed(tj, trim):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(json.dumps(trimmed_tokenizer_json(tj, trim)))


def test_size_is_met_and_every_kept_token_is_buildable_from_kept_merges(ref):
    tj, _, counts, _, tpl = ref
    trim = plan_trim(tj, counts, size=3000, chat_template=tpl)
    assert trim.size == 3000 and trim.original_size == 16384 and 256 < trim.required < 3000
    out = trimmed_tokenizer_json(tj, trim)
    vocab = out["model"]["vocab"]
    assert set(vocab.values()) | {t["id"] for t in out["added_tokens"]} == set(range(trim.size))
    built = {}
    for m in out["model"]["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        assert a in vocab and b in vocab and a + b in vocab  # no merge names a dropped token
        built.setdefault(a + b, []).append((a, b))
    base = set(byte_alphabet()) | {t["content"] for t in out["added_tokens"]}
    orphans = [s for s in vocab if s not in base and s not in built]
    assert orphans == []
    # every merge of the original that builds a kept token survives (so BPE's choices are unchanged)
    full = BpeVocab.from_json(tj)
    kept = set(trim.kept)
    need = sum(len(full.producers.get(t, ())) for t in kept)
    assert len(out["model"]["merges"]) == need
    # frequent tokens first: the kept set covers more of the text than any other of its size could
    # leave out; at least it holds the 2,000 most frequent tokens of the counted text
    assert set(np.argsort(-counts, kind="stable")[:2000].tolist()) <= kept


def test_coverage_keeps_the_fewest_frequent_tokens_covering_the_text(ref):
    tj, _, counts, _, tpl = ref
    small = plan_trim(tj, counts, coverage=0.9, chat_template=tpl)
    big = plan_trim(tj, counts, coverage=0.999, chat_template=tpl)
    assert small.covered >= 0.9 and big.covered >= 0.999
    assert small.size < big.size < 16384 and set(small.kept) <= set(big.kept)
    for trim, p in ((small, 0.9), (big, 0.999)):
        order = np.argsort(-counts, kind="stable")
        n = int(np.searchsorted(np.cumsum(counts[order]), p * counts.sum())) + 1  # fewest frequent tokens
        assert set(order[:n].tolist()) <= set(trim.kept)
        assert trim.size < n + trim.required + 0.25 * n  # beyond them: what must stay, merges' intermediates


def test_trimmed_tokenizer_tokenizes_as_before_wherever_all_tokens_were_kept(ref):
    tj, tok, counts, held, tpl = ref
    trim = plan_trim(tj, counts, size=4096, chat_template=tpl)
    new_tok, new = _trimmed(tj, trim), trim.new_ids()
    words = [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(held[:150_000])]
    assert len(words) > 20_000
    same = split = 0
    for w in set(words):
        before = tok.encode(w, add_special_tokens=False).ids
        after = new_tok.encode(w, add_special_tokens=False).ids
        assert new_tok.decode(after) == w
        if all(i in new for i in before):
            assert after == [new[i] for i in before], w
            same += 1
        else:
            split += 1  # a dropped token comes out as other, kept pieces (usually more of them)
    assert same > 1000 and split > 100  # both cases really occur at this size
    text = held[:100_000]
    assert len(new_tok.encode(text).ids) > len(tok.encode(text).ids)


def test_any_string_round_trips(ref):
    tj, tok, counts, held, tpl = ref
    new_tok = _trimmed(tj, plan_trim(tj, counts, size=600, chat_template=tpl))
    rng = random.Random(0)
    samples = list(OTHER_LANGUAGES) + [held[:5000]]
    samples += [bytes(rng.randrange(256) for _ in range(300)).decode("utf-8", errors="replace") for _ in range(20)]
    samples += ["".join(chr(rng.randrange(1, 0x10FFFF)) for _ in range(100)).encode("utf-8", "ignore").decode()
                for _ in range(20)]
    for s in samples:
        ids = new_tok.encode(s, add_special_tokens=False).ids
        assert max(ids) < 600 and new_tok.decode(ids) == s


def test_specials_and_chat_template_tokens_are_kept(ref):
    from edgeprune.data.chat_template import render_chat

    tj, tok, counts, _, tpl = ref
    trim = plan_trim(tj, counts, size=300, chat_template=tpl)  # barely above what must stay
    new_tok, new = _trimmed(tj, trim), trim.new_ids()
    assert all(t["id"] in new for t in tj["added_tokens"])
    prompt = render_chat(tpl, [{"role": "system", "content": ""}, {"role": "user", "content": ""}])
    before = tok.encode(prompt, add_special_tokens=False).ids
    assert new_tok.encode(prompt, add_special_tokens=False).ids == [new[i] for i in before]
    assert "<|im_start|>assistant\n" in template_texts(tpl)


def test_ids_in_configs_are_renumbered(ref):
    tj, _, counts, _, _ = ref
    trim = plan_trim(tj, counts, size=1000)
    kept3 = trim.kept[300]
    assert remap_token_ids({"bos_token_id": 0, "eos_token_id": [2, kept3], "pad_token_id": None, "x": 5}, trim) == \
        {"bos_token_id": 0, "eos_token_id": [2, 300]}
    cfg = trimmed_tokenizer_config({"added_tokens_decoder": {"0": {"content": "<|endoftext|>"}}, "a": 1}, trim)
    assert cfg == {"added_tokens_decoder": {"0": {"content": "<|endoftext|>"}}, "a": 1}
    with pytest.raises(DataError, match="not in the trimmed vocabulary"):
        remap_token_ids({"eos_token_id": max(set(range(16384)) - set(trim.kept))}, trim)


def test_post_processor_ids_are_renumbered(ref):
    tj, tok, counts, _, _ = ref
    tj = json.loads(json.dumps(tj))
    tj["post_processor"] = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|im_end|>", "type_id": 0}},
                                                                    {"Sequence": {"id": "A", "type_id": 0}}],
                            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                            "special_tokens": {"<|im_end|>": {"id": "<|im_end|>", "ids": [2], "tokens": ["<|im_end|>"]}}}
    trim = plan_trim(tj, counts, size=500)
    out = trimmed_tokenizer_json(tj, trim)
    assert out["post_processor"]["special_tokens"]["<|im_end|>"]["ids"] == [trim.new_ids()[2]]


def test_refusals_are_clear(ref):
    tj, _, counts, _, tpl = ref
    with pytest.raises(DataError, match="below the"):
        plan_trim(tj, counts, size=100, chat_template=tpl)
    with pytest.raises(DataError, match=r"in \(0, 1\]"):
        plan_trim(tj, counts, coverage=1.5)
    with pytest.raises(DataError, match="Unigram"):
        plan_trim({"model": {"type": "Unigram", "vocab": []}}, counts, size=10)
    with pytest.raises(DataError, match="not <0x00>..<0xFF> byte-fallback BPE"):
        plan_trim({"model": {"type": "BPE", "byte_fallback": True, "vocab": {"a": 0}}}, counts, size=10)
    with pytest.raises(DataError, match="not byte-level BPE"):
        plan_trim({"model": {"type": "BPE", "vocab": {"a": 0}}}, counts, size=10)


@pytest.fixture(scope="module")
def fallback_bpe(ref):
    """A SentencePiece-style BPE (Llama-2 / Mistral layout: ▁ for spaces, <0x00>..<0xFF> byte-fallback
    tokens in the vocabulary, <unk>/<s>/</s> specials) trained on refcorpus text."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    _, _, _, held, _ = ref
    text = (REF / "valid.txt").read_text()[:300_000]
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=6000, special_tokens=specials + [f"<0x{b:02X}>" for b in range(256)],
                                  show_progress=False)
    tok.train_from_iterator(text.split("\n"), trainer)
    tj = json.loads(tok.to_str())
    tj["added_tokens"] = [t for t in tj["added_tokens"] if t["content"] in specials]  # bytes live in the vocab
    tok = Tokenizer.from_str(json.dumps(tj))
    ids = [i for e in tok.encode_batch(text[:150_000].split("\n"), add_special_tokens=False) for i in e.ids]
    return tj, tok, np.bincount(ids, minlength=tok.get_vocab_size()), held


def test_byte_fallback_bpe_trims_tokenizes_as_before_and_round_trips(fallback_bpe):
    tj, tok, counts, held = fallback_bpe
    trim = plan_trim(tj, counts, size=1500)
    assert trim.size == 1500 and 259 <= trim.required < 1500
    new_tok, new = _trimmed(tj, trim), trim.new_ids()
    assert all(f"<0x{b:02X}>" in new_tok.get_vocab() for b in range(256))
    same = split = 0
    for w in set(held[:60_000].split()):
        before = tok.encode(w, add_special_tokens=False).ids
        after = new_tok.encode(w, add_special_tokens=False).ids
        if all(i in new for i in before):
            assert after == [new[i] for i in before], w
            same += 1
        else:
            split += 1
    assert same > 500 and split > 100
    for s in OTHER_LANGUAGES + [held[:3000]]:
        ids = new_tok.encode(s, add_special_tokens=False).ids
        assert max(ids) < 1500
        assert new_tok.decode(ids) == tok.decode(tok.encode(s, add_special_tokens=False).ids)


def test_a_vocabulary_missing_some_byte_tokens_keeps_those_it_has(ref):
    """SmolLM2's vocabulary lacks 21 byte tokens (0xC0, 0xFF, a few control bytes): the ones it has
    are kept, and text the original tokenizes still round-trips."""
    tj, tok, counts, held, tpl = ref
    tj = json.loads(json.dumps(tj))
    gone = [byte_alphabet()[b] for b in (0x04, 0xC0, 0xFF)]
    tj["model"]["vocab"] = {s: i for s, i in tj["model"]["vocab"].items() if s not in gone}
    tj["model"]["merges"] = [m for m in tj["model"]["merges"] if not any(g in m for g in gone)]
    trim = plan_trim(tj, counts, size=700, chat_template=tpl)
    assert len(BpeVocab.from_json(tj).byte_ids()) == 253 and trim.size == 700
    new_tok = _trimmed(tj, trim)
    for s in OTHER_LANGUAGES[:4] + [held[:3000]]:
        assert new_tok.decode(new_tok.encode(s, add_special_tokens=False).ids) == s
