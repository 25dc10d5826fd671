"""A long job's plan: its steps stated before the first starts, each timed as it runs, and once
the first ones are measured an ETA for every step left and for the whole.

    plan = Plan("compare", [("score a (PyTorch)", 1.2e9), ("score a (llama.cpp)", 1.2e9), ...])
    with plan.step(0):
        ...

A step's cost is a relative amount of work (params × tokens, tokens, files): the seconds per unit
measured on the finished steps price the ones left, so a step twice the work gets twice the time.
`seconds_per_cost` prices them before any step ran (a rate measured by an earlier stage).
While a step runs a heartbeat line says how long it has been running and what is left of its
estimate, so a log is never silent longer than the progress interval (edgeprune/base/progress.py).
Lines go through logging (the CLI shows this package's INFO lines on stderr).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional, Sequence, Union

from edgeprune.base.progress import every_seconds, human_duration

_log = logging.getLogger("edgeprune.plan")

Step = Union[str, tuple[str, float]]


class Plan:
    def __init__(self, what: str, steps: Sequence[Step], *, seconds_per_cost: Optional[float] = None,
                 logger: Optional[logging.Logger] = None, every_s: Optional[float] = None, announce: bool = True):
        self.what = what
        self.names = [s if isinstance(s, str) else s[0] for s in steps]
        self.costs = [1.0 if isinstance(s, str) else max(0.0, float(s[1])) for s in steps]
        self.seconds: list[Optional[float]] = [None] * len(self.names)
        self.prior_rate = seconds_per_cost
        self.log = logger or _log
        self.every_s = every_seconds() if every_s is None else every_s
        if announce:
            self.announce()

    # ----- estimates -------------------------------------------------------------------------------

    def rate(self) -> Optional[float]:
        """Seconds per cost unit: measured on the finished steps, else the prior, else None."""
        done = [i for i, s in enumerate(self.seconds) if s is not None and self.costs[i] > 0]
        cost = sum(self.costs[i] for i in done)
        if cost > 0:
            return sum(self.seconds[i] for i in done) / cost  # type: ignore[misc]
        return self.prior_rate

    def estimate(self, i: int) -> Optional[float]:
        rate = self.rate()
        return None if rate is None else rate * self.costs[i]

    def remaining(self, running: Optional[int] = None, running_for: float = 0.0) -> Optional[float]:
        """Seconds left for the unfinished steps (the running one less what it already took)."""
        rate = self.rate()
        if rate is None:
            return None
        left = 0.0
        for i, s in enumerate(self.seconds):
            if s is None:
                left += max(0.0, rate * self.costs[i] - (running_for if i == running else 0.0))
        return left

    def _steps_text(self, start: int = 0) -> str:
        parts = []
        for i in range(start, len(self.names)):
            est = self.estimate(i)
            parts.append(f"{i + 1}) {self.names[i]}" + (f" ~{human_duration(est)}" if est is not None else ""))
        return ", ".join(parts)

    # ----- lines -----------------------------------------------------------------------------------

    def announce(self) -> None:
        total = self.remaining()
        tail = f"; about {human_duration(total)} in all" if total is not None else \
            "; an ETA follows once the first step is measured"
        self.log.info("%s plan: %d steps: %s%s", self.what, len(self.names), self._steps_text(), tail)

    @contextmanager
    def step(self, i: int) -> Iterator[None]:
        """Run step `i`: a start line, heartbeat lines while it runs, a done line with the ETA of the rest."""
        n = len(self.names)
        est = self.estimate(i)
        self.log.info("%s [%d/%d] %s ...%s", self.what, i + 1, n, self.names[i],
                      f" (~{human_duration(est)})" if est is not None else "")
        t0 = time.monotonic()
        stop = threading.Event()
        beat = None
        if self.every_s > 0:
            beat = threading.Thread(target=self._heartbeat, args=(i, t0, stop), daemon=True,
                                    name=f"plan:{self.what}")
            beat.start()
        try:
            yield
        finally:
            stop.set()
            if beat is not None:
                beat.join()
        self.seconds[i] = time.monotonic() - t0
        left = [j for j, s in enumerate(self.seconds) if s is None]
        rest = self.remaining()
        msg = f"{self.what} [{i + 1}/{n}] {self.names[i]} done in {human_duration(self.seconds[i])}"
        if left and rest is not None:
            msg += "; ETA " + ", ".join(f"{j + 1}) ~{human_duration(self.estimate(j) or 0.0)}" for j in left) + \
                f"; about {human_duration(rest)} left in all"
        self.log.info("%s", msg)

    def skip(self, i: int, why: str = "done earlier") -> None:
        """Step `i` needs no work this run (a reused result): it costs nothing and prices nothing."""
        self.seconds[i] = 0.0
        self.costs[i] = 0.0
        self.log.info("%s [%d/%d] %s: %s", self.what, i + 1, len(self.names), self.names[i], why)

    def _heartbeat(self, i: int, t0: float, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            ran = time.monotonic() - t0
            est = self.estimate(i)
            tail = f", ~{human_duration(max(0.0, est - ran))} left of its estimate" if est is not None else ""
            self.log.info("%s [%d/%d] %s: %s elapsed%s", self.what, i + 1, len(self.names), self.names[i],
                          human_duration(ran), tail)
