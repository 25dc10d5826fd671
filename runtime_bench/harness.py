"""The harness: benchmark artifacts on a device and return BenchRecords (one schema everywhere).

    records = bench(["m.Q4_0.gguf", "m.int8.onnx"], "local", n_prompt=512, n_gen=128, reps=5)

Runtimes are a registry keyed by short name (`RUNTIMES`): the file suffix picks one. Targets come
from the device profile's access kind (local / ssh / adb), overridable per call (host, port, key,
serial, remote python). Beside every measurement the record carries the roofline prediction for
that device and the fitted η (roofline.py).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from edgeprune.devices import DeviceProfile, load_device
from edgeprune.base.errors import BenchError, DeviceError, SpecError
from edgeprune.devices.predict import predict
from edgeprune.files.spec_of import onnx_graph, quant_of, spec_or_none
from edgeprune.devices import roofline as rl
from edgeprune.runtime_bench.schema import (NOISY_SPREAD, BenchRecord, fmt_pm, now_iso, relative_spread,
                                            tps_median, tps_stats, validate_record)
from edgeprune.runtime_bench.targets import Job, LocalTarget, Target

log = logging.getLogger(__name__)

# runtime short name -> (artifact format, file suffix)
RUNTIMES: dict[str, tuple[str, str]] = {"llamacpp": ("gguf", ".gguf"), "onnxruntime": ("onnx", ".onnx")}


def runtime_for(path: Path) -> str:
    for name, (_, suffix) in RUNTIMES.items():
        if path.suffix == suffix:
            return name
    raise BenchError(f"{path}: cannot tell the runtime from the suffix {path.suffix!r}; "
                     f"expected one of {[s for _, s in RUNTIMES.values()]}")


def artifact_files(path: Path) -> list[Path]:
    """The artifact plus the files it needs beside it (ONNX external data, e.g. model.onnx.data)."""
    if path.suffix == ".gguf":
        from edgeprune.files.gguf_reader import open_gguf

        open_gguf(path)  # a lying header is one line here, not llama.cpp's "failed to load" later
    if path.suffix != ".onnx":
        return [path]
    import onnx

    try:
        m = onnx_graph(path)
    except SpecError as e:  # a bench input: the bench's error, in the same words
        raise BenchError(str(e)) from None
    extra: list[Path] = []
    for init in m.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        loc = next((e.value for e in init.external_data if e.key == "location"), "")
        side = path.parent / loc
        if "/" in loc or "\\" in loc or not side.is_file():
            raise BenchError(f"{path}: external data {loc!r} must be a file beside the model")
        if side not in extra:
            extra.append(side)
    return [path, *extra]


# A run is contended when other processes keep more cores busy than the CPUs our threads leave
# free, plus this margin (half a core: a shell, a logger or the harness itself stay below it).
CONTENTION_MARGIN_CORES = 0.5
RETRY_SETTLE_S = 2.0  # wait before the one retry of a contended run (a burst neighbour may end)


def contention(load: dict[str, Any], threads: int) -> Optional[str]:
    """Why a run's load reading (runner_script's `load`) makes it contended, or None.

    Compared with the cores the run could *not* use anyway: on 2 CPUs with 2 threads any
    neighbour above half a core competes; on 16 CPUs with 4 threads a 10-core neighbour does not."""
    cpus = load.get("cpus")
    if not cpus:
        return None
    threshold = max(0.0, cpus - threads) + CONTENTION_MARGIN_CORES
    worst = [(k, load.get(k)) for k in ("before_other_cores", "during_other_cores")]
    for key, v in worst:
        if v is not None and v > threshold:
            when = key.split("_")[0]
            return f"{v:.2f} other cores busy {when} the run (> {threshold:.2f} free of {cpus} CPUs, {threads} threads)"
    return None


def measure_checked(target: Target, job: Job, on_progress: Any = None, retry: bool = True,
                    settle_s: float = RETRY_SETTLE_S) -> dict[str, Any]:
    """Measure; when the machine was contended, warn and retry once, keeping the quieter run.
    The raw dict's `load` gains `threshold`, `contended` (reason or None) and `retried`."""
    raw = target.measure(job, on_progress)
    load = dict(raw.get("load") or {})
    why = contention(load, job.threads)
    retried = False
    if why and retry:
        log.warning("%s: %s; retrying once in %.0f s", job.model.name, why, settle_s)
        time.sleep(settle_s)
        raw2 = target.measure(job, on_progress)
        load2 = dict(raw2.get("load") or {})
        why2 = contention(load2, job.threads)
        retried = True
        if why2 is None or (load2.get("during_other_cores") or 0) < (load.get("during_other_cores") or 0):
            raw, load, why = raw2, load2, why2
    if why:
        log.warning("%s: still contended (%s): its row is flagged 'contended'", job.model.name, why)
    if load:
        cpus = load.get("cpus") or 0
        load.update(threshold=max(0.0, cpus - job.threads) + CONTENTION_MARGIN_CORES, contended=why,
                    retried=retried)
    raw["load"] = load
    return raw


