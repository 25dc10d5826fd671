"""The "hf" exporter: re-emit the Hugging Face directory (DESIGN §3) with tokenizer files and
generation config, through the checkpoint module's atomic writer, and check it reloads to the
same logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeprune.export.registry import Artifact, export_stem, register_exporter


@register_exporter("hf")
def export_hf(ckpt: Any, out_dir: Path, quants: list[str], check_tokens: Any, *, name: str | None = None,
              **_: Any) -> list[Artifact]:
    """Write `<out_dir>/<name>-hf/` (fp32 safetensors, config, generation_config, tokenizer,
    edgeprune.json); validate by reloading it and comparing logits on `check_tokens`."""
    import torch

    from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint, save_derived
    from edgeprune.export.fidelity import check_tolerance, logit_fidelity

    stem = name or export_stem(ckpt)
    target = Path(out_dir) / f"{stem}-hf"
    if getattr(ckpt, "path", None):
        save_derived(ckpt.model, target, ckpt, meta={"exported_from": str(ckpt.path)})
    else:
        save_checkpoint(ckpt.model, target, meta=getattr(ckpt, "meta", {}))
    tokens = check_tokens.reshape(1, -1)
    with torch.no_grad():
        ref = ckpt.model(tokens).logits[0].float().numpy()
        got = load_checkpoint(target).model(tokens).logits[0].float().numpy()
    fid = logit_fidelity(ref, got, tokens[0].numpy())
    check_tolerance(fid, 1e-6, f"{target.name} (HF reload)")
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return [Artifact("hf", "fp32", target, size, "", fid, {"files": sorted(f.name for f in target.iterdir())})]
