"""A runner's raw result checked field by field before any figure is computed from it.

The raw dict comes from another program (our runner_script.py on a device, llama-bench's jsonl):
a broken or hostile one may print NaN, inf, zero or 1e300 seconds, strings, or leave fields out.
Tokens per second divide by those times, so a time that is not a finite, positive, plausible
number is one BenchError naming the field and the value, never "0.0 t/s" or a traceback.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from edgeprune.base.errors import BenchError

SECONDS = (1e-7, 1e5)  # one repetition: a tenth of a microsecond to a day
COUNT_MAX = 10_000_000  # tokens, repetitions, threads: far above any bench, far below a lie


def _shown(v: Any) -> str:
    return repr(v)[:60]


def check_count(value: Any, field: str, where: str, low: int = 0) -> int:
    """`value` as a whole number in [low, COUNT_MAX] (an integral float is one), else BenchError."""
    ok = isinstance(value, int) and not isinstance(value, bool) or \
        isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if not ok or not low <= value <= COUNT_MAX:
        raise BenchError(f"{where}: field {field} is {_shown(value)}: not a whole number in [{low}, {COUNT_MAX}]")
    return int(value)


def check_seconds(values: Any, field: str, where: str) -> list[float]:
    """A list of per-repetition times, each finite and within SECONDS, else BenchError."""
    if not isinstance(values, (list, tuple)):
        raise BenchError(f"{where}: field {field} is {_shown(values)}: not a list of times")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                not SECONDS[0] <= v <= SECONDS[1]:
            raise BenchError(f"{where}: field {field} holds {_shown(v)}: a time must be a number of seconds in "
                             f"[{SECONDS[0]:g}, {SECONDS[1]:g}]")
        out.append(float(v))
    return out


def check_optional_number(value: Any, field: str, where: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value < 0):
        raise BenchError(f"{where}: field {field} is {_shown(value)}: not a finite number >= 0")


def check_raw(raw: Any, where: str) -> dict[str, Any]:
    """`raw` with its counts and times checked (the fields record_from_raw reads)."""
    if not isinstance(raw, Mapping):
        raise BenchError(f"{where}: the runner's result is {type(raw).__name__}, not an object")
    raw = dict(raw)
    if not isinstance(raw.get("runtime"), str):
        raise BenchError(f"{where}: field runtime is {_shown(raw.get('runtime'))}: not a name")
    for field in ("n_prompt", "n_gen", "threads"):
        raw[field] = check_count(raw.get(field), field, where)
    raw["reps"] = check_count(raw.get("reps"), "reps", where, low=1)
    for field, n in (("pp_seconds", "n_prompt"), ("tg_seconds", "n_gen")):
        raw[field] = check_seconds(raw.get(field) or [], field, where)
        if raw[n] and not raw[field]:
            raise BenchError(f"{where}: field {field} is empty although {n} is {raw[n]}")
    for field in ("ttft_ms", ):
        for v in raw.get(field) or []:
            check_optional_number(v, field, where)
    for field in ("load_ms", "peak_rss_mb", "n_ctx"):
        check_optional_number(raw.get(field), field, where)
    return raw