def make_target(device: DeviceProfile, *, host: Optional[str] = None, port: Optional[int] = None,
                key: Optional[str] = None, serial: Optional[str] = None, remote_python: Optional[str] = None,
                remote_dir: Optional[str] = None, known_hosts: Optional[str] = None,
                use_llama_bench: bool = True, connect_timeout: int = 10, timeout: float = 3600.0) -> Target:
    """The target for a device's access kind; a `host` turns any profile into an ssh target
    (e.g. raspberry-pi-5's figures with --host pi@10.0.0.7)."""
    acc = device.access
    kind = "ssh" if host else acc.kind
    if kind == "local":
        return LocalTarget(timeout=timeout)
    if kind == "ssh":
        from edgeprune.runtime_bench.ssh import SshTarget, split_destination

        user, h = split_destination(host) if host else (acc.user, acc.host)
        return SshTarget(host=h, user=user or (acc.user if not host else ""), port=port if port is not None else acc.port,
                         key=key if key is not None else acc.key,
                         known_hosts=known_hosts if known_hosts is not None else acc.known_hosts,
                         python=remote_python or acc.python, remote_dir=remote_dir or acc.remote_dir
                         or "/tmp/edgeprune-bench", llama_bench=acc.llama_bench, cores=device.cores,
                         connect_timeout=connect_timeout, timeout=timeout, use_llama_bench=use_llama_bench)
    if kind == "adb":
        from edgeprune.runtime_bench.adb import AdbTarget

        return AdbTarget(serial=serial if serial is not None else acc.serial,
                         remote_dir=remote_dir or acc.remote_dir, llama_bench=acc.llama_bench,
                         cores=device.cores, timeout=timeout)
    raise DeviceError(f"{device.name}: unknown access kind {kind!r}")


def run_memory(raw: dict[str, Any], path: Path, spec: Any = None) -> dict[str, Any]:
    """What a GGUF run held (edgeprune.devices.memory.memory_estimate at the run's context, f16 KV cache as
    the runner allocates it) and the runtime overhead it measured: peak RSS minus weights and KV.
    {} for ONNX, a file whose shape cannot be read, or a run that did not say its context."""
    from edgeprune.devices.memory import memory_estimate

    if path.suffix != ".gguf" or not raw.get("n_ctx"):
        return {}
    spec = spec if spec is not None else spec_or_none(path)
    if spec is None:
        return {}
    m = memory_estimate(spec, path.stat().st_size, int(raw["n_ctx"]), "f16", flash_attn=False)
    out = {"n_ctx": m.n_ctx, "cache_type": m.cache_type, "weights_bytes": m.weights_bytes, "kv_bytes": m.kv_bytes,
           "peak_rss_bytes": None, "overhead_bytes": None}
    if raw.get("peak_rss_mb"):
        rss = int(float(raw["peak_rss_mb"]) * 2 ** 20)
        out.update(peak_rss_bytes=rss, overhead_bytes=max(0, rss - m.weights_bytes - m.kv_bytes))
    return out


