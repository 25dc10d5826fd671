"""The one bench record schema, for every runtime and every device.

A record is built from a *raw run* — what a runner measured, as a dict of per-repetition samples
(`runner_script.py` output, or llama-bench jsonl turned into the same shape by
`llama_bench.raw_from_jsonl`) — plus the device, the artifact and the roofline. Throughputs follow
llama-bench: per-repetition tokens/s, then their mean and (Bessel-corrected) standard deviation.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

from edgeprune.base.atomic_io import atomic_write_json
from edgeprune.base.errors import BenchError

SCHEMA_VERSION = 3  # 2: medians, spread, load and flags; 3: memory

NOISY_SPREAD = 0.25  # relative std (std / mean of per-rep tokens/s) above which a row is flagged
# flags a record can carry; report tables print them next to the figures
FLAG_NOTES = {
    "contended": "other processes kept CPUs busy during the run (see load): figures are pessimistic",
    "noisy": f"repetitions vary by more than {NOISY_SPREAD:.0%} (std / mean): trust the median, not the mean",
    "one-rep": "a single repetition: no spread was measured (± 0 means unknown, not exact)",
    "no-load-check": "the machine's load could not be read (llama-bench, or no /proc/stat)",
}


@dataclass
class BenchRecord:
    model: str  # artifact file name (path as given on the command line in `model_path`)
    model_path: str  # path of the artifact on the machine that ran the harness
    format: str  # "gguf" | "onnx"
    quant: str  # "Q4_0", "Q8_0", "int8", ... ("unknown" when it cannot be read from the file)
    file_bytes: int  # size of the artifact file
    device: str  # device profile name
    access: str  # "local" | "ssh" | "adb"
    host: str  # hostname the measurement ran on (or the ssh/adb target)
    runtime: str  # "llama.cpp" | "onnxruntime"
    runner: str  # how it ran: "llama-cpp-python" | "llama-bench" | "onnxruntime-python"
    runtime_version: str  # e.g. "llama-cpp-python 0.3.36", "llama-bench b5163 (8cf427ff)"
    build: str  # runtime build / system info (ISA flags compiled in, providers, ...)
    threads: int
    n_prompt: int  # pp test: prompt tokens prefilled into an empty cache
    n_gen: int  # tg test: tokens decoded from an empty cache
    reps: int
    pp_tps_mean: Optional[float]  # prefill tokens/s (None when n_prompt == 0)
    pp_tps_std: Optional[float]
    tg_tps_mean: Optional[float]  # decode tokens/s (None when n_gen == 0)
    tg_tps_std: Optional[float]
    ttft_ms: Optional[float]  # time to first token for an n_prompt prompt (prefill + pick)
    load_ms: Optional[float]  # model load (None with llama-bench, which does not report it)
    peak_rss_mb: Optional[float]  # peak resident memory of the runner process (incl. Python)
    roofline: dict[str, Any] = field(default_factory=dict)  # see roofline.roofline()
    pp_tps_median: Optional[float] = None  # median of per-rep prefill tokens/s (robust to one bad rep)
    tg_tps_median: Optional[float] = None
    spread: Optional[float] = None  # worst relative std (std / mean) of pp and tg tokens/s
    # other processes' busy cores on our CPUs: {cpus, before_other_cores, during_other_cores,
    # threshold, retried}; empty when unknown
    load: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # keys of FLAG_NOTES
    # GGUF: what the run held (edgeprune.devices.memory): {n_ctx, cache_type, weights_bytes, kv_bytes,
    # peak_rss_bytes, overhead_bytes = peak RSS - weights - KV}; empty for ONNX or unknown shapes
    memory: dict[str, Any] = field(default_factory=dict)
    timestamp: str = ""  # ISO-8601 UTC of the measurement
    schema: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # runner-specific (raw samples, cpu_info)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchRecord":
        known = {f.name for f in fields(cls)}  # schema-1 records lack the newer fields: defaults
        unknown = set(d) - known
        if unknown:
            raise BenchError(f"bench record has unknown field(s) {sorted(unknown)}")
        return cls(**d)


def tps_stats(n_tokens: int, seconds: Sequence[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample std of per-repetition tokens/s (llama-bench's avg_ts / stddev_ts)."""
    if not n_tokens or not seconds:
        return None, None
    tps = [n_tokens / s for s in seconds]
    return statistics.fmean(tps), (statistics.stdev(tps) if len(tps) > 1 else 0.0)


def tps_median(n_tokens: int, seconds: Sequence[float]) -> Optional[float]:
    if not n_tokens or not seconds:
        return None
    return statistics.median(n_tokens / s for s in seconds)


def relative_spread(*pairs: tuple[Optional[float], Optional[float]]) -> Optional[float]:
    """The largest std / mean among (mean, std) pairs that were measured."""
    rel = [std / mean for mean, std in pairs if mean and std is not None]
    return max(rel) if rel else None


def fmt_pm(mean: Optional[float], std: Optional[float], digits: int = 1) -> str:
    """`mean ± std` (the only way a measured mean is printed)."""
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std or 0:.{digits}f}"


def flags_text(flags: Sequence[str]) -> str:
    return ", ".join(f"**{f}**" for f in flags) if flags else ""


def flag_legend(flags: Sequence[str]) -> str:
    """Markdown lines explaining each flag that appears (empty when none)."""
    seen = [f for f in FLAG_NOTES if f in set(flags)]
    return "\n".join(f"- **{f}**: {FLAG_NOTES[f]}" for f in seen)


def validate_record(rec: BenchRecord) -> None:
    """Internal sanity: figures that were measured are finite and positive."""
    for name in ("pp_tps_mean", "tg_tps_mean", "ttft_ms", "load_ms", "peak_rss_mb"):
        v = getattr(rec, name)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise BenchError(f"{rec.model} on {rec.device}: {name}={v} is not a positive number")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_records(records: Sequence[BenchRecord], out: Path) -> None:
    """Write records as a JSON list atomically (temp file then rename)."""
    atomic_write_json(out, [r.to_dict() for r in records])


def read_records(path: Path) -> list[BenchRecord]:
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = [data]
    return [BenchRecord.from_dict(d) for d in data]
