"""`edgeprune info MODEL`: the per-layer table, parameter split and bytes per quant type."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from edgeprune.base.cli_flags import model_help

if TYPE_CHECKING:
    from edgeprune.shape.spec import ArchSpec

QTYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_K")
GGUF_PRESETS = ("F16", "Q8_0", "Q4_K_M", "Q4_0")  # the files devices/ ask for most


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgeprune.base.cli_flags import positive_int

    p.add_argument("model", help=model_help(extra=("an .onnx file", "a spec .json file")))
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--context", type=positive_int, default=512, help="context length for attention FLOPs (default 512)")
    p.add_argument("--gguf-sizes", default=",".join(GGUF_PRESETS), metavar="Q,...",
                   help="GGUF presets whose exact file size `export` would write is shown (llama.cpp dry run, "
                        f"checkpoints only; '' = none; default {','.join(GGUF_PRESETS)})")


def load_spec(model: str) -> ArchSpec:
    """The spec of `model` (edgeprune.files.spec_of). A checkpoint or GGUF is loaded as a model first,
    so the table of one whose weights do not match it (or that edgeprune cannot compute) is an
    error, not a table; a spec .json is a shape alone."""
    from edgeprune.files.spec_of import spec_of

    if Path(model).suffix.lower() != ".json":
        from edgeprune.files.checkpoint import load_checkpoint

        load_checkpoint(model)
    return spec_of(model)


def describe(spec: ArchSpec, context: int = 512) -> dict:
    return {
        "spec": spec.to_dict(),
        "uniform": spec.is_uniform,
        "params": spec.param_counts(),
        "layers": [dict(index=i, **spec.layers[i].__dict__, **spec.layer_param_counts(i))
                   for i in range(spec.n_layers)],
        "flops_per_token": spec.flops_per_token(context),
        "context": context,
        "kv_cache_bytes_per_token_f16": spec.kv_cache_bytes_per_token(2),
        "weight_bytes": {q: spec.weight_bytes(q) for q in QTYPES},
    }


def render(d: dict) -> str:
    from edgeprune.base.table import human_bytes, human_count, markdown_table

    spec = d["spec"]
    lines = [f"family {spec['family']}, {len(d['layers'])} layers, hidden {spec['hidden_size']}, "
             f"head_dim {spec['head_dim']}, vocab {spec['vocab_size']}, "
             f"{'uniform' if d['uniform'] else 'heterogeneous'}, "
             f"{'tied' if spec['tie_word_embeddings'] else 'untied'} head", ""]
    lines.append(markdown_table(
        ["layer", "heads", "kv_heads", "ffn", "attn params", "mlp params"],
        [[x["index"], x["n_heads"], x["n_kv_heads"], x["ffn_dim"], x["attention"], x["mlp"]]
         for x in d["layers"]]))
    p = d["params"]
    lines += ["", markdown_table(["part", "params", "share"],
                                 [[k, f"{v:,}", f"{100 * v / p['total']:.1f}%"] for k, v in p.items()])]
    lines += ["", markdown_table(["every matrix at", "tensor bytes", "size"],
                                 [[q, f"{b:,}", human_bytes(b)] for q, b in d["weight_bytes"].items()]),
              "(the spec's arithmetic: real files add metadata and llama.cpp's own per-tensor choices)"]
    if d.get("gguf_files"):
        rows = [[q, f"{x['bytes']:,}", human_bytes(x["bytes"]),
                 " + ".join(f"{n} {t}" for t, n in sorted(x["types"].items(), key=lambda kv: -kv[1]))]
                for q, x in d["gguf_files"].items()]
        lines += ["", markdown_table(["GGUF file", "bytes", "size", "tensor types"], rows),
                  "(exactly what `edgeprune export --quant Q` writes: llama.cpp's dry run on this checkpoint)"]
    elif d.get("gguf_files_note"):
        lines += ["", d["gguf_files_note"]]
    if d.get("memory_md"):
        lines += ["", "Memory to run it (weights + KV cache at each context, summed over the real per-layer KV "
                      "heads as llama.cpp allocates it; q8_0 needs flash attention; runtime overhead: see a bench "
                      "record):", d["memory_md"]]
    lines += ["", f"FLOPs/token @ ctx {d['context']}: {human_count(d['flops_per_token'])}  ·  "
                  f"KV cache/token (f16): {d['kv_cache_bytes_per_token_f16']:,} B"]
    return "\n".join(lines)


def gguf_files(model: str, presets: list[str]) -> tuple[dict, str]:
    """Exact GGUF file sizes for a checkpoint directory, or a note saying why there are none."""
    p = Path(model)
    if not presets:
        return {}, ""
    if p.is_file():
        return {}, "(GGUF file sizes need a checkpoint directory: a spec has no tokenizer or metadata)"
    from edgeprune.export.llamacpp_runner import have_llamacpp

    if not have_llamacpp():
        return {}, "(exact GGUF file sizes need llama-cpp-python: pip install edgeprune[llama])"
    from edgeprune.files.checkpoint import resolve_checkpoint_dir
    from edgeprune.export.gguf_size import predict_gguf_sizes

    return predict_gguf_sizes(resolve_checkpoint_dir(model), presets), ""


def memory_files(model: str, spec: ArchSpec, gguf_sizes: dict) -> list:
    """What `info` plans memory for: a .gguf itself, else the GGUF files `export` would write
    (exact sizes), else every matrix at F16 by the spec's arithmetic."""
    from edgeprune.devices.memory import FileMemory

    p = Path(model)
    if p.is_file() and p.suffix == ".gguf":
        return [FileMemory(p.name, spec, p.stat().st_size)]
    if gguf_sizes:
        return [FileMemory(f"GGUF {q}", spec, x["bytes"]) for q, x in gguf_sizes.items()]
    return [FileMemory("every matrix at F16", spec, spec.weight_bytes("F16"))]


def run(args: argparse.Namespace) -> int:
    from edgeprune.devices.memory import memory_grid, memory_markdown

    spec = load_spec(args.model)
    d = describe(spec, args.context)
    presets = [q.strip() for q in args.gguf_sizes.split(",") if q.strip()]
    d["gguf_files"], note = gguf_files(args.model, presets)
    if note:
        d["gguf_files_note"] = note
    files = memory_files(args.model, spec, d["gguf_files"])
    d["memory"] = {f.name: [m.to_dict() for m in memory_grid(f.spec, f.weights_bytes)] for f in files}
    if not args.json:
        d["memory_md"] = memory_markdown(files)
    sys.stdout.write((json.dumps(d, indent=2) if args.json else render(d)) + "\n")
    return 0
