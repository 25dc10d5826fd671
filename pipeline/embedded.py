"""The embedded default (DESIGN §8): a tiny teacher trained once, on CPU, on text every Python
installation carries, so `edgeprune ship` with no model shows the whole pipeline offline.

The teacher is cached under `$EDGEPRUNE_CACHE/embedded-teacher/<fingerprint>` (the fingerprint
covers the spec, the training recipe, the corpus and the tokenizer), written atomically. Its
training checkpoints ten times in `.work-<fingerprint>` beside it: an interrupted first run
continues from its last checkpoint, and reaches the weights an uninterrupted one would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeprune.shape.spec import ArchSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedRecipe:
    preset: str = "embedded-teacher"  # see edgeprune.shape.arch_presets (6 layers, hidden 128, FFN 512)
    tokens: int = 600_000  # ~2-3 minutes on 2 CPU cores (measured ~4k tokens/s on one core)
    # short windows, small batches: at a fixed token budget more optimizer steps win
    # (100k tokens: ppl 643 with 8x64 vs 731 with 16x128, same LR)
    seq_len: int = 64
    micro_batch: int = 8
    lr: float = 3e-3  # small model, short run: a high peak LR with cosine decay (1e-2 was worse)
    seed: int = 0


def embedded_data_source() -> Path:
    from edgeprune.data.tokens import embedded_corpus_path

    return embedded_corpus_path()


def embedded_spec(recipe: EmbeddedRecipe = EmbeddedRecipe()) -> ArchSpec:
    """The embedded teacher's shape, known before it is trained (ship resolves its target first)."""
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer
    from edgeprune.shape.arch_presets import preset_spec

    return preset_spec(recipe.preset, vocab_size=load_tokenizer(embedded_tokenizer_dir()).vocab_size)


def embedded_teacher(recipe: EmbeddedRecipe = EmbeddedRecipe(), progress: bool = True) -> Path:
    """Path of the embedded teacher checkpoint, training it first if it is not cached."""
    from edgeprune.files.checkpoint import save_checkpoint
    from edgeprune.data.tokens import embedded_corpus_path, embedded_tokenizer_dir, load_tokenizer
    from edgeprune.base.paths import cache_root
    from edgeprune.shape.model import build_model
    from edgeprune.base.hashing import json_digest
    from edgeprune.train.config import TrainConfig
    from edgeprune.train.train_data import load_data
    from edgeprune.train.loop import checkpoint_every, train_resuming

    tok_dir = embedded_tokenizer_dir()
    tok = load_tokenizer(tok_dir)
    corpus = embedded_corpus_path()
    spec = embedded_spec(recipe)
    key = json_digest({"spec": spec.to_dict(), "recipe": recipe.__dict__, "tokenizer": tok.fingerprint,
                       "corpus_bytes": corpus.stat().st_size})
    out = cache_root() / "embedded-teacher" / key
    if (out / "config.json").is_file():
        return out
    log.info("training the embedded teacher once (%d params, %d tokens); cached at %s",
             spec.n_params, recipe.tokens, out)
    data = load_data(corpus, tok_dir, progress=progress)
    cfg = TrainConfig(tokens=recipe.tokens, seq_len=recipe.seq_len, micro_batch=recipe.micro_batch,
                      lr=recipe.lr, seed=recipe.seed, eval_every=0, ckpt_every=0, progress=progress)
    cfg = replace(cfg, ckpt_every=checkpoint_every(cfg))
    model = build_model(spec, seed=recipe.seed)
    work = cache_root() / "embedded-teacher" / f".work-{key}"
    result = train_resuming(model, data, cfg, work)
    config_extra = {"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id, "pad_token_id": tok.eos_id}
    save_checkpoint(result.model.cpu().eval(), out, tokenizer_dir=tok_dir, config_extra=config_extra,
                    meta={"name": "edgeprune-embedded-teacher", "trained_tokens": result.tokens_seen,
                          "valid_ppl": result.valid_ppl, "corpus": str(corpus)})
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    log.info("embedded teacher: valid ppl %.2f after %d tokens", result.valid_ppl or float("nan"),
             result.tokens_seen)
    return out
