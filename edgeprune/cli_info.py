"""`edgeprune info MODEL`: the per-layer table, parameter split and bytes per quant type."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "per-layer table, parameter split and bytes per quant type"
QTYPES = ("F32", "F16", "Q8_0", "Q4_0", "Q4_K")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="checkpoint directory, hub name, or a spec .json file")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--context", type=int, default=512, help="context length for attention FLOPs")


def load_spec(model: str):
    """A spec from a spec JSON file, or from a checkpoint (whose weights are verified)."""
    from edgeprune.spec import ArchSpec

    p = Path(model)
    if p.is_file() and p.suffix == ".json":
        try:
            return ArchSpec.from_json(p.read_text())
        except json.JSONDecodeError as e:
            from edgeprune.errors import SpecError
            raise SpecError(f"{p} is not valid JSON ({e})") from None
    from edgeprune.checkpoint import load_checkpoint

    return load_checkpoint(model).spec


def describe(spec, context: int = 512) -> dict:
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
    from edgeprune.table import human_bytes, human_count, markdown_table

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
    lines += ["", markdown_table(["weights at", "bytes", "size"],
                                 [[q, f"{b:,}", human_bytes(b)] for q, b in d["weight_bytes"].items()])]
    lines += ["", f"FLOPs/token @ ctx {d['context']}: {human_count(d['flops_per_token'])}  ·  "
                  f"KV cache/token (f16): {d['kv_cache_bytes_per_token_f16']:,} B"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.model)
    d = describe(spec, args.context)
    sys.stdout.write((json.dumps(d, indent=2) if args.json else render(d)) + "\n")
    return 0
