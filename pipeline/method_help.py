"""One line per pruning method, for `--help` wherever `--method` is (prune, ship) and the prune
verb's summary. Kept here as text so that --help does not import torch; tests/prune/test_cli.py
checks the names against the registry (prune/methods/registry.py)."""

from __future__ import annotations

METHOD_HELP = {
    "adapt": "Adapt-Pruner (the default): per-layer sparsity adapted to layer importance over many small steps",
    "adapt-latency": "Adapt-Pruner's sparsity in decode seconds on --device, cuts ranked per second saved",
    "depth": "drop the least important layers; the remainder below one layer is cut from FFN / head widths, "
             "which makes a `deci` file with per-layer widths (prune --opt fill=false: whole layers only, a plain llama)",
    "flap": "FLAP: fluctuation scores, one global selection across layers",
    "search": "searches depth, heads, KV groups, FFN and hidden width together; finalists ranked by held-out KL "
              "to the original after a short distillation; equal widths in every kept layer (a plain llama); "
              "the slowest method, usually the best; it fits its work to 20 minutes on this machine, calibration "
              "included (--opt budget=MINUTES; 0: no limit), then reconstructs the model it delivers",
    "uniform": "the same ratio in every layer, Taylor scores (the LLM-Pruner baseline)",
}
METHOD_NAMES = tuple(sorted(METHOD_HELP))


def methods_help() -> str:
    """`name: what it does; ...` over every method."""
    return "; ".join(f"{name}: {text}" for name, text in METHOD_HELP.items())
