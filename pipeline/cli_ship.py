"""`edgeprune ship`: the verb over pipeline/ship.py's `ship(recipe)` (prune -> recover -> export
-> validate -> bench -> report); every flag is a recipe key (pipeline/recipe.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeprune.pipeline.recipe import add_recipe_arguments, recipe_from_args
from edgeprune.base.cli_flags import model_help


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None,
                   help=model_help("the model to ship (omit for the embedded default teacher)"))
    p.add_argument("--recipe", help="TOML file with any of the keys below (flags override it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines stay)")
    add_recipe_arguments(p)


def outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """The --out work folder (checked, locked and guarded by edgeprune.cli)."""
    recipe = recipe_from_args(args)
    recipe.validate()  # a bad recipe (say `out = 3`) is its one line before the folder is looked at
    if getattr(args, "out", None) is None and getattr(args, "recipe", None):  # named in the file, not a flag
        return [(Path(recipe.out), "work", f"out (recipe {args.recipe})")]
    return [(Path(recipe.out), "work")]


def inputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    """What the run reads, recipe file included (edgeprune.cli refuses an --out on any of them)."""
    recipe = recipe_from_args(args)
    return [(p, name) for name, p in (("model", recipe.model), ("data", recipe.data)) if p]


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from_args(args)
    from edgeprune.pipeline.ship import ship

    report = ship(recipe, progress=not args.no_progress)
    sys.stdout.write(report["report_md_summary"] + "\n")
    sys.stdout.write(f"\nreport: {Path(recipe.out) / 'report.md'}\n")
    return 0
