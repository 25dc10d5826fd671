"""Where edgeprune keeps what it can rebuild: one cache root for every cache (tokens, the embedded
corpus and teacher, converted GGUF inputs, latency tables, the local probe), so that setting
`$EDGEPRUNE_CACHE` moves all of them and a test can point them at a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(create: bool = True) -> Path:
    """`$EDGEPRUNE_CACHE`, default `~/.cache/edgeprune` (created on demand unless `create` is False)."""
    root = Path(os.environ.get("EDGEPRUNE_CACHE") or Path.home() / ".cache" / "edgeprune").expanduser()
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root
