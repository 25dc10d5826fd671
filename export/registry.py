"""Exporters registered by short name ("hf", "gguf", "onnx"); the CLI, ship and tests share it.

An exporter is `fn(ckpt: Checkpoint, out_dir: Path, quants: list[str], check_tokens: LongTensor,
**options) -> list[Artifact]`: it writes its files under out_dir (atomically), validates every file
in its runtime against PyTorch and returns one Artifact per file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeprune.base.errors import ExportError


@dataclass
class Artifact:
    format: str  # "hf" | "gguf" | "onnx"
    quant: str  # "F32", "Q4_K_M", "fp32", "int8-avx2", "int4", ...
    path: Path  # the file (or directory for hf)
    bytes: int  # size on disk
    sha256: str  # of the file ("" for directories)
    fidelity: dict[str, float] = field(default_factory=dict)  # see export.fidelity.logit_fidelity
    details: dict[str, Any] = field(default_factory=dict)  # runtime-specific (tensor types, bpw, ...)

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path.relative_to(relative_to) if relative_to else self.path)
        return d


Exporter = Callable[..., list[Artifact]]
EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str) -> Callable[[Exporter], Exporter]:
    def deco(fn: Exporter) -> Exporter:
        EXPORTERS[name] = fn
        return fn
    return deco


def get_exporter(name: str) -> Exporter:
    if name not in EXPORTERS:
        _import_builtin()
    if name not in EXPORTERS:
        raise ExportError(f"unknown export format {name!r}; known: {', '.join(sorted(EXPORTERS))}")
    return EXPORTERS[name]


def _import_builtin() -> None:
    """Import the modules that register the built-in exporters (kept lazy: onnx and llama_cpp
    are heavy)."""
    import importlib

    for mod in ("edgeprune.export.hf_dir", "edgeprune.export.gguf_export", "edgeprune.export.onnx_export"):
        importlib.import_module(mod)


def export_stem(ckpt: Any) -> str:
    """The stem of the files written for `ckpt`: its folder's name, except for a checkpoint
    converted from a GGUF, whose cache folder is `<file stem>-<16 hex of its sha256>` (content-keyed,
    edgeprune/files/gguf_input.py): its files take the GGUF's own stem, and the hash stays in the
    manifest (`source`, `source_gguf`) rather than in a name a user reads."""
    path = getattr(ckpt, "path", None)
    if not path:
        return "model"
    src = (getattr(ckpt, "meta", None) or {}).get("source_gguf")
    if isinstance(src, dict) and isinstance(src.get("file"), str) and isinstance(src.get("sha256"), str):
        stem = Path(src["file"]).stem
        if Path(path).name == f"{stem}-{src['sha256'][:16]}":
            return stem
    return Path(path).name
