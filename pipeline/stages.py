"""Resumable pipeline stages (used by `edgeprune ship`).

A stage is finished when `<root>/.stages/<name>.json` records the fingerprint of its inputs
(the recipe keys it reads plus the fingerprints of the stages it consumes) and its outputs
still exist with the contents it recorded. A re-run with the same inputs skips it; a changed
input re-runs it and every stage after it, because their fingerprints chain.

Fingerprints cover contents, not only names: an input value naming an existing file or folder
(the model, the --data file) and every path a stage outputs are fingerprinted through
edgeprune.base.hashing.content_fingerprint (size, mtime, safetensors headers, small files whole), so a
teacher retrained or a data file rewritten in place re-runs what depends on it. A record that
cannot be read (empty or corrupt after a crash) means "not finished": the stage runs again.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, TextIO, Union

from edgeprune.base.atomic_io import atomic_write_text
from edgeprune.base.hashing import content_fingerprint, json_digest

log = logging.getLogger(__name__)


def _path_values(obj: Any) -> list[str]:
    """Strings inside JSON-able data that name an existing file or folder (sorted, unique)."""
    found: set[str] = set()

    def walk(o: Any) -> None:
        if isinstance(o, str):
            if o and len(o) < 4096 and "\n" not in o and Path(o).exists():
                found.add(o)
        elif isinstance(o, Mapping):
            for v in o.values():
                walk(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
        elif isinstance(o, Path):
            walk(str(o))

    walk(obj)
    return sorted(found)


def contents_of(paths: Sequence[Union[str, Path]]) -> dict[str, str]:
    """{path: content fingerprint}; a checkpoint's config.json stands for its whole folder."""
    out = {}
    for p in paths:
        p = Path(p)
        target = p.parent if p.name == "config.json" else p
        out[str(p)] = content_fingerprint(target)
    return out


@dataclass
class StageResult:
    name: str
    fingerprint: str
    outputs: dict[str, Any] = field(default_factory=dict)  # JSON-able: paths as strings
    seconds: float = 0.0
    skipped: bool = False  # True when reused from an earlier run


class StageRunner:
    """Runs named stages in order; prints one progress line per stage with its time."""

    def __init__(self, root: Path, stream: Optional[TextIO] = None):
        self.root = Path(root)
        self.state_dir = self.root / ".stages"
        self.results: dict[str, StageResult] = {}
        self.stream = stream or sys.stderr

    def _record_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def run(self, name: str, inputs: Mapping[str, Any], fn: Callable[[], dict[str, Any]],
            after: Sequence[str] = (), output_paths: Callable[[dict], Sequence[Path]] | None = None
            ) -> StageResult:
        fp = json_digest({"inputs": inputs, "input_contents": contents_of(_path_values(inputs)),
                          "after": [self.results[a].fingerprint for a in after]})
        rec = self._read_record(name)
        if rec is not None and rec.get("fingerprint") == fp:
            outputs = rec.get("outputs") or {}
            try:
                paths = self._outputs_of(outputs, output_paths)
            except (KeyError, TypeError, ValueError):  # a record from another version: run again
                paths = None
            if paths is not None and all(Path(p).exists() for p in paths) \
                    and contents_of(paths) == rec.get("output_contents"):
                res = StageResult(name, self._chain(fp, rec["output_contents"]), outputs,
                                  rec.get("seconds", 0.0), skipped=True)
                self.results[name] = res
                self._line(f"[{name}] up to date (finished earlier in {res.seconds:.1f} s), skipped")
                return res
        self._line(f"[{name}] running ...")
        t0 = time.perf_counter()
        outputs = fn() or {}
        dt = time.perf_counter() - t0
        contents = contents_of(self._outputs_of(outputs, output_paths))
        res = StageResult(name, self._chain(fp, contents), outputs, dt)
        atomic_write_text(self._record_path(name), json.dumps(
            {"fingerprint": fp, "outputs": outputs, "output_contents": contents, "seconds": dt},
            indent=2, default=str))
        self.results[name] = res
        self._line(f"[{name}] done in {dt:.1f} s")
        return res

    @staticmethod
    def _chain(fp: str, output_contents: Mapping[str, str]) -> str:
        """What later stages see of this one: its inputs and what it produced."""
        return json_digest({"fp": fp, "outputs": output_contents})

    @staticmethod
    def _outputs_of(outputs: Mapping[str, Any], output_paths: Optional[Callable[[dict], Sequence[Path]]]
                    ) -> list[str]:
        declared = [str(p) for p in (output_paths(outputs) if output_paths else [])]
        return sorted(set(declared) | set(_path_values(outputs)))

    def _read_record(self, name: str) -> Optional[dict[str, Any]]:
        path = self._record_path(name)
        if not path.is_file():
            return None
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            log.warning("stage record %s is unreadable (%s): running the stage again", path, e)
            return None
        if not isinstance(rec, dict) or "fingerprint" not in rec or not isinstance(rec.get("outputs", {}), dict):
            log.warning("stage record %s is not a stage record: running the stage again", path)
            return None
        return rec

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def summary(self) -> list[dict[str, Any]]:
        return [{"stage": r.name, "seconds": round(r.seconds, 2), "skipped": r.skipped}
                for r in self.results.values()]
