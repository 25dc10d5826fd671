"""Fingerprints (edgeprune/base/hashing.py): the strings are on disk (token cache file names, training
resume fingerprints, ship's stage records), so each is pinned to the value the code computed
before the helpers were shared: a change here orphans every cache and resume dir."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgeprune.data.tokens import Tokenizer, token_cache_paths
from edgeprune.data.text_sources import source_key
from edgeprune.base.hashing import array_digest, digest, json_digest, state_dict_digest
from edgeprune.train.train_data import tokens_fingerprint
from edgeprune.train.loop import ScheduleSpan, fingerprint_parts
from edgeprune.train.teacher import tokenizer_fingerprint

TOKENIZER_BYTES = b'{"model": {"type": "BPE"}}'


def test_digest_is_a_sha256_prefix_over_the_parts_in_order():
    full = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256("test")
    assert digest("test", n=None) == full
    assert digest("te", b"st") == full[:16]  # parts are concatenated, str as UTF-8
    assert digest(b"test", n=24) == full[:24]
    assert json_digest({"b": 1, "a": 2}) == json_digest({"a": 2, "b": 1})  # key order does not matter


def test_stage_fingerprint_is_unchanged():
    assert json_digest({"b": [1, 2.5, "x"], "a": None, "p": Path("/x/y")}) == "dddc871c5ef069a0"  # pipeline/stages.py


def test_token_array_fingerprint_is_unchanged():
    assert tokens_fingerprint(np.arange(10, dtype=np.uint16)) == "3c7acfa845b57df9"
    strided = np.repeat(np.arange(10, dtype=np.uint16), 2)[::2]  # same values, not contiguous
    assert array_digest(strided) == "3c7acfa845b57df9"


def _weights() -> dict[str, torch.Tensor]:
    return {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 7,
            "a.bias": torch.tensor([1.0, -2.0]),
            "b.weight": torch.arange(8, dtype=torch.bfloat16).reshape(4, 2)}


def test_stage_weights_digest_is_unchanged():
    assert state_dict_digest(_weights()) == "adbd6c6e7c98270e"  # pipeline/stage_training.py


def test_training_run_fingerprint_is_unchanged():
    """Per-component parts at 12 characters, the run's fingerprint over them at 16: a resume
    directory written before the change must still be recognised as this run's."""
    spec = SimpleNamespace(to_dict=lambda: {"hidden": 8, "layers": [1, 2]})
    data = SimpleNamespace(fingerprint="abc", tokenizer_fingerprint="def")
    cfg = SimpleNamespace(trajectory_fields=lambda: {"lr": 0.001, "seq_len": 16})
    parts = fingerprint_parts(spec, data, cfg, 1, None, None, {"weights": "w"}, ScheduleSpan(2, 10))
    assert parts == {"spec": "1852059f862c", "data": "692a2cc974cc", "config": "2cb9b494183e", "world_size": "1",
                     "teacher": "none", "prune_aware": "none", "extra": "859e2806543c",
                     "schedule_span": "cb1fc0e15104"}
    assert json_digest(parts) == "58bdcbe2b075147a"  # Trainer.fingerprint


def test_tokenizer_fingerprint_and_token_cache_key_are_unchanged(tmp_path):
    (tmp_path / "tokenizer.json").write_bytes(TOKENIZER_BYTES)
    assert tokenizer_fingerprint(tmp_path) == "8bb2d91febcec5f8"
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("hello world\n")
    assert source_key(corpus) == "c0cd0eba0f5066b6cd707ea95a2d77b44a4d421289365424b59ab16a2551ad01"
    tok = Tokenizer(path=tmp_path / "tokenizer.json", fingerprint="0123456789abcdef", vocab_size=300,
                    eos_id=None, bos_id=None, _tok=None)
    bin_path, meta_path = token_cache_paths(corpus, tok, tmp_path / "cache")
    assert (bin_path.name, meta_path.name) == ("8fec73d401560cedbe2eb41a.uint16", "8fec73d401560cedbe2eb41a.json")


def test_load_tokenizer_fingerprint_matches_the_teachers(tmp_path):
    """edgeprune.data.tokens and train/teacher.py fingerprint a tokenizer the same way (the teacher
    check compares the two)."""
    pytest.importorskip("tokenizers")
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer

    d = embedded_tokenizer_dir()
    assert load_tokenizer(d).fingerprint == tokenizer_fingerprint(d)
