"""Landing a speed target as measured on the device, not only as predicted.

A latency model fitted on synthetic shapes is off by ~10% on real cuts (and the same pair of files
measures 2.4x in one hour and 2.8x in another on a shared VM). So a target meant as "measured 2x"
is landed in a loop: prune through the latency model, export the cut at the ship quant, measure it
against the original in paired rounds on the device, and when the measured figure is outside the
tolerance cut again from the original with the goal corrected by what the model got wrong. The
correction is a secant in log space over the tries so far: one try corrects by its measured /
predicted bias, two or more fit measured = a * predicted^b through the last two.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 0.05  # |measured / goal - 1| that counts as landed: half a 10% band, for the noise
DEFAULT_TRIES = 3
# one correction may move the goal at most this factor either way: one noisy measurement must not
# send the next cut to a shape the model never predicts well
MAX_STEP = 1.6


@dataclass
class LandingTry:
    asked: float  # the goal handed to the latency model (speed-up, or tokens/s)
    predicted: float  # what the model predicts of the cut it made, in the same unit
    measured: float  # what the device measured of that cut
    params: int
    shape: str  # "L15 d576 9h/3kv ffn1376"-style, per-layer widths summarised

    @property
    def bias(self) -> float:
        return self.measured / self.predicted


@dataclass
class Landing:
    """The tries of one landed target and the result that was kept (the closest to the goal)."""

    goal: float
    unit: str  # "speedup" or "decode t/s" / "prefill t/s"
    tolerance: float
    tries: list = field(default_factory=list)  # [LandingTry]
    kept: int = 0  # index of the try whose result is kept
    stopped: str = ""  # why the tries ended before a landing or the last try (a corrected goal out of reach)

    @property
    def landed(self) -> bool:
        return bool(self.tries) and miss(self.tries[self.kept].measured, self.goal) <= self.tolerance

    def summary(self) -> dict[str, Any]:
        return {"goal": self.goal, "unit": self.unit, "tolerance": self.tolerance, "landed": self.landed,
                "kept": self.kept, "measured": self.tries[self.kept].measured if self.tries else None,
                "tries": [dataclasses.asdict(t) for t in self.tries], "stopped": self.stopped}

    def text(self) -> str:
        lines = [f"measured on the device ({self.unit}, goal {self.goal:g}, tolerance ±{self.tolerance:.0%}):"]
        for i, t in enumerate(self.tries):
            mark = " <- kept" if i == self.kept else ""
            lines.append(f"  try {i + 1}: asked {t.asked:.3f}, predicted {t.predicted:.3f}, measured {t.measured:.3f} "
                         f"({t.measured / self.goal - 1:+.1%}), {t.shape}, {t.params / 1e6:.1f}M params{mark}")
        if self.stopped:
            lines.append(f"  try {len(self.tries) + 1}: {self.stopped}")
        if not self.landed:
            lines.append(f"  not landed within ±{self.tolerance:.0%} in {len(self.tries)} tries: the closest is kept")
        return "\n".join(lines)


def measure_problems(rounds: int, *, speed_target: bool, incremental: bool, flag: str = "--measure-rounds",
                     incremental_flag: str = "--incremental") -> list:
    """What is wrong with asking for a measured target (prune's flags and ship's recipe keys alike)."""
    if not rounds:
        return []
    problems = []
    if rounds < 2:
        problems.append(f"{flag} {rounds}: a paired comparison needs at least 2 rounds (5 or more to land a target)")
    if not speed_target:
        problems.append(f"{flag} lands a speed target: give --speedup, --decode-tps or --prefill-tps")
    if incremental:
        problems.append(f"{flag} lands a one-shot cut; it does not combine with {incremental_flag}")
    return problems


def miss(measured: float, goal: float) -> float:
    return abs(measured / goal - 1.0)


def next_goal(goal: float, tries: list) -> float:
    """The goal to hand the latency model next so that the measured figure comes out at `goal`,
    from the tries so far (pure)."""
    last = tries[-1]
    guess = goal / last.bias
    if len(tries) >= 2:
        a, b = tries[-2], tries[-1]
        dp = math.log(b.predicted) - math.log(a.predicted)
        dm = math.log(b.measured) - math.log(a.measured)
        # a secant needs two distinct cuts that moved the measurement the way the model did
        if abs(dp) > 1e-6 and dm / dp > 0.2:
            slope = dm / dp
            guess = math.exp(math.log(b.predicted) + (math.log(goal) - math.log(b.measured)) / slope)
    # relative to what was asked last: the cut's predicted figure can exceed its ask (a floor)
    scale = guess / last.predicted
    return last.asked * min(MAX_STEP, max(1.0 / MAX_STEP, scale))


def shape_text(spec: Any) -> str:
    lays = spec.layers
    if spec.is_uniform:
        x = lays[0]
        return f"L{spec.n_layers} d{spec.hidden_size} {x.n_heads}h/{x.n_kv_heads}kv ffn{x.ffn_dim}"
    return (f"L{spec.n_layers} d{spec.hidden_size} per-layer ({min(x.n_heads for x in lays)}-"
            f"{max(x.n_heads for x in lays)}h, ffn {min(x.ffn_dim for x in lays)}-{max(x.ffn_dim for x in lays)})")


def goal_field(request: Any) -> str:
    for k in ("speedup", "decode_tps", "prefill_tps"):
        if getattr(request, k) is not None:
            return k
    from edgeprune.base.errors import PruneError

    raise PruneError("measuring on the device lands a speed target: give --speedup, --decode-tps or --prefill-tps")


def predicted_figure(result: Any, key: str) -> float:
    lat = result.log["latency"]
    return {"speedup": lat["predicted_speedup"], "decode_tps": lat["predicted_decode_tps"],
            "prefill_tps": lat["predicted_prefill_tps"]}[key]


def land(model: Any, request: Any, *, calib: Any, measure: Callable[[Any, str], float],
         tolerance: float = DEFAULT_TOLERANCE, tries: int = DEFAULT_TRIES, seed: int = 0,
         progress: bool = True, distil: Any = None, vocab: Any = None) -> tuple[Any, Landing]:
    """Prune `model` (a copy per try; `model` itself is left whole) to `request`'s speed target
    until `measure(result, key)` -- the device's figure of the cut, in the request's unit (key:
    speedup, decode_tps or prefill_tps) -- is within `tolerance` of the goal, at most `tries` cuts.
    Returns (the kept PruneResult, the Landing record); the record is also in result.log.
    `distil`: the trainer every try's pruning distils with (prune_model's). `vocab`: the trimmed
    vocabularies the cut may choose among (prune_model's); each try is timed trimmed as chosen."""
    from edgeprune.base.errors import PruneError
    from edgeprune.prune.api import prune_model

    key = goal_field(request)
    if request.incremental:
        raise PruneError("measuring on the device lands a one-shot cut; --incremental stages have no measured goal")
    if tries < 1:
        raise PruneError(f"tries {tries} must be >= 1")
    if not 0 < tolerance < 1:
        raise PruneError(f"tolerance {tolerance} must be in (0, 1)")
    goal = float(getattr(request, key))
    record = Landing(goal=goal, unit={"speedup": "decode speed-up", "decode_tps": "decode t/s",
                                      "prefill_tps": "prefill t/s"}[key], tolerance=tolerance)
    results, asked = [], goal
    seen: dict = {}  # shape -> the try that measured it
    distinct: list = []  # the tries that measured a cut of their own: what the correction reads
    for i in range(tries):
        req = dataclasses.replace(request, **{key: asked})
        try:
            res = prune_model(copy.deepcopy(model), req, calib=calib, seed=seed, progress=progress, distil=distil,
                              vocab=vocab)
        except PruneError as e:
            if not record.tries:
                raise  # the goal itself is out of reach: nothing was cut
            # the device measured slower than predicted and the corrected goal is past what the
            # method can cut: the closest cut so far is the answer
            record.stopped = f"asked {asked:.3f}, out of reach ({e})"
            log.info("landing try %d: %s", i + 1, record.stopped)
            break
        # the same layers with another vocabulary is another file
        shape = (res.spec, res.vocab.trim.size if res.vocab is not None else None)
        again = seen.get(shape)
        # a coarse method (whole KV groups, whole layers) can answer a nearby goal with the same
        # cut: its figure is known, and the next ask steps on in the same direction
        measured = record.tries[again].measured if again is not None else float(measure(res, key))
        record.tries.append(LandingTry(asked=asked, predicted=float(predicted_figure(res, key)), measured=measured,
                                       params=res.params_after,
                                       shape=shape_text(res.spec) + (f" vocab {shape[1]:,}" if shape[1] else "")))
        results.append(res)
        if again is None:
            seen[shape] = i
            distinct.append(record.tries[-1])
        log.info("landing try %d: asked %.3f, predicted %.3f, measured %.3f (goal %.3f)%s", i + 1, asked,
                 record.tries[-1].predicted, measured, goal, " (the same cut again)" if again is not None else "")
        if miss(measured, goal) <= tolerance:
            break
        if again is not None and len(record.tries) >= 2:
            prev = record.tries[-2].asked
            asked = asked * min(MAX_STEP, max(1.0 / MAX_STEP, asked / prev if prev != asked else
                                              (1.1 if measured < goal else 1 / 1.1)))
        else:
            asked = next_goal(goal, distinct)
        if key == "speedup" and asked <= 1.0:
            asked = 1.0 + 1e-3  # a request's speed-up is > 1
    record.kept = min(range(len(record.tries)), key=lambda j: miss(record.tries[j].measured, goal))
    kept = results[record.kept]
    kept.log["landing"] = record.summary()
    return kept, record


@dataclass
class DeviceMeasure:
    """measure() for `land`: the cut exported at `quant` and timed against the original's export on
    `device` in `rounds` paired rounds (each file its own process per round, order shuffled)."""

    source: Any  # the Checkpoint being pruned (its tokenizer and config go with every export)
    device: Any  # DeviceProfile or name
    quant: str
    rounds: int = 5
    threads: Optional[int] = None
    work: Optional[Path] = None  # where the exports go (default: a temporary folder, removed by close())
    reference_file: Optional[Path] = None  # the original's export at `quant`, when one exists already
    target_options: dict = field(default_factory=dict)  # harness target keywords (e.g. host for ssh)
    _tmp: Any = None
    _count: int = 0

    def __post_init__(self) -> None:
        if self.rounds < 2:
            from edgeprune.base.errors import BenchError

            raise BenchError(f"--measure-rounds {self.rounds}: a paired comparison needs at least 2 rounds")
        if self.work is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeprune-landing-")
            self.work = Path(self._tmp.name)
        self.work = Path(self.work)

    def _export(self, ckpt: Any, name: str) -> Path:
        from edgeprune.export.api import export_model

        manifest = export_model(ckpt, self.work / name, formats=["gguf"], quants=[self.quant], progress=False)
        art = next(a for a in manifest["artifacts"] if a["quant"].upper() == self.quant.upper())
        return self.work / name / art["path"]

    def reference(self) -> Path:
        if self.reference_file is None:
            self.reference_file = self._export(self.source, "original")
        return Path(self.reference_file)

    def __call__(self, result: Any, key: str) -> float:
        import shutil

        from edgeprune.files.checkpoint import load_checkpoint, save_derived
        from edgeprune.runtime_bench.paired import paired_bench

        ref = self.reference()
        self._count += 1
        ckpt_dir = self.work / f"cut-{self._count}"
        if result.vocab is None:
            save_derived(result.model, ckpt_dir, self.source, meta={"pruning": result.summary()})
        else:  # the file the user gets: the chosen vocabulary's rows (on a copy: the result stays whole)
            from edgeprune.prune.vocab_surgery import save_trimmed, trim_rows

            trim = result.vocab.trim
            save_trimmed(trim_rows(copy.deepcopy(result.model), trim.kept), ckpt_dir, self.source, trim,
                         meta={"pruning": result.summary()})
        cut = self._export(load_checkpoint(ckpt_dir), f"cut-{self._count}-gguf")
        shutil.rmtree(ckpt_dir, ignore_errors=True)  # the GGUF is what is timed; the float weights are big
        opts = {**self.target_options, **({"threads": self.threads} if self.threads else {})}
        paired = paired_bench([ref, cut], self.device, vs=ref, rounds=self.rounds, progress=False, **opts)
        metric = "pp" if key == "prefill_tps" else "tg"
        if key == "speedup":
            return paired.ratio(str(cut), metric).median
        return next(f for f in paired.files if f.path == str(cut)).median(metric)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


__all__ = ["land", "next_goal", "Landing", "LandingTry", "DeviceMeasure", "DEFAULT_TOLERANCE", "DEFAULT_TRIES"]
