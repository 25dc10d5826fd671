"""Calibrating a device's latency table: measure synthetic GGUFs of varied shapes on the
device through the bench harness and fit `latency_model.LatencyTable` to them.

Kept apart from latency_model.py because it runs the harness, and the harness reads the latency
model for its predictions: model (pure) <- harness (measures) <- calibration (measures to fit).
"""

from __future__ import annotations

import logging

import random
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from edgeprune.base.errors import BenchError, ExportError
from edgeprune.shape.quant_presets import canonical_gguf, gguf_ftype
from edgeprune.devices.latency_model import N_GEN, N_PROMPT, LatencyTable, Point, fit_table
from edgeprune.shape.spec import ArchSpec, LayerSpec


# ----- calibration shapes ------------------------------------------------------------------------

# The published edge models whose neighbourhood the shapes are drawn from: (hidden, layers, heads,
# KV heads, FFN, vocab). SmolLM2-135M / 360M, MobileLLM-125M, Qwen2.5-0.5B, and a toy size.
EDGE_BASES = ((576, 30, 9, 3, 1536, 49152), (960, 32, 15, 5, 2560, 49152), (576, 30, 9, 3, 1536, 32000),
              (896, 24, 14, 2, 4864, 151936), (256, 8, 4, 2, 768, 8192))


log = logging.getLogger(__name__)

