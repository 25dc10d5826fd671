"""Progress that reads well on a terminal and in a log: the one progress helper every loop uses.

On a terminal (stderr is a TTY) `progress_bar` is a tqdm bar, redrawn in place. Anywhere else (a
redirected stderr, CI, `nohup ... > log`) redrawing writes `\\r` frames that pile up into one
unreadable line, so it writes plain lines instead: every `every_s` seconds while the work runs,
and an end line after them (work done within one interval writes none):

    train: 120/400 steps (30%), 1m10s elapsed, ETA 2m45s, loss=3.21

A heartbeat thread writes the line even when no step finished since the last one, so a log is
never silent for longer than `every_s` while a slow step runs. `EDGEPRUNE_PROGRESS_EVERY`
(seconds, default 10) sets the interval; 0 writes a line at every update.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

DEFAULT_EVERY_S = 10.0  # a log line at least this often while something runs


def every_seconds() -> float:
    """The interval between progress lines (EDGEPRUNE_PROGRESS_EVERY, seconds)."""
    raw = os.environ.get("EDGEPRUNE_PROGRESS_EVERY", "")
    try:
        return max(0.0, float(raw)) if raw.strip() else DEFAULT_EVERY_S
    except ValueError:
        return DEFAULT_EVERY_S


def human_duration(seconds: float) -> str:
    """45s, 1m10s, 2h05m: a duration as people read one in a log."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def is_terminal(stream: Optional[TextIO] = None) -> bool:
    stream = stream if stream is not None else sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class LineProgress:
    """tqdm's interface (iterate, update, set_postfix, close, `with`) as periodic plain lines."""

    def __init__(self, iterable: Optional[Iterable[Any]] = None, total: Optional[float] = None, desc: str = "",
                 unit: str = "it", initial: float = 0, every_s: Optional[float] = None,
                 file: Optional[TextIO] = None, **_ignored: Any):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit.strip() or "it"
        self.n = self.initial = initial
        self.every_s = every_seconds() if every_s is None else every_s
        self.file = file
        self.postfix = ""
        self.start = self.last_line = time.monotonic()
        self.closed = False
        self.shown = False  # a line was written: the end line follows it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # work done within one interval leaves no lines (a log is not silent for longer than
        # that either way, and a one-line error stays one line); at interval 0 every update shows
        if self.every_s == 0:
            self._write(self.line())
        self._beat: Optional[threading.Thread] = None
        if self.every_s > 0:
            self._beat = threading.Thread(target=self._heartbeat, name=f"progress:{desc}", daemon=True)
            self._beat.start()

    # ----- the line --------------------------------------------------------------------------------

    def eta_seconds(self) -> Optional[float]:
        """Seconds left at the rate measured since this bar started (None before a first step)."""
        done = self.n - self.initial
        if self.total is None or done <= 0:
            return None
        return (time.monotonic() - self.start) / done * max(0.0, self.total - self.n)

    def line(self) -> str:
        elapsed = human_duration(time.monotonic() - self.start)
        count = f"{_num(self.n)}/{_num(self.total)}" if self.total else f"{_num(self.n)}"
        text = f"{self.desc}: {count} {self.unit}"
        if self.total:
            text += f" ({100.0 * self.n / self.total:.0f}%)"
        text += f", {elapsed} elapsed"
        if self.total and self.n < self.total:
            eta = self.eta_seconds()
            text += f", ETA {human_duration(eta)}" if eta is not None else f", ETA after the first {self.unit}"
        return text + (f", {self.postfix}" if self.postfix else "")

    def _write(self, text: str) -> None:
        stream = self.file if self.file is not None else sys.stderr  # stderr as it is now (tests swap it)
        stream.write(text + "\n")
        stream.flush()
        self.last_line = time.monotonic()
        self.shown = True

    def _maybe_write(self) -> None:
        with self._lock:
            if not self.closed and time.monotonic() - self.last_line >= self.every_s:
                self._write(self.line())

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.every_s):
            self._maybe_write()

    # ----- tqdm's interface --------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable or ():
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def update(self, n: float = 1) -> None:
        self.n += n
        self._maybe_write()

    def set_postfix(self, ordered_dict: Optional[dict[str, Any]] = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_description(self, desc: Optional[str] = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        self._maybe_write()

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._stop.set()
            if not self.shown:
                return
            took = human_duration(time.monotonic() - self.start)
            complete = self.total is None or self.n >= self.total * (1 - 1e-9)  # float sums
            count = f"{_num(self.n)}/{_num(self.total)}" if self.total else _num(self.n)
            self._write(f"{self.desc}: {'done' if complete else 'stopped at'} {count} {self.unit} in {took}"
                        + (f", {self.postfix}" if self.postfix else ""))


class _Silent:
    """A disabled bar: counts, writes nothing."""

    def __init__(self, iterable: Optional[Iterable[Any]] = None, total: Optional[float] = None,
                 initial: float = 0, **_ignored: Any):
        self.iterable, self.total, self.n = iterable, total, initial

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.n += 1

    def __enter__(self) -> "_Silent":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix(self, *a: Any, **k: Any) -> None:
        pass

    set_postfix_str = set_description = set_postfix

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(iterable: Optional[Iterable[Any]] = None, *, total: Optional[float] = None, desc: str = "",
                 unit: str = "it", initial: float = 0, disable: Optional[bool] = False, **tqdm_options: Any) -> Any:
    """A tqdm bar on a terminal, periodic plain lines elsewhere, nothing when `disable` is true.
    Takes tqdm's arguments (the extra ones, such as unit_scale, matter only on a terminal)."""
    if disable:
        return _Silent(iterable, total=total, initial=initial)
    if is_terminal():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, **tqdm_options)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)


def _num(x: Optional[float]) -> str:
    if x is None:
        return "?"
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.1f}"
