"""Vocabulary surgery: keep only some rows of the embedding and of the output head.

Which rows stay is decided elsewhere (edgeprune/data/vocab_trim.py, from the tokenizer and the
user's text); this cuts the model to them and writes the trimmed checkpoint with its tokenizer
files and token ids renumbered. The head keeps exactly the kept rows, so on the same input (ids
renumbered) the trimmed model's logits are a slice of the untrimmed model's: equal, not close.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from edgeprune.base.errors import PruneError
from edgeprune.data.vocab_trim import (VocabTrim, remap_token_ids, trimmed_tokenizer_config,
                                       trimmed_tokenizer_json)
from edgeprune.files.checkpoint import TOKENIZER_FILES, Checkpoint, save_derived
from edgeprune.shape.model import EdgeLM


def trim_rows(model: EdgeLM, kept: Sequence[int]) -> EdgeLM:
    """Keep embedding and head rows `kept` (old ids, new id i = kept[i]), tied or untied; the
    spec's vocab_size becomes len(kept). In place; returns the model."""
    n = model.spec.vocab_size
    bad = [i for i in kept if not 0 <= int(i) < n]
    if bad or len(set(kept)) != len(kept) or not kept:
        raise PruneError(f"kept token ids must be distinct and within 0..{n - 1} (got {len(kept)} ids, "
                         f"{len(bad)} outside)")
    idx = torch.tensor([int(i) for i in kept], dtype=torch.long)
    emb = model.model.embed_tokens
    new_emb = nn.Embedding(len(idx), emb.embedding_dim, device=emb.weight.device, dtype=emb.weight.dtype)
    with torch.no_grad():
        new_emb.weight.copy_(emb.weight.index_select(0, idx.to(emb.weight.device)))
    model.model.embed_tokens = new_emb
    if model.spec.tie_word_embeddings:
        model.lm_head = nn.Linear(emb.embedding_dim, len(idx), bias=False, device=emb.weight.device,
                                  dtype=emb.weight.dtype)
        model.lm_head.weight = new_emb.weight
    else:
        old = model.lm_head
        model.lm_head = nn.Linear(old.in_features, len(idx), bias=False, device=old.weight.device,
                                  dtype=old.weight.dtype)
        with torch.no_grad():
            model.lm_head.weight.copy_(old.weight.index_select(0, idx.to(old.weight.device)))
    model.spec = replace(model.spec, vocab_size=len(idx))
    return model


def write_trimmed_tokenizer(src: Path, dst: Path, trim: VocabTrim) -> None:
    """The tokenizer files of `src` into `dst` with the vocabulary trimmed: tokenizer.json
    renumbered, tokenizer_config's added_tokens_decoder remapped, the rest (chat template, special
    token names) copied as they are. Slow-tokenizer files (vocab.json, merges.txt) are not written:
    they would describe the untrimmed vocabulary."""
    import shutil

    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    (dst / "tokenizer.json").write_text(json.dumps(trimmed_tokenizer_json(tj, trim), ensure_ascii=False),
                                        encoding="utf-8")
    for name in TOKENIZER_FILES:
        if name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json"):
            continue
        if (src / name).is_file():
            if name == "tokenizer_config.json":
                cfg = json.loads((src / name).read_text(encoding="utf-8"))
                (dst / name).write_text(json.dumps(trimmed_tokenizer_config(cfg, trim), indent=2,
                                                   ensure_ascii=False), encoding="utf-8")
            else:
                shutil.copy2(src / name, dst / name)


def save_trimmed(model: EdgeLM, out_dir: Path, source: Checkpoint, trim: VocabTrim,
                 meta: Optional[Mapping[str, Any]] = None, data: Optional[str] = None) -> Path:
    """Save `model` (already cut with `trim_rows`) derived from `source`: trimmed tokenizer files,
    bos/eos/pad renumbered in config and generation config, and edgeprune.json's "vocab" holding
    the old id of every new id (and `data`, the text the tokens were counted on)."""
    if source.path is None or not (Path(source.path) / "tokenizer.json").is_file():
        raise PruneError("vocabulary trimming needs the model's tokenizer.json")
    ids = remap_token_ids(source.config, trim)
    with tempfile.TemporaryDirectory(prefix=".vocab-") as tmp:
        write_trimmed_tokenizer(Path(source.path), Path(tmp), trim)
        return save_derived(model, out_dir, source, meta={**(meta or {}), "vocab": {"data": data, **trim.summary()}},
                            tokenizer_dir=Path(tmp), config_extra=ids)


__all__ = ["trim_rows", "write_trimmed_tokenizer", "save_trimmed"]
