"""`export_model`: one call from a checkpoint to validated files + manifest.json (DESIGN §6).

The CLI (`edgeprune export`) and `ship` call this. Formats are registry names ("hf", "gguf",
"onnx"); quant names are routed to their format by name (edgeprune/shape/quant_presets.py); a device profile
adds its preferred presets. The manifest beside the files records the spec, every file's
sha256 and size, and its fidelity figures against PyTorch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edgeprune.base.errors import ExportError
from edgeprune.shape.quant_presets import route_quants

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
# held-out tokens every exported file's logits are compared with PyTorch on ("check tokens": they
# validate the export; they are not pruning's calibration data)
DEFAULT_CHECK_TOKENS = 128


def device_quants(names: Sequence[str]) -> list[str]:
    """The quant presets the named device profiles ask for (GGUF and ONNX, in profile order)."""
    from edgeprune.devices import load_device

    out: list[str] = []
    for name in names:
        prof = load_device(name)
        for q in list(prof.gguf_quants) + list(prof.onnx_quants):
            if q not in out:
                out.append(q)
    return out


def load_check_tokens(ckpt: Any, source: Any = None, n: int = DEFAULT_CHECK_TOKENS) -> Any:
    """The check tokens: a 1-D LongTensor of fixed tokens both runtimes evaluate. `source`: a
    tensor/list of ids, a text file (tokenized with the checkpoint's tokenizer.json), or None (a
    fixed sample text when the checkpoint has a tokenizer, else a fixed pseudo-random id sequence)."""
    import torch

    if source is not None and not isinstance(source, (str, Path)):
        return torch.as_tensor(source, dtype=torch.long).reshape(-1)[:max(n, 2)]
    text = None
    if source is not None:
        from edgeprune.data.text_sources import regular_file_problem, sparse_problem

        path = Path(source)
        if not path.exists():
            raise ExportError(f"check-token text file {path} does not exist")
        problem = regular_file_problem(path) or sparse_problem(path)
        if problem is not None:
            raise ExportError(problem)
        with open(path, encoding="utf-8", errors="replace") as f:  # what the check uses, not the whole file
            text = f.read(40 * n)
    tj = ckpt.path / "tokenizer.json" if getattr(ckpt, "path", None) else None
    if tj is not None and tj.is_file():
        from edgeprune.data.tokens import load_tokenizer
        from edgeprune.export.gguf_export import TOKENIZER_SAMPLE

        ids = load_tokenizer(ckpt.path).encode(text or TOKENIZER_SAMPLE * 8)[:n]
        if len(ids) >= 2:
            return torch.tensor(ids, dtype=torch.long)
    gen = torch.Generator().manual_seed(1234)
    return torch.randint(0, ckpt.spec.vocab_size, (n,), generator=gen)


def export_model(
    model_dir_or_ckpt: Union[str, Path, Any],
    out_dir: Union[str, Path],
    formats: Sequence[str] = ("gguf",),
    quants: Sequence[str] = (),
    device: Optional[Union[str, Sequence[str]]] = None,
    check_tokens: Any = None,
    *,
    options: Optional[dict[str, dict[str, Any]]] = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Export a checkpoint (directory or loaded Checkpoint) to `formats` with `quants` (+ the
    device profiles' presets), validate each file, write `<out_dir>/manifest.json`; return it.

    A format with no quant named gets its float reference (GGUF F32, ONNX fp32). `options` are
    per-format keyword arguments for the exporter (e.g. {"gguf": {"greedy_tokens": 20}}).
    `check_tokens`: the held-out tokens (ids or a text file) every file's logits are compared
    with PyTorch on (load_check_tokens); the manifest records how many ("check_tokens").
    """
    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.files.checkpoint import Checkpoint, load_checkpoint
    from edgeprune.export.registry import get_exporter
    from edgeprune.base.outdir import clean_stale

    ckpt = model_dir_or_ckpt if isinstance(model_dir_or_ckpt, Checkpoint) else load_checkpoint(model_dir_or_ckpt)
    out_dir = Path(out_dir)
    devices = [device] if isinstance(device, str) else list(device or [])
    formats = [f.strip().lower() for f in formats if f.strip()]
    routed = route_quants(list(quants))
    stray = [f for f in ("gguf", "onnx") if routed[f] and f not in formats]
    if stray:
        raise ExportError(f"quant presets {[q for f in stray for q in routed[f]]} are for format(s) {stray}, "
                          f"which --formats {','.join(formats)} does not include")
    # a device profile names presets of every format: keep those of the formats asked for
    for fmt, qs in route_quants(device_quants(devices)).items():
        routed[fmt] += [q for q in qs if q not in routed[fmt]]
    exporters = {f: get_exporter(f) for f in formats}  # unknown format: error before any work
    tokens = load_check_tokens(ckpt, check_tokens)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_stale(out_dir)  # .export-tmp-PID / .gguf.old-PID left by a killed run
    # Everything is written into a staging folder and moved in only when every file validated:
    # a failure or Ctrl-C leaves out_dir as it was (no partial or unvalidated file).
    staging = out_dir / f".export-tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    artifacts = []
    t0 = time.time()
    try:
        for fmt, fn in exporters.items():
            qs = routed.get(fmt, []) or {"gguf": ["F32"], "onnx": ["fp32"]}.get(fmt, [])
            log.info("exporting %s: %s", fmt, ", ".join(qs) or "-")
            # one folder per format (gguf/, onnx/, hf/): ONNX writes config + tokenizer beside its
            # graphs for optimum, which must not mix with the GGUF files
            artifacts += fn(ckpt, staging / fmt, qs, tokens, progress=progress, **(options or {}).get(fmt, {}))
        _move_in(staging, out_dir)
        for a in artifacts:
            a.path = out_dir / Path(a.path).relative_to(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest = {
        "source": str(ckpt.path) if ckpt.path else None,
        # a model converted from a GGUF: that file and its hash (its exported files carry its stem alone)
        **({"source_gguf": ckpt.meta["source_gguf"]} if isinstance((ckpt.meta or {}).get("source_gguf"), dict) else {}),
        "spec": ckpt.spec.to_dict(),
        "n_params": ckpt.spec.n_params,
        **({"quality": q} if (q := quality_at_cut(ckpt.meta)) else {}),
        "devices": devices,
        "check_tokens": int(tokens.numel()),  # held-out tokens every file was compared on
        "seconds": round(time.time() - t0, 2),
        "artifacts": [a.to_dict(relative_to=out_dir) for a in artifacts],
    }
    # the manifest is written last: a folder whose manifest is missing or names a missing file is
    # an incomplete export (read_manifest refuses it)
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2, default=str))
    return manifest


