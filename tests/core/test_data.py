"""Data layer: tokenizers, token files (cache + invalidation), sources, splits, windows, the
embedded default corpus and tokenizer."""

from __future__ import annotations

import json
import lzma

import numpy as np
import pytest
import torch

from edgeprune.data import tokens as data
from edgeprune.data.tokens import (calibration_batch, embedded_corpus_path, embedded_tokenizer_dir,
                            load_tokenizer, random_windows, split_tokens, token_file)
from edgeprune.base.errors import DataError

DOCS = ["The quick brown fox jumps over the lazy dog.\nA second line.",
        "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n    return a + b\n",
        "Ünïcödé text — with ∑ symbols and émojis 🙂 survives a round trip."]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(embedded_tokenizer_dir())


def _expected(tok, docs):
    ids = []
    for d in docs:
        ids += tok.encode(d) + [tok.eos_id]
    return np.array(ids)


def test_embedded_tokenizer_files_and_specials(tok):
    d = embedded_tokenizer_dir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (d / name).is_file()
    assert tok.vocab_size == 4096 and tok.eos_id == 0 and tok.bos_id == 0
    assert tok.dtype == np.uint16 and len(tok.fingerprint) == 16
    raw = json.loads((d / "tokenizer.json").read_text())
    assert raw["pre_tokenizer"]["type"] == "ByteLevel" and raw["decoder"]["type"] == "ByteLevel"
    assert raw["model"]["type"] == "BPE"


@pytest.mark.parametrize("text", DOCS + ["", "   \n\t  leading spaces", "<|endoftext|> literal"])
def test_tokenizer_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_embedded_tokenizer_matches_transformers(tok):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(embedded_tokenizer_dir()))
    for text in DOCS:
        assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert hf.eos_token_id == hf.bos_token_id == hf.pad_token_id == 0


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="no tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(DataError, match="not a readable tokenizer.json"):
        load_tokenizer(tmp_path)


def test_txt_documents_joined_with_eos(tok, tmp_path):
    src = tmp_path / "docs.txt"
    src.write_text("\n\f\n".join(DOCS))
    arr = token_file(src, tok, progress=False)
    assert isinstance(arr, np.memmap) and arr.dtype == np.uint16 and arr.ndim == 1
    np.testing.assert_array_equal(np.asarray(arr), _expected(tok, DOCS))
    assert tok.decode(arr).split("<|endoftext|>")[:-1] == DOCS


def test_jsonl_parquet_xz_and_directory_sources(tok, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"text": d, "id": i}) + "\n" for i, d in enumerate(DOCS)))
    pq.write_table(pa.table({"text": DOCS}), tmp_path / "b.parquet")
    with lzma.open(tmp_path / "c.txt.xz", "wt") as f:
        f.write("\n\f\n".join(DOCS))
    want = _expected(tok, DOCS)
    for name in ("a.jsonl", "b.parquet", "c.txt.xz"):
        np.testing.assert_array_equal(np.asarray(token_file(tmp_path / name, tok, progress=False)), want)
    whole = token_file(tmp_path, tok, progress=False)  # sorted: a.jsonl, b.parquet, c.txt.xz
    np.testing.assert_array_equal(np.asarray(whole), np.concatenate([want] * 3))


def test_cache_hit_then_content_invalidation(tok, tmp_path, monkeypatch):
    src = tmp_path / "t.txt"
    src.write_text("\n\f\n".join(DOCS))
    first = token_file(src, tok, progress=False)
    calls = []
    real = data._encode_stream
    monkeypatch.setattr(data, "_encode_stream", lambda *a: calls.append(1) or real(*a))
    again = token_file(src, tok, progress=False)
    assert calls == [] and again.filename == first.filename  # cache hit: nothing re-tokenized
    src.write_text("\n\f\n".join(DOCS[:2]))  # same path, new content
    changed = token_file(src, tok, progress=False)
    assert calls == [1] and changed.filename != first.filename
    np.testing.assert_array_equal(np.asarray(changed), _expected(tok, DOCS[:2]))
    # the cache is keyed by content, not path: a copy elsewhere hits
    copy = tmp_path / "sub" / "copy.txt"
    copy.parent.mkdir()
    copy.write_bytes(src.read_bytes())
    assert token_file(copy, tok, progress=False).filename == changed.filename and calls == [1]


