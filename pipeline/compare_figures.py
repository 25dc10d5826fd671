"""compare's finished figures, kept on disk as each one is measured (`<out>/figures.json`).

A figure (one model's bits/byte in PyTorch, in llama.cpp, its measured speed) is stored under a
key that digests what decides it: the model's contents, the held-out text, the window and the
engine's settings. The file is rewritten atomically after every figure, so a run that fails or
is killed later keeps every figure it finished, and a rerun with the same inputs reuses them
instead of measuring again (the llama.cpp perplexity of a real model takes many minutes on a CPU).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.atomic_io import atomic_write_text
from edgeprune.base.hashing import content_fingerprint, json_digest

log = logging.getLogger(__name__)

FILE = "figures.json"
VERSION = 1


def figure_key(kind: str, model: Path, **inputs: Any) -> str:
    """What decides a figure: its kind, the model's contents (not only its name) and `inputs`."""
    return json_digest({"kind": kind, "model": content_fingerprint(model), **inputs})


class FigureStore:
    def __init__(self, out: Path):
        self.path = Path(out) / FILE
        self.figures: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            log.warning("%s is unreadable (%s): measuring every figure again", self.path, e)
            return {}
        if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("figures"), dict):
            return {}
        return data["figures"]

    def get(self, key: str) -> Optional[dict[str, Any]]:
        rec = self.figures.get(key)
        return rec.get("values") if isinstance(rec, dict) else None

    def put(self, key: str, model: str, kind: str, values: dict[str, Any], seconds: float) -> None:
        self.figures[key] = {"model": model, "kind": kind, "values": values, "seconds": round(seconds, 3)}
        atomic_write_text(self.path, json.dumps({"version": VERSION, "figures": self.figures}, indent=2))

    def seconds(self, key: str) -> Optional[float]:
        rec = self.figures.get(key)
        return rec.get("seconds") if isinstance(rec, dict) else None

    def __len__(self) -> int:
        return len(self.figures)
