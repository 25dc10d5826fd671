"""edgeprune.prune: structured pruning (shared/DESIGN.md §4, issue 4).

Three concerns kept apart: `scores` (pure importance functions), `surgery` (cut a model and its
spec together), `methods` (which units, how many, when: uniform, flap, depth, adapt) plus the
incremental prune→train schedule. Public entry point: `prune_model`.
"""

from edgeprune.units import default_align

from .api import PruneResult, prune_model, resolve_target
from .methods import METHODS, register_method
from .plan import round_width
from .surgery import (apply_cuts, remove_attention, remove_hidden_channels, remove_kv_groups, remove_layers,
                      remove_mlp, remove_mlp_channels, remove_query_heads)

__all__ = ["prune_model", "PruneResult", "resolve_target", "METHODS", "register_method", "default_align",
           "round_width", "apply_cuts", "remove_attention", "remove_hidden_channels", "remove_kv_groups",
           "remove_layers", "remove_mlp", "remove_mlp_channels", "remove_query_heads", "IncrementalPruner"]


def __getattr__(name):  # the schedule imports checkpoint I/O: load it only when asked
    if name == "IncrementalPruner":
        from .incremental import IncrementalPruner
        return IncrementalPruner
    raise AttributeError(name)
