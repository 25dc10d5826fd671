"""Paired, interleaved comparisons: measurements you can decide with on a noisy machine.

Two processes timing the same file on a shared 2-core VM differ by up to 40%, so figures taken
one file after another cannot rank files whose speeds differ by less than that. Here the files
are measured in rounds: every round runs each file once, each in its own process, in a shuffled
order, so a slow spell of the machine hits every file of that round. Each file's speed is then
compared with the reference file's **in the same round** (a paired ratio), and the ratios'
median and interquartile range are reported. A ratio whose interquartile range contains 1 is
marked as within the noise: the difference is smaller than the spread.

    result = paired_bench([a, b, c], "local", vs=a, rounds=10)
"""

from __future__ import annotations

import random
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edgeprune.base.errors import BenchError


def _quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of `values` (q in [0, 1])."""
    xs = sorted(values)
    if not xs:
        raise ValueError("no values")
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass
class PairedRatio:
    """One file against the reference for one metric (pp or tg tokens/s)."""

    median: float  # median over rounds of file / reference in the same round
    q25: float  # interquartile range of the per-round ratios: the spread
    q75: float
    low: float  # min and max of the per-round ratios
    high: float
    rounds: int

    @property
    def decided(self) -> bool:
        """The difference exceeds the spread: the interquartile range of the ratios excludes 1."""
        return self.q25 > 1.0 or self.q75 < 1.0

    def text(self) -> str:
        mark = "" if self.decided else " (within noise)"
        return f"x{self.median:.3f} [{self.q25:.3f}-{self.q75:.3f}]{mark}"


def paired_ratio(reference: Sequence[float], values: Sequence[float]) -> PairedRatio:
    """Per-round ratios values[r] / reference[r] summarised (rounds where either is missing or
    zero are skipped)."""
    ratios = [v / r for r, v in zip(reference, values) if r and v]
    if not ratios:
        raise BenchError("no round measured both the file and the reference")
    return PairedRatio(median=statistics.median(ratios), q25=_quantile(ratios, 0.25), q75=_quantile(ratios, 0.75),
                       low=min(ratios), high=max(ratios), rounds=len(ratios))


@dataclass
class FileSpeeds:
    """One file's per-round tokens/s."""

    path: str
    pp: list = field(default_factory=list)
    tg: list = field(default_factory=list)
    peak_rss_mb: Optional[float] = None

    def best(self, metric: str) -> float:
        return max(getattr(self, metric) or [0.0])

    def median(self, metric: str) -> float:
        vals = getattr(self, metric)
        return statistics.median(vals) if vals else 0.0


@dataclass
class PairedResult:
    reference: str
    device: str
    n_prompt: int
    n_gen: int
    rounds: int
    files: list  # [FileSpeeds]
    orders: list  # per round, the order the files ran in

    def ratio(self, path: str, metric: str) -> PairedRatio:
        ref = next(f for f in self.files if f.path == self.reference)
        other = next(f for f in self.files if f.path == path)
        return paired_ratio(getattr(ref, metric), getattr(other, metric))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratios"] = {f.path: {m: {**asdict(self.ratio(f.path, m)), "decided": self.ratio(f.path, m).decided}
                                  for m in ("pp", "tg")} for f in self.files}
        return out

    def table(self) -> str:
        from edgeprune.base.table import markdown_table

        rows = []
        for f in self.files:
            rows.append([Path(f.path).name, f"{f.best('pp'):.1f}", f"{f.median('pp'):.1f}",
                         self.ratio(f.path, "pp").text(), f"{f.best('tg'):.1f}", f"{f.median('tg'):.1f}",
                         self.ratio(f.path, "tg").text()])
        head = [f"file (vs {Path(self.reference).name})", f"pp{self.n_prompt} best", "median", "paired ratio [IQR]",
                f"tg{self.n_gen} best", "median", "paired ratio [IQR]"]
        return (markdown_table(head, rows) + f"\n\n{self.rounds} interleaved rounds on {self.device}, each file its "
                "own process per round, order shuffled; ratio = file / reference in the same round; "
                "'within noise': the interquartile range of the ratios contains 1.")


def paired_bench(artifacts: Sequence[Union[str, Path]], device: Any = "local", *, vs: Union[str, Path, None] = None,
                 rounds: int = 10, n_prompt: int = 512, n_gen: int = 128, seed: int = 0, progress: bool = True,
                 measure: Any = None, **bench_options: Any) -> PairedResult:
    """Measure `artifacts` in `rounds` interleaved rounds on `device` and pair each with `vs`
    (default: the first). `measure(path)` -> (pp t/s, tg t/s, peak RSS MB) replaces the real
    harness in tests; by default each run is one `harness.bench` call (its own process)."""
    from edgeprune.base.progress import progress_bar

    paths = [str(Path(a)) for a in artifacts]
    ref = str(Path(vs)) if vs is not None else (paths[0] if paths else None)
    if ref is None:
        raise BenchError("give at least one artifact to compare")
    if ref not in paths:
        paths.insert(0, ref)
    if len(set(paths)) != len(paths):
        raise BenchError("each file may be given once")
    if rounds < 2:
        raise BenchError(f"--rounds {rounds}: a paired comparison needs at least 2 rounds (10 or more to decide)")
    if measure is None:
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise BenchError(f"artifact {missing[0]} does not exist (give .gguf or .onnx files)")
        from edgeprune.devices import load_device
        from edgeprune.runtime_bench.harness import bench

        prof = load_device(device)
        device = prof.name

        def measure(path: str) -> tuple[float, float, Optional[float]]:
            rec = bench([path], prof, n_prompt=n_prompt, n_gen=n_gen, reps=1, progress=False, **bench_options)[0]
            return rec.pp_tps_mean or 0.0, rec.tg_tps_mean or 0.0, rec.peak_rss_mb
    speeds = {p: FileSpeeds(p) for p in paths}
    rng = random.Random(seed)
    orders = []
    with progress_bar(total=rounds * len(paths), desc=f"paired bench on {device}", unit="run", disable=not progress) as bar:
        for _ in range(rounds):
            order = list(paths)
            rng.shuffle(order)
            orders.append([Path(p).name for p in order])
            for p in order:
                pp, tg, rss = measure(p)
                speeds[p].pp.append(pp)
                speeds[p].tg.append(tg)
                if rss:
                    speeds[p].peak_rss_mb = max(rss, speeds[p].peak_rss_mb or 0.0)
                bar.update(1)
    return PairedResult(reference=ref, device=str(device), n_prompt=n_prompt, n_gen=n_gen, rounds=rounds,
                        files=[speeds[p] for p in paths], orders=orders)


__all__ = ["PairedRatio", "paired_ratio", "FileSpeeds", "PairedResult", "paired_bench"]
