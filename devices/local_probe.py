"""Read the `local` device from this machine: cores, ISA flags, RAM, and a measured memory
bandwidth and FLOP/s peak (measured once, cached under $EDGEPRUNE_CACHE or ~/.cache/edgeprune).

The bandwidth figure is a multi-threaded numpy copy of arrays far larger than any cache (STREAM's
"copy" kernel: bytes read + bytes written per second, best of a few repetitions). It is what a
decode step can at most stream on this machine, so the roofline's η on `local` compares against a
bandwidth really reachable here rather than a datasheet number.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from edgeprune.base.atomic_io import atomic_write_json

log = logging.getLogger(__name__)

CACHE_FILE = "local_device.json"
_COPY_MIB = 256  # per measurement: >> any L3 cache, ~0.1 s per copy on a laptop
_REPS = 4

# /proc/cpuinfo flag -> our ISA name (x86 "flags", ARM "Features")
_X86_FLAGS = {"sse4_2": "sse4_2", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
              "avx512f": "avx512", "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16",
              "avx_vnni": "avx_vnni", "amx_int8": "amx_int8"}
_ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "sve": "sve", "sve2": "sve2",
              "asimdhp": "fp16", "bf16": "bf16"}


def cache_dir() -> Path:
    from edgeprune.base.paths import cache_root

    return cache_root(create=False)


def cpu_info() -> tuple[str, list[str]]:
    """(CPU model name, ISA features) from /proc/cpuinfo; platform fallbacks elsewhere."""
    name, flags = "", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not name:
            name = val.strip()
        elif key in ("flags", "features"):
            flags |= set(val.split())
    isa = sorted({ours for theirs, ours in {**_X86_FLAGS, **_ARM_FLAGS}.items() if theirs in flags})
    if not isa and platform.machine().lower() in ("arm64", "aarch64"):
        isa = ["neon"]  # every AArch64 CPU has Advanced SIMD (macOS has no /proc/cpuinfo)
    return name or platform.processor() or platform.machine(), isa


def usable_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return list(range(os.cpu_count() or 1))


def ram_gb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):
        import psutil

        return psutil.virtual_memory().total / 1e9


def measure_bandwidth_gbs(threads: int, mib: int = _COPY_MIB, reps: int = _REPS) -> float:
    """Copy bandwidth in GB/s: `threads` workers each copy their slice (numpy releases the GIL).

    Counts read + write bytes, as STREAM does; best of `reps` (the least disturbed run).
    """
    import numpy as np

    n = mib * 2**20 // 8
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
    np.copyto(dst, src)  # touch pages once so the first timing does not count page faults
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(reps):
            t0 = time.perf_counter()
            list(pool.map(lambda s: np.copyto(dst[s], src[s]), slices))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9 if best > 0 else math.inf  # inf: refused by figure_problem


def measure_peak_gflops(n: int = 1024, reps: int = 3) -> float:
    """FP32 GEMM throughput through numpy's BLAS (all its threads): a practical compute peak."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b  # warm-up (thread pool start, page faults)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9 if best > 0 else math.inf


# What a measurement may be on any machine this runs on: a figure outside is a broken cache or a
# broken timer, never a fast machine (HBM is ~3000 GB/s; a big server ~100 TFLOP/s of FP32 GEMM).
PLAUSIBLE = {"bandwidth_gbs": (0.05, 20_000.0), "peak_gflops": (0.05, 1_000_000.0)}


def figure_problem(name: str, value: Any) -> str | None:
    """Why `value` is no usable `name` (not a finite positive plausible number), or None."""
    lo, hi = PLAUSIBLE[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{name} {str(value)[:40]!r} is not a number"
    if not math.isfinite(value) or not lo <= value <= hi:
        return f"{name} {value!r} is outside [{lo:g}, {hi:g}]"
    return None


def _cache_problem(cached: Any, key: str) -> str | None:
    """Why the cache's content cannot be used on this machine, or None (a schema check)."""
    if not isinstance(cached, dict):
        return f"it holds a JSON {type(cached).__name__}, not an object"
    if cached.get("machine") != key:
        return "it was measured on another machine"
    return next((p for p in (figure_problem(k, cached.get(k)) for k in PLAUSIBLE) if p), None)


def _machine_key(cpu: str, cores: list[int], ram: float) -> str:
    return f"{socket.gethostname()}|{cpu}|{len(cores)}|{ram:.1f}"


def probe_local(refresh: bool = False) -> dict[str, Any]:
    """This machine's PROBED_FIELDS; bandwidth and FLOP/s come from the cache when it matches
    this machine (hostname, CPU, core count, RAM), else they are measured and cached."""
    cpu, isa = cpu_info()
    cores = usable_cores()
    ram = ram_gb()
    key = _machine_key(cpu, cores, ram)
    path = cache_dir() / CACHE_FILE
    cached: Any = {}
    if not refresh and path.exists():
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError, RecursionError):
            cached = "unreadable"
    problem = _cache_problem(cached, key)
    if problem is not None:
        if path.exists() and not refresh and problem != "it was measured on another machine":
            log.warning("the local-device cache %s is not usable (%s): measuring this machine again", path, problem)
        t0 = time.perf_counter()
        cached = {"machine": key,
                  "bandwidth_gbs": round(measure_bandwidth_gbs(len(cores)), 2),
                  "peak_gflops": round(measure_peak_gflops(), 1),
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        seconds = time.perf_counter() - t0
        bad = next((p for p in (figure_problem(k, cached[k]) for k in PLAUSIBLE) if p), None)
        if bad is not None:  # a broken timer: nothing may divide by it, and it is not cached
            from edgeprune.base.errors import DeviceError

            raise DeviceError(f"measuring this machine gave {bad}: the local device has no usable figure "
                              "(is the machine overloaded or its clock broken?)")
        try:
            atomic_write_json(path, cached)
        except OSError as e:  # a read-only home must not stop a benchmark
            log.warning("measured local bandwidth %.1f GB/s, %.0f GFLOP/s in %.1f s; could not cache the "
                        "measurement in %s (%s): the next run measures again", cached["bandwidth_gbs"],
                        cached["peak_gflops"], seconds, path, e.strerror or e)
        else:  # said only once the file is there
            log.info("measured local bandwidth %.1f GB/s, %.0f GFLOP/s in %.1f s (cached in %s)",
                     cached["bandwidth_gbs"], cached["peak_gflops"], seconds, path)
    return {"cpu": cpu, "cores": cores, "threads": len(cores), "isa": isa, "ram_gb": round(ram, 1),
            "bandwidth_gbs": cached["bandwidth_gbs"], "peak_gflops": cached["peak_gflops"]}
