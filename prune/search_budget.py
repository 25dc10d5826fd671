"""How much searching fits the time the user has: the search's work counts (shapes screened per
depth, finalists distilled, depths refined, distillation steps) chosen from the seconds this
machine measured for one screened shape and one distillation step.

The search's cost is almost all in two repeated pieces whose seconds grow with the model and
the machine alike: cutting and reconstructing a shape and scoring it (one "screen"), and the
finalists' distillation steps. A 1B-parameter model on a laptop CPU pays each of them ~10x what a
135M model does, so fixed counts would turn a 20-minute search into hours. The counts the user
did not set are lowered until the estimate fits, in an order chosen (not measured) to keep what the
ranking rests on longest: extra shapes screened per depth go first (the saliency's first pick
stands in for them), then finalists at the depths least likely to win, then the refinement around
the winner, and the distillation steps last (benchmarks/search_proxy.md: the loss right after the
cut misranked the depths that a short distillation ranked as recovery did).

Pure functions: the search measures, this module decides.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping, Optional

SEARCH_BUDGET_MINUTES = 20.0


@dataclass(frozen=True)
class Counts:
    screen: int  # shapes per kept depth cut, reconstructed and scored right after the cut
    finalists: int  # per-depth winners distilled (their KL after it ranks them)
    refine: int  # depths either side of the grid's winner searched too
    steps: int  # distillation steps per finalist (0: ranked by the KL right after the cut)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


# richest first: the search's defaults, then each rung gives up the work that moved the ranking
# least; the last rung ranks the per-depth winners by their reconstructed cut alone
RUNGS = (
    Counts(screen=4, finalists=7, refine=1, steps=8),
    Counts(screen=2, finalists=7, refine=1, steps=8),
    Counts(screen=1, finalists=7, refine=1, steps=8),
    Counts(screen=1, finalists=5, refine=1, steps=8),
    Counts(screen=1, finalists=3, refine=1, steps=8),
    Counts(screen=1, finalists=3, refine=0, steps=8),
    Counts(screen=1, finalists=3, refine=0, steps=4),
    Counts(screen=1, finalists=7, refine=0, steps=0),
)
DEFAULTS = RUNGS[0]


@dataclass(frozen=True)
class Costs:
    """Seconds measured on this machine: one screened shape (cut, reconstruction on the fit
    windows, held-out KL) and one distillation step of a finalist."""
    screen_s: float
    step_s: float


def refine_seconds(c: Counts, costs: Costs) -> float:
    """The refine stage: up to `refine` depths either side, each screened and its best distilled."""
    per_depth = c.screen * costs.screen_s + (costs.screen_s + c.steps * costs.step_s if c.steps > 0 else 0.0)
    return 2 * c.refine * per_depth


def seconds_needed(c: Counts, n_depths: int, costs: Costs) -> float:
    """Estimated seconds of a search with counts `c` over a grid of `n_depths` kept depths."""
    screening = n_depths * c.screen * costs.screen_s
    # a finalist is cut and reconstructed again before its distillation
    distilling = min(c.finalists, n_depths) * (costs.screen_s + c.steps * costs.step_s) if c.steps > 0 else 0.0
    return screening + distilling + refine_seconds(c, costs)


def with_asked(rung: Counts, asked: Mapping[str, Optional[int]]) -> Counts:
    """`rung` with every count the user set held at their value."""
    return Counts(**{f.name: int(asked[f.name]) if asked.get(f.name) is not None else getattr(rung, f.name)
                     for f in fields(Counts)})


def fit_counts(asked: Mapping[str, Optional[int]], n_depths: int, costs: Costs,
               seconds_left: Optional[float]) -> tuple[Counts, float]:
    """(counts, their estimated seconds): the richest rung, with the user's own counts held, whose
    estimate fits `seconds_left` (None: no limit, the defaults); the poorest rung when none fits."""
    options: list[Counts] = []
    for r in RUNGS:
        c = with_asked(r, asked)
        if c not in options:
            options.append(c)
    if seconds_left is None:
        return options[0], seconds_needed(options[0], n_depths, costs)
    for c in options:
        est = seconds_needed(c, n_depths, costs)
        if est <= seconds_left:
            return c, est
    return options[-1], seconds_needed(options[-1], n_depths, costs)


__all__ = ["Costs", "Counts", "DEFAULTS", "SEARCH_BUDGET_MINUTES", "RUNGS", "fit_counts", "refine_seconds", "seconds_needed",
           "with_asked"]
