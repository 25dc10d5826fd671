"""Resumable pipeline stages (used by `edgeprune ship`).

A stage is finished when `<root>/.stages/<name>.json` records the fingerprint of its inputs
(the recipe keys it reads plus the fingerprints of the stages it consumes) and its outputs
still exist. A re-run with the same inputs skips it; a changed input re-runs it and every
stage after it, because their fingerprints chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgeprune.checkpoint import atomic_write_text

log = logging.getLogger(__name__)


def fingerprint(obj: Any) -> str:
    """Stable short hash of JSON-able data."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class StageResult:
    name: str
    fingerprint: str
    outputs: dict[str, Any] = field(default_factory=dict)  # JSON-able: paths as strings
    seconds: float = 0.0
    skipped: bool = False  # True when reused from an earlier run


class StageRunner:
    """Runs named stages in order; prints one progress line per stage with its time."""

    def __init__(self, root: Path, stream=None):
        self.root = Path(root)
        self.state_dir = self.root / ".stages"
        self.results: dict[str, StageResult] = {}
        self.stream = stream or sys.stderr

    def _record_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def run(self, name: str, inputs: Mapping[str, Any], fn: Callable[[], dict[str, Any]],
            after: Sequence[str] = (), output_paths: Callable[[dict], Sequence[Path]] | None = None
            ) -> StageResult:
        fp = fingerprint({"inputs": inputs, "after": [self.results[a].fingerprint for a in after]})
        rec_path = self._record_path(name)
        if rec_path.is_file():
            rec = json.loads(rec_path.read_text())
            paths = [Path(p) for p in (output_paths(rec["outputs"]) if output_paths else [])]
            if rec.get("fingerprint") == fp and all(p.exists() for p in paths):
                res = StageResult(name, fp, rec["outputs"], rec.get("seconds", 0.0), skipped=True)
                self.results[name] = res
                self._line(f"[{name}] up to date (finished earlier in {res.seconds:.1f} s), skipped")
                return res
        self._line(f"[{name}] running ...")
        t0 = time.perf_counter()
        outputs = fn() or {}
        dt = time.perf_counter() - t0
        res = StageResult(name, fp, outputs, dt)
        atomic_write_text(rec_path, json.dumps(
            {"fingerprint": fp, "outputs": outputs, "seconds": dt}, indent=2, default=str))
        self.results[name] = res
        self._line(f"[{name}] done in {dt:.1f} s")
        return res

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def summary(self) -> list[dict[str, Any]]:
        return [{"stage": r.name, "seconds": round(r.seconds, 2), "skipped": r.skipped}
                for r in self.results.values()]
