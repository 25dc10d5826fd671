"""Where edgeprune keeps what it can rebuild: one cache root for every cache (tokens, the embedded
corpus and teacher, converted GGUF inputs, latency tables, the local probe), so that setting
`$EDGEPRUNE_CACHE` moves all of them and a test can point them at a temporary folder."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def cache_root(create: bool = True) -> Path:
    """`$EDGEPRUNE_CACHE`, default `~/.cache/edgeprune` (created on demand unless `create` is False).
    With `create`, a folder that cannot be made or written is a CacheError naming it and the
    variable that moves it: the raw OSError would name a path the user never typed."""
    root = Path(os.environ.get("EDGEPRUNE_CACHE") or Path.home() / ".cache" / "edgeprune").expanduser()
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(root))
        except OSError as e:
            from edgeprune.base.errors import CacheError

            where = "$EDGEPRUNE_CACHE" if os.environ.get("EDGEPRUNE_CACHE") else "the default cache"
            raise CacheError(f"the cache folder {root} ({where}) cannot be written ({e.strerror}): "
                             f"set EDGEPRUNE_CACHE to a folder you can write") from None
    return root
