"""edgeprune.prune: structured pruning (docs/DESIGN.md §4).

Three concerns kept apart: `scores` (pure importance functions), `surgery` (cut a model and its
spec together), `methods` (which units, how many, when: uniform, flap, depth, adapt) plus the
incremental prune→train schedule. Public entry point: `prune_model(model, PruneRequest(...))`.

This face is also what the rooms above use of prune: train/ reaches the surgery (`remove_units`,
`apply_cuts`), the layer walk (`walk_layers`) and reconstruction (`reconstruct_model`, `tag_sources`,
`summarise`: pruning-aware training refits after its surgery) only through it, and whatever
trains inside a pruning is handed in as a callable of the types in `training_seam` (`DistilFn`, `StageTrainFn`).
"""

# Loaded on first use (PEP 562): `edgeprune prune --help` imports this package, and torch must
# not be imported for a help text (every verb's --help under 0.5 s).
_LAZY = {"prune_model": ".api", "PruneResult": ".api", "PruneRequest": ".request", "METHODS": ".methods",
         "register_method": ".methods", "default_align": "edgeprune.shape.units", "round_width": ".plan",
         "apply_cuts": ".surgery", "remove_attention": ".surgery", "remove_hidden_channels": ".surgery",
         "remove_kv_groups": ".surgery", "remove_layers": ".surgery", "remove_mlp": ".surgery",
         "remove_mlp_channels": ".surgery", "remove_query_heads": ".surgery", "remove_units": ".surgery",
         "IncrementalPruner": ".incremental", "stage_plan": ".incremental",
         "DistilFn": ".training_seam", "PlainDistil": ".training_seam", "StageTrainFn": ".training_seam",
         "distil_schedule": ".training_seam", "token_batches": ".training_seam",
         "walk_layers": ".reconstruct", "peak_rss_mb": ".reconstruct", "reconstruct_model": ".reconstruct",
         "tag_sources": ".reconstruct", "summarise": ".reconstruct", "RECONSTRUCT_MODES": ".reconstruct",
         "SEARCH_BUDGET_MINUTES": ".search_budget"}

__all__ = ["prune_model", "PruneResult", "PruneRequest", "METHODS", "register_method", "default_align",
           "round_width", "apply_cuts", "remove_attention", "remove_hidden_channels", "remove_kv_groups",
           "remove_layers", "remove_mlp", "remove_mlp_channels", "remove_query_heads", "remove_units",
           "IncrementalPruner", "stage_plan", "DistilFn", "PlainDistil", "StageTrainFn", "distil_schedule",
           "token_batches", "walk_layers", "peak_rss_mb", "reconstruct_model", "tag_sources", "summarise",
           "RECONSTRUCT_MODES", "SEARCH_BUDGET_MINUTES"]


def __getattr__(name: str) -> object:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name], __name__), name)