def _move_in(staging: Path, out_dir: Path) -> None:
    """Move every validated top-level entry of `staging` into `out_dir`. The old manifest goes
    first (so an interrupted move is seen as an incomplete export, never as a manifest naming
    files of another export); each old entry is renamed aside, the new one renamed in, then the
    old one deleted, so a kill at any point leaves each entry whole (clean_stale restores an
    entry whose swap was cut between its two renames)."""
    from edgeprune.base.outdir import MARKER, add_to_marker, ensure_entries_marker

    try:
        (out_dir / MANIFEST).unlink()
    except FileNotFoundError:
        pass
    ensure_entries_marker(out_dir)
    for entry in sorted(staging.iterdir()):
        final = out_dir / entry.name
        old = out_dir / f".{entry.name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(entry, final)
        add_to_marker(out_dir, entry.name)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists():
            old.unlink()
    add_to_marker(out_dir, MARKER)


def read_manifest(out_dir: Union[str, Path]) -> dict[str, Any]:
    """The manifest of a finished export; ExportError when the folder holds none, or an
    unreadable one, or one naming a file that is missing or of another size (an interrupted
    export)."""
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExportError(f"{out_dir} holds no {MANIFEST}: not a finished export (interrupted?); "
                          "export again") from None
    except (OSError, ValueError) as e:
        raise ExportError(f"{path} is not a readable manifest ({e}); export again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("artifacts"), list):
        raise ExportError(f"{path} is not an export manifest (no artifacts list); export again")
    for a in manifest["artifacts"]:
        f = Path(out_dir) / str(a.get("path", ""))
        if a.get("format") == "hf" or f.is_dir():
            ok = f.is_dir()  # an HF folder: its files were checked when it was written
        else:
            ok = f.is_file() and ("bytes" not in a or f.stat().st_size == a["bytes"])
        if not ok:
            raise ExportError(f"{path} names {a.get('path')!r}, which is missing or changed: "
                              "an incomplete export; export again")
    return manifest


def manifest_check_tokens(manifest: dict[str, Any]) -> Optional[int]:
    """How many held-out tokens every file of `manifest` was compared on; manifests written
    before the key was `check_tokens` named it `calibration_tokens`."""
    return manifest.get("check_tokens", manifest.get("calibration_tokens"))


def quality_at_cut(meta: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The verdict prune measured right after the cut (edgeprune.json "pruning" → "verdict"), with
    whether the model was trained since (then the figure is the cut's, not this model's)."""
    meta = meta or {}
    pruning = meta.get("pruning")
    rec = pruning.get("verdict") if isinstance(pruning, dict) else None
    if not isinstance(rec, dict) or not isinstance(rec.get("perplexity_ratio"), (int, float)) \
            or not math.isfinite(rec["perplexity_ratio"]) or not isinstance(rec.get("verdict"), str):
        return None
    # figures and words only: a model file's command is not repeated to the user as advice
    keep = ("perplexity_ratio", "loss_original", "loss_pruned", "verdict")
    # ship's recovery writes "recovery", `edgeprune train` writes "train" beside the pruning record
    trained = any(meta.get(k) for k in ("recovery", "train"))
    return {**{k: rec[k] for k in keep if k in rec}, "trained_since": trained}


def quality_line(quality: dict[str, Any]) -> str:
    """One line for a manifest's quality record (export's output, the app bundle's README)."""
    since = " (trained since: the figure is the cut's, before recovery)" if quality.get("trained_since") else ""
    return (f"quality at the cut: held-out perplexity ×{float(quality['perplexity_ratio']):.2f} the original's: "
            f"{str(quality.get('verdict', ''))[:80]}{since}")


def manifest_table(manifest: dict[str, Any]) -> str:
    """Markdown table of a manifest: one row per file with size and fidelity."""
    from edgeprune.base.table import human_bytes, markdown_table

    rows = []
    for a in manifest["artifacts"]:
        f = a.get("fidelity", {})
        rows.append([a["format"], a["quant"], a["path"], human_bytes(a["bytes"]),
                     f"{f.get('max_abs_diff', float('nan')):.3g}", f"{f.get('rel_diff', float('nan')):.2e}",
                     f"{f.get('top1_agreement', float('nan')):.3f}",
                     f"{f.get('ppl', float('nan')):.4g} ({f.get('ppl_delta', float('nan')):+.3g})"])
    return markdown_table(["format", "quant", "file", "size", "max|Δ|", "rel", "top-1", "ppl (Δ)"], rows)