def test_token_file_bad_sources(tok, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        token_file(tmp_path / "missing.txt", tok)
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(DataError, match="holds no text"):
        token_file(tmp_path / "empty.txt", tok, progress=False)
    (tmp_path / "bad.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(DataError, match="field \"text\""):
        token_file(tmp_path / "bad.jsonl", tok, progress=False)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported"):
        token_file(tmp_path / "x.csv", tok)
    assert not list((tmp_path / "cache" / "tokens").glob("*.tmp*"))  # no partial files left (.NAME.tmp-PID)


def test_hf_source_offline_is_a_clear_error(tok, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not be loaded"):
        token_file("hf:edgeprune-no-such/dataset:train", tok)


def test_split_is_the_deterministic_tail():
    tokens = np.arange(1000, dtype=np.uint16)
    train, valid = split_tokens(tokens, 0.1)
    assert len(train) == 900 and len(valid) == 100 and valid[0] == 900
    t2, v2 = split_tokens(tokens, 0.1)
    np.testing.assert_array_equal(v2, valid)
    with pytest.raises(DataError):
        split_tokens(tokens, 1.5)
    with pytest.raises(DataError):
        split_tokens(np.arange(1), 0.5)


def test_random_windows_deterministic_and_in_bounds():
    tokens = np.arange(5000, dtype=np.uint16)
    a = random_windows(tokens, 8, 64, seed=3)
    assert a.dtype == torch.long and a.shape == (8, 64)
    assert torch.equal(a, random_windows(tokens, 8, 64, seed=3))
    assert not torch.equal(a, random_windows(tokens, 8, 64, seed=4))
    assert torch.equal(a[:, 1:] - a[:, :-1], torch.ones(8, 63, dtype=torch.long))  # consecutive
    with pytest.raises(DataError, match="fewer than one window"):
        random_windows(tokens[:10], 1, 64, seed=0)


def test_calibration_batch_comes_from_train_split(tok, tmp_path):
    tokens = np.arange(2000, dtype=np.uint16)
    cal = calibration_batch(tokens, n_samples=16, seq_len=32, seed=0)
    assert cal.shape == (16, 32) and int(cal.max()) < 1900  # never the held-out 5% tail
    src = tmp_path / "t.txt"
    src.write_text("\n\f\n".join(DOCS * 20))
    cal = calibration_batch(src, tok, n_samples=4, seq_len=16, seed=1)
    assert cal.shape == (4, 16) and torch.equal(cal, calibration_batch(src, tok, 4, 16, seed=1))


def test_embedded_corpus_is_python_text_and_cached():
    path = embedded_corpus_path()
    size = path.stat().st_size
    assert 4_000_000 <= size <= 8_000_000
    text = path.read_text()
    assert "def " in text and "import " in text and "\n\f\n" in text
    assert embedded_corpus_path() == path and path.stat().st_size == size


def test_streaming_split_across_chunk_boundaries(tmp_path, monkeypatch):
    from edgeprune.data import text_sources

    src = tmp_path / "s.txt"
    src.write_bytes("\r\n\f\r\n".join(d.replace("\n", "\r\n") for d in DOCS).encode())  # CRLF file
    monkeypatch.setattr(text_sources, "_READ_CHARS", 5)  # separators straddle every boundary
    assert list(text_sources.iter_documents(src)) == DOCS


def test_long_document_pieces_round_trip(tok, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_PIECE_CHARS", 64)
    monkeypatch.setattr(data, "_BATCH_CHARS", 100)
    long_doc = "\n".join(f"line {i}: value = {i * i}  # squared" for i in range(200))
    src = tmp_path / "long.txt"
    src.write_text(long_doc + "\n\f\n" + DOCS[0])
    arr = token_file(src, tok, progress=False)
    assert int((np.asarray(arr) == tok.eos_id).sum()) == 2  # EOS only at document ends
    assert tok.decode(arr) == long_doc + "<|endoftext|>" + DOCS[0] + "<|endoftext|>"