def record_from_raw(raw: dict[str, Any], path: Path, device: DeviceProfile, target_kind: str,
                    host: str, prediction: dict[str, Any], quant: str) -> BenchRecord:
    """Assemble the schema record from a raw run (runner_script.py / llama-bench shape);
    `prediction` is edgeprune.devices.predict's for the file (kept beside the measurement, with
    the efficiency the measured decode implies)."""
    from edgeprune.runtime_bench.raw_check import check_raw

    raw = check_raw(raw, f"{raw.get('runner') or 'runner'} on {path.name}" if isinstance(raw, dict) else path.name)
    pp_mean, pp_std = tps_stats(raw["n_prompt"], raw.get("pp_seconds") or [])
    tg_mean, tg_std = tps_stats(raw["n_gen"], raw.get("tg_seconds") or [])
    spread = relative_spread((pp_mean, pp_std), (tg_mean, tg_std))
    load = dict(raw.get("load") or {})
    flags = []
    if load.get("contended"):
        flags.append("contended")
    if spread is not None and spread > NOISY_SPREAD:
        flags.append("noisy")
    if int(raw["reps"]) < 2:
        flags.append("one-rep")
    if not load or load.get("during_other_cores") is None:
        flags.append("no-load-check")
    ttft = raw.get("ttft_ms") or []
    fmt = RUNTIMES[runtime_for(path)][0]
    rec = BenchRecord(
        model=path.name, model_path=str(path), format=fmt, quant=quant, file_bytes=path.stat().st_size,
        device=device.name, access=target_kind, host=raw.get("host") or host,
        runtime=raw["runtime"], runner=raw.get("runner", ""), runtime_version=raw.get("runtime_version", ""),
        build=raw.get("build", ""), threads=int(raw["threads"]), n_prompt=int(raw["n_prompt"]),
        n_gen=int(raw["n_gen"]), reps=int(raw["reps"]),
        pp_tps_mean=pp_mean, pp_tps_std=pp_std, tg_tps_mean=tg_mean, tg_tps_std=tg_std,
        ttft_ms=(sum(ttft) / len(ttft)) if ttft else None, load_ms=raw.get("load_ms"),
        peak_rss_mb=raw.get("peak_rss_mb"),
        roofline={**prediction, "efficiency_fitted": (rl.fit_efficiency(tg_mean, prediction["bytes_per_token"],
                                                                        device.bandwidth_gbs) if tg_mean else None)},
        timestamp=now_iso(),
        pp_tps_median=tps_median(raw["n_prompt"], raw.get("pp_seconds") or []),
        tg_tps_median=tps_median(raw["n_gen"], raw.get("tg_seconds") or []),
        spread=spread, load=load, flags=flags,
        extra={k: raw[k] for k in ("pp_seconds", "tg_seconds", "llama_bench", "machine", "python")
               if raw.get(k) is not None},
    )
    validate_record(rec)
    return rec


def bench(artifacts: Sequence[Union[str, Path]], device: Union[str, DeviceProfile] = "local", *,
          n_prompt: int = 512, n_gen: int = 128, reps: int = 5, threads: Optional[int] = None,
          target: Optional[Target] = None, spec: Any = None, progress: bool = True,
          retry_contended: bool = True, **target_options: Any) -> list[BenchRecord]:
    """Measure every artifact on `device`; one record each (llama-bench's pp/tg convention).
    One warm-up, then `reps` repetitions (mean, median, std). A run measured while other
    processes kept the CPUs busy is retried once (`retry_contended`) and flagged if still so."""
    from edgeprune.base.progress import progress_bar

    prof = load_device(device)
    if reps < 1 or n_prompt < 0 or n_gen < 0 or (n_prompt == 0 and n_gen == 0):
        raise BenchError(f"need reps >= 1 and a positive --prompt or --gen (got reps={reps}, "
                         f"prompt={n_prompt}, gen={n_gen})")
    threads = threads or prof.threads
    if threads < 1:
        raise BenchError(f"threads={threads} must be >= 1")
    target = target or make_target(prof, **target_options)
    # `local`'s cores are this machine's: meaningless on another host reached with --host
    cores = () if prof.access.kind == "local" and target.kind != "local" else prof.cores
    records = []
    for art in artifacts:
        path = Path(art)
        if not path.is_file():
            raise BenchError(f"artifact {path} does not exist (give .gguf or .onnx files)")
        runtime = runtime_for(path)
        job = Job(runtime=runtime, model=path, n_prompt=n_prompt, n_gen=n_gen, reps=reps,
                  threads=threads, cores=tuple(cores), side_files=tuple(artifact_files(path)[1:]))
        with progress_bar(total=1 + 2 * reps, desc=f"{path.name} @ {prof.name}", unit="run",
                  disable=not progress, leave=False) as bar:
            def on_progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            raw = measure_checked(target, job, on_progress, retry=retry_contended)
            bar.n = bar.total
        prediction = predict(path, prof, spec=spec, n_prompt=n_prompt, n_gen=n_gen)
        rec = record_from_raw(raw, path, prof, target.kind, target.label, prediction, quant_of(path))
        rec.file_bytes = sum(f.stat().st_size for f in job.files)
        rec.memory = run_memory(raw, path, spec)
        log.info("%s on %s: pp %s t/s, tg %s t/s (roofline %.1f, η fitted %s)%s", path.name, prof.name,
                 fmt_pm(rec.pp_tps_mean, rec.pp_tps_std), fmt_pm(rec.tg_tps_mean, rec.tg_tps_std),
                 rec.roofline["tg_pred_tps"],
                 f"{rec.roofline['efficiency_fitted']:.2f}" if rec.roofline["efficiency_fitted"] else "-",
                 f" [{', '.join(rec.flags)}]" if rec.flags else "")
        records.append(rec)
    return records
