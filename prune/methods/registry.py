"""The registry of pruning methods: name -> PruneMethod. Kept apart from the package's
__init__ (which imports every method so they register) so that a method module imports the
registry, not the package that imports it back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from edgeprune.base.errors import PruneError


@dataclass(frozen=True)
class PruneMethod:
    name: str
    fn: Callable[..., tuple[Any, dict]]  # (model, **kw) -> (pruned model, log)
    summary: str  # one line for --help and docs
    options: dict  # option name -> one-line description (CLI --opt NAME=VALUE, docs)
    removes_layers: bool = False  # may go below the one-head-per-layer floor
    latency_aware: bool = False  # takes `latency=LatencyTarget` (prune/latency.py): a speed target or ranking
    needs_device: bool = False  # refuses to run without a LatencyTarget
    needs_uniform: bool = False  # cuts only models whose layers share their widths
    rates: tuple = ("decode",)  # the speeds a latency-aware method can aim at itself
    # takes `reconstruct=MODE` and `original=` (the uncut copy, or None): the method reconstructs its own
    # candidates while choosing among them
    # (the final cut is reconstructed by prune_model either way)
    reconstructs: bool = False
    # takes `distil=` (prune/training_seam.py's DistilFn, or None for its default): the method trains
    # candidates while choosing among them, through whatever trainer the caller supplies
    trains: bool = False
    # takes `vocab=` (prune/vocab_axis.py's options, largest first, when the user asked for trimming):
    # the method may choose among them; any other method's speed target is priced at the first
    vocab_axis: bool = False


METHODS: dict[str, PruneMethod] = {}


def register_method(name: str, summary: str, options: dict | None = None, removes_layers: bool = False,
                    latency_aware: bool = False, needs_device: Optional[bool] = None,
                    needs_uniform: bool = False, rates: tuple = ("decode",),
                    reconstructs: bool = False, trains: bool = False,
                    vocab_axis: bool = False) -> Callable[[Callable], Callable]:
    """Decorator: add `fn` to METHODS under `name`."""
    def deco(fn: Callable) -> Callable:
        if name in METHODS:
            raise ValueError(f"pruning method {name!r} registered twice")
        METHODS[name] = PruneMethod(name, fn, summary, dict(options or {}), removes_layers or latency_aware,
                                    latency_aware, latency_aware if needs_device is None else needs_device,
                                    needs_uniform, tuple(rates), reconstructs, trains, vocab_axis)
        return fn
    return deco


def get_method(name: str) -> PruneMethod:
    if name not in METHODS:
        raise PruneError(f"unknown pruning method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[name]
