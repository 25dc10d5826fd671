"""Shared fixtures: tiny specs (heterogeneous on purpose, the house style) and saved checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

from edgeprune.shape.spec import ArchSpec, LayerSpec

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny test models are dominated by per-op overhead: one thread is faster than two, and far
# faster when the machine is busy (measured: 0.6 s vs 10.5 s for 74 forwards under load).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_spec(family: str = "llama", tie: bool = True, vocab: int = 256) -> ArchSpec:
    """Uniform: 3 layers, hidden 64, 4 heads / 2 KV heads of 16, FFN 96."""
    return ArchSpec.uniform(family=family, vocab_size=vocab, hidden_size=64, n_layers=3, n_heads=4,
                            n_kv_heads=2, ffn_dim=96, head_dim=16, tie_word_embeddings=tie,
                            max_position_embeddings=128)


def hetero_spec(family: str = "llama", tie: bool = True, vocab: int = 256) -> ArchSpec:
    """Per-layer widths, including an attention-free and an MLP-free layer."""
    return ArchSpec(family=family, vocab_size=vocab, hidden_size=64, head_dim=16,
                    layers=(LayerSpec(4, 2, 96), LayerSpec(2, 1, 64), LayerSpec(0, 0, 128),
                            LayerSpec(6, 3, 0), LayerSpec(4, 4, 32)),
                    tie_word_embeddings=tie, max_position_embeddings=128)


@pytest.fixture
def tiny():
    return tiny_spec()


@pytest.fixture
def hetero():
    return hetero_spec()
