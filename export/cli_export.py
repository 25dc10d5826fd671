"""`edgeprune export MODEL --formats gguf,onnx --quant Q4_K_M,Q8_0,int8,int4 [--device raspberry-pi-5] --out DIR`.

Thin layer over export.api.export_model: parse, export (progress bars from the exporters),
print the manifest as a table. Files appear in DIR only once validated (staging + rename).
"""

from __future__ import annotations

import argparse
import sys
from edgeprune.base.cli_flags import model_help


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgeprune.base.cli_flags import hidden_alias
    from edgeprune.shape.quant_presets import GGUF_QUANTS, ONNX_PRESETS

    p.add_argument("model", help=model_help("the model to export"))
    p.add_argument("--formats", type=_csv, default=["gguf"], help="comma list of hf, gguf, onnx (default gguf)")
    p.add_argument("--quant", action="extend", type=_csv, default=[], metavar="Q,...",
                   help=f"quant presets, routed by name: GGUF ftypes ({', '.join(GGUF_QUANTS)}) and ONNX "
                        f"presets ({', '.join(ONNX_PRESETS)}); default: the float reference of each format")
    p.add_argument("--device", action="extend", type=_csv, default=[], metavar="NAME[,NAME]",
                   help="add the quant presets these device profiles prefer (see `edgeprune devices`)")
    data = p.add_argument("--data", default=None, metavar="TEXT_FILE",
                          help="held-out text for the fidelity/perplexity check (default: a fixed sample)")
    hidden_alias(p, data, "--calib")
    p.add_argument("--greedy-tokens", type=int, default=20,
                   help="GGUF: greedy tokens compared with PyTorch on the F32 file (0 = skip)")
    p.add_argument("--head-type", default=None, metavar="TYPE", type=str.upper,
                   help="GGUF: store the output head (the tied embedding) at TYPE in every quantized file: Q8_0, "
                        "Q6_K, Q5_0 or Q4_0 (default: llama.cpp's choice, Q6_K or Q8_0); after a cut the head is "
                        "most of the bytes a decoded token reads")
    p.add_argument("--out", required=True, help="output directory (manifest.json goes here)")
    p.add_argument("--bundle", action="store_true",
                   help="also write OUT/app/: the GGUFs named <name>-<quant>.gguf, an Ollama Modelfile, serve.sh "
                        "(llama-server / llama-cpp-python) and a README with sizes and memory per context")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The output folder (checked, locked and guarded by edgeprune.cli)."""
    return [(args.out, "dir")]


def run(args: argparse.Namespace) -> int:
    from edgeprune.base.errors import ExportError
    from edgeprune.export.api import MANIFEST, export_model, manifest_table, quality_line

    if args.bundle and "gguf" not in [f.strip().lower() for f in args.formats]:
        raise ExportError("--bundle needs GGUF files: add gguf to --formats")
    from edgeprune.shape.gguf_types import head_type_of

    head_type_of(args.head_type)  # a bad --head-type is one line before any work
    manifest = export_model(args.model, args.out, formats=args.formats, quants=args.quant, device=args.device,
                            check_tokens=args.data, options={"gguf": {"greedy_tokens": args.greedy_tokens,
                                                      "head_type": args.head_type}},
                            progress=not args.no_progress)
    sys.stdout.write(manifest_table(manifest) + "\n")
    if manifest.get("quality"):
        sys.stdout.write(quality_line(manifest["quality"]) + "\n")
    sys.stdout.write(f"manifest: {args.out}/{MANIFEST}\n")
    if args.bundle:
        from pathlib import Path

        from edgeprune.export.app_bundle import read_generation_config, write_app_bundle

        ggufs = [(a["quant"], Path(args.out) / a["path"]) for a in manifest["artifacts"] if a["format"] == "gguf"]
        info = write_app_bundle(Path(args.out) / "app", ggufs, devices=args.device,
                                generation_config=read_generation_config(Path(args.model)),
                                quality=manifest.get("quality"))
        for w in info["memory_warnings"]:
            sys.stderr.write(f"warning: {w}\n")
        sys.stdout.write(f"app bundle: {args.out}/app ({len(ggufs)} GGUF, Modelfile, serve.sh, README.md)\n")
    return 0
