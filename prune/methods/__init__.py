"""Pruning methods, registered by short name (STYLE.md §3): the CLI, docs and tests share METHODS.

A method is `fn(model, *, target_params, calib, align, progress, **options) -> (model, log)`:
it cuts `model` (through `edgeprune.prune.plan` / `surgery`) until it has about `target_params`
parameters and returns it with a JSON-able log of what it decided. Each lives in its own file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from edgeprune.errors import PruneError


@dataclass(frozen=True)
class PruneMethod:
    name: str
    fn: Callable[..., tuple[Any, dict]]  # (model, **kw) -> (pruned model, log)
    summary: str  # one line for --help and docs
    options: dict  # option name -> one-line description (CLI --opt NAME=VALUE, docs)
    removes_layers: bool = False  # may go below the one-head-per-layer floor
    latency_aware: bool = False  # takes `latency=LatencyTarget` (prune/latency.py) and ranks cuts per second


METHODS: dict[str, PruneMethod] = {}


def register_method(name: str, summary: str, options: dict | None = None, removes_layers: bool = False,
                    latency_aware: bool = False):
    """Decorator: add `fn` to METHODS under `name`."""
    def deco(fn):
        if name in METHODS:
            raise ValueError(f"pruning method {name!r} registered twice")
        METHODS[name] = PruneMethod(name, fn, summary, dict(options or {}), removes_layers or latency_aware,
                                    latency_aware)
        return fn
    return deco


def get_method(name: str) -> PruneMethod:
    if name not in METHODS:
        raise PruneError(f"unknown pruning method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]


# importing the modules registers them
from . import adapt, adapt_latency, depth, flap, uniform  # noqa: E402,F401

__all__ = ["METHODS", "PruneMethod", "register_method", "get_method"]