def calibration_shapes(n: int, seed: int = 0, max_params: int = 500_000_000) -> list[ArchSpec]:
    """`n` varied Llama shapes around real edge models (EDGE_BASES): 2-32 layers, 1-15 query heads
    with 1-5 KV heads, FFN and hidden widths cut from the base's, uniform (a plain llama file) and
    heterogeneous (`deci`: per-layer heads / FFN, some layers without attention or MLP), up to
    `max_params`. Widths are multiples of 32 so Q4_0 / Q8_0 rows are whole blocks (fallbacks are
    a separate, known cost). Their sizes are log-uniform so small pruned models and the full
    originals are both covered."""
    rng = random.Random(seed)
    out: list[ArchSpec] = []
    while len(out) < n:
        h0, l0, q0, kv0, f0, vocab = rng.choice(EDGE_BASES)
        hidden = max(128, 64 * round(h0 * rng.choice([1.0, 1.0, 0.75, 0.5]) / 64))
        n_layers = rng.randint(2, 32) if rng.random() < 0.2 else rng.randint(8, max(8, l0 + 2))
        hetero = rng.random() < 0.4
        layers = []
        base = None
        for _ in range(n_layers):
            if base is None or hetero:
                kv = rng.randint(1, kv0)
                g = rng.randint(1, max(1, min(15 // kv, q0 // max(1, kv0) + 1)))
                ffn = 32 * rng.randint(2, max(2, f0 // 32))
                if hetero and rng.random() < 0.1:
                    kv = g = 0  # attention removed
                elif hetero and rng.random() < 0.08:
                    ffn = 0  # MLP removed
                base = LayerSpec(kv * g, kv, ffn)
            layers.append(base)
        if all(not lay.has_attention for lay in layers):
            continue
        spec = ArchSpec(family="llama", vocab_size=vocab if rng.random() < 0.7 else 8192, hidden_size=hidden,
                        head_dim=64, layers=tuple(layers), max_position_embeddings=2048,
                        tie_word_embeddings=rng.random() < 0.7)
        # log-uniform sizes: accept big shapes less often than their share of the draws
        if spec.n_params <= max_params and rng.random() < min(1.0, (20e6 / spec.n_params) ** 0.5):
            out.append(spec)
    return out


# ----- calibration run ------------------------------------------------------------------------------

def _median_spread(n_tokens: int, seconds: Sequence[float]) -> tuple[float, float]:
    tps = sorted(n_tokens / s for s in seconds if s > 0)
    med = tps[len(tps) // 2] if len(tps) % 2 else 0.5 * (tps[len(tps) // 2 - 1] + tps[len(tps) // 2])
    return med, (tps[-1] - tps[0]) / med if med else 0.0


def calibrate(device: Any, *, quants: Sequence[str] = ("Q4_0", "Q8_0"), n_shapes: int = 16,
              held_out: float = 0.25, reps: int = 3, seed: int = 0, work_dir: Optional[Path] = None,
              progress: bool = True, max_params: int = 500_000_000, **target_options: Any) -> LatencyTable:
    """Measure synthetic shapes on `device` (a DeviceProfile; local, ssh or adb through the bench
    harness) and fit its latency table. Each shape is written once at F16, quantized to every
    type by llama.cpp itself (so the type mix is the real one) and measured with pp512 / tg128."""
    import shutil
    import tempfile

    from edgeprune.base.progress import progress_bar

    from edgeprune.export.llamacpp_runner import llamacpp_quantize
    from edgeprune.runtime_bench.harness import bench
    from edgeprune.runtime_bench.synthetic import write_random_gguf

    quants = [q.upper() for q in quants]
    for q in quants:
        try:
            canonical_gguf(q)  # the rule export and device profiles use: a type we can ship
        except ExportError:
            raise BenchError(f"cannot calibrate for {q!r}: not a llama.cpp file type (e.g. Q4_0, Q8_0, Q4_K_M)") from None
    shapes = calibration_shapes(n_shapes, seed, max_params)
    rng = random.Random(seed + 1)
    test_idx = set(rng.sample(range(len(shapes)), max(1, int(round(held_out * len(shapes)))))) if held_out else set()
    own = work_dir is None
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="edgeprune-calib-"))
    work.mkdir(parents=True, exist_ok=True)
    points: list[Point] = []
    t0 = time.perf_counter()
    threads = device.threads
    machine = ""
    try:
        # the bar counts parameters, not files: shapes range over two orders of magnitude, and a
        # file's write, quantization and bench take time in proportion to its size
        sizes = [spec.n_params / 1e6 for spec in shapes]
        if progress:
            log.info("calibrate %s plan: %d random shapes (%.1f-%.0f M params) x %s = %d files, each written at "
                     "F16, quantized by llama.cpp and benched (pp%d / tg%d, %d reps); an ETA follows the first file",
                     device.name, len(shapes), min(sizes), max(sizes), "/".join(quants), len(shapes) * len(quants),
                     N_PROMPT, N_GEN, reps)
        with progress_bar(total=sum(sizes) * len(quants), desc=f"calibrate {device.name}", unit="M params",
                          disable=not progress) as bar:
            for k, spec in enumerate(shapes):
                f16 = write_random_gguf(spec, work / f"shape{k}.F16.gguf", "F16", seed=k)
                for q in quants:
                    path = work / f"shape{k}.{q}.gguf"
                    llamacpp_quantize(f16, path, gguf_ftype(q))
                    rec = bench([path], device, n_prompt=N_PROMPT, n_gen=N_GEN, reps=reps, progress=False,
                                **target_options)[0]
                    tg, tg_sp = _median_spread(rec.n_gen, rec.extra.get("tg_seconds") or [])
                    pp, pp_sp = _median_spread(rec.n_prompt, rec.extra.get("pp_seconds") or [])
                    if not tg and rec.tg_tps_mean:
                        tg, pp = rec.tg_tps_mean, rec.pp_tps_mean or 0.0
                    machine = machine or f"{rec.host} | {rec.runtime_version} | {threads} threads"
                    busy = "contended" in rec.flags  # still busy after the harness's one retry
                    if busy:
                        log.warning("calibration shape %d at %s was measured while other processes kept the "
                                    "CPUs busy: left out of the fit (calibrate on a quiet machine)", k, q)
                    points.append(Point(spec=spec.to_dict(), qtype=q, tg_tps=tg, pp_tps=pp, tg_spread=tg_sp,
                                        pp_spread=pp_sp, held_out=k in test_idx, contended=busy))
                    path.unlink()
                    bar.update(spec.n_params / 1e6)
                f16.unlink()
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return fit_table(points, device=device.name, machine=machine, threads=threads,
                     seconds=time.perf_counter() - t0)


def refit(device: Any) -> LatencyTable:
    """The device's cached table fitted again on its own measurements (a table of an earlier
    version too: its points are plain JSON), for a newer model of the costs without new runs."""
    import json

    from edgeprune.devices.latency_model import table_path

    path = table_path(device.name)
    if not path.is_file():
        raise BenchError(f"{device.name} has no latency table at {path} to refit: run `edgeprune devices calibrate "
                         f"{device.name}` first")
    try:
        d = json.loads(path.read_text())
        points = [Point(**p) for p in d["points"]]
    except (ValueError, TypeError, KeyError) as e:
        raise BenchError(f"{path}: not a latency table ({type(e).__name__}: {e}); delete it and recalibrate") from None
    return fit_table(points, device=device.name, machine=d.get("machine", ""), threads=int(d.get("threads", 0)),
                     n_prompt=int(d.get("n_prompt", N_PROMPT)), n_gen=int(d.get("n_gen", N_GEN)),
                     seconds=float(d.get("seconds", 0.0)))

