"""Fixtures for the end-to-end pipeline tests: tiny models with the embedded tokenizer."""

from __future__ import annotations

import pytest

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec


@pytest.fixture(scope="session")
def embedded_tok():
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer

    d = embedded_tokenizer_dir()
    return d, load_tokenizer(d)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory):
    """~60 KB of real text: this package's own sources (every install carries them)."""
    import edgeprune

    from pathlib import Path

    root = Path(edgeprune.__file__).parent
    docs = [p.read_text() for p in sorted(root.rglob("*.py"))]
    f = tmp_path_factory.mktemp("data") / "text.txt"
    f.write_text("\n\f\n".join(docs))
    return f


def save_tiny(path, tok_dir, tok, layers, seed=0, hidden=64):
    spec = ArchSpec(family="llama", vocab_size=tok.vocab_size, hidden_size=hidden, head_dim=16,
                    layers=tuple(LayerSpec(*x) for x in layers), max_position_embeddings=256)
    ids = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    return save_checkpoint(build_model(spec, seed=seed), path, tokenizer_dir=tok_dir, config_extra=ids)
