"""The search's journal: every finished candidate's scores, written as they are measured, so an
interrupted search resumes after its last finished candidate instead of from the start.

A journal belongs to one search: the model's weights, the calibration tokens and the options
that change a score are its key; a journal with another key is ignored (and replaced), never
mixed in. Entries are keyed by stage ("cut": scored right after the cut, "distil": after the
short distillation, filed with its step count) and the shape's label; "budget" holds the counts
a time budget chose, so a resumed search goes on with the same ones.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.atomic_io import atomic_write_json

log = logging.getLogger(__name__)


class SearchJournal:
    def __init__(self, path: Optional[Path], key: str):
        self.path, self.key = (Path(path) if path else None), key
        self.entries: dict[str, Any] = {}
        if self.path is not None and self.path.is_file():
            try:
                held = json.loads(self.path.read_text())
            except (OSError, ValueError):
                held = None
            if isinstance(held, dict) and held.get("key") == key and isinstance(held.get("entries"), dict):
                self.entries = held["entries"]
                log.info("search: resuming with %d finished candidate scores from %s", len(self.entries), self.path)
            elif held is not None:
                log.warning("search: %s belongs to another search (model, calibration or options differ): "
                            "starting afresh", self.path)

    @property
    def resumed(self) -> int:
        """Candidate scores read back ("cut" and "distil" entries; the counts a budget chose are not scores)."""
        return sum(1 for k in self.entries if k.split(":", 1)[0] in ("cut", "distil"))

    def get(self, stage: str, label: str) -> Optional[list]:
        value = self.entries.get(f"{stage}:{label}")
        return list(value) if isinstance(value, list) else None

    def put(self, stage: str, label: str, value: list) -> None:
        self.entries[f"{stage}:{label}"] = list(value)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path, {"key": self.key, "entries": self.entries})


__all__ = ["SearchJournal"]
