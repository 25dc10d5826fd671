"""Pruning methods, registered by short name: the CLI, docs and tests share METHODS.

A method is `fn(model, *, target_params, calib, align, progress, **options) -> (model, log)`:
it cuts `model` (through `edgeprune.prune.plan` / `surgery`) until it has about `target_params`
parameters and returns it with a JSON-able log of what it decided. Each lives in its own file.
"""

from .registry import METHODS, PruneMethod, get_method, register_method

# importing the modules registers them
from . import adapt, adapt_latency, depth, flap, search, uniform  # noqa: F401

__all__ = ["METHODS", "PruneMethod", "register_method", "get_method"]
