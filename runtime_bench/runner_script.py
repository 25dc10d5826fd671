#!/usr/bin/env python3
"""Self-contained benchmark runner: measures one model file in one runtime and prints one JSON line.

This file is copied as-is to remote devices (ssh) and run there, and run in a subprocess locally
(so a crash or the peak RSS of one model never leaks into another measurement). It therefore
imports nothing from edgeprune: only the standard library plus the runtime it measures
(`llama_cpp` for GGUF, `onnxruntime` + numpy for ONNX).

Convention (llama-bench's): pp = prefill of n_prompt tokens into an empty cache; tg = n_gen
single-token decode steps from an empty cache; one warm-up of each first; R repetitions; token ids
are random (speed does not depend on them); sampling is excluded from pp / tg, TTFT = prefill +
picking the first token (argmax over the last logits).

Usage: runner_script.py {llamacpp,onnxruntime} MODEL --prompt N --gen N --reps R --threads T
Load: the runner reads /proc/stat before (a short idle sample) and around the measurement, and
reports how many cores *other* processes kept busy on the CPUs it may run on (machine busy time
minus its own CPU time): `load` in the result. The harness flags and retries contended runs.

Stdout: `@result {json}` on success, `@error <one line>` (exit 3) on failure.
Stderr: `@progress DONE TOTAL` lines as measurements finish (the harness draws a progress bar).
"""

import argparse
import json
import os
import platform
import random
import resource
import socket
import sys
import time
# typing's names, not `dict[...]` / `X | None`: this file runs on the device's own Python, which
# may predate both
from typing import Any, Dict, Optional, Sequence


def progress(done: int, total: int) -> None:
    sys.stderr.write(f"@progress {done} {total}\n")
    sys.stderr.flush()


def peak_rss_mb() -> float:
    # Linux: VmHWM is the peak of *this* program's address space. ru_maxrss is not: the kernel
    # carries it across exec, so a runner spawned by a large parent (ship, with torch loaded)
    # would report the parent's size.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


# ----- the machine's load: cores kept busy by other processes ------------------------------------

def _cpus():
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _busy_seconds(cpus):
    """Busy CPU seconds since boot, summed over `cpus` (/proc/stat per-CPU lines); None off Linux."""
    try:
        with open("/proc/stat") as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu") and ln[3:4].isdigit()]
    except OSError:
        return None
    want = set(cpus)
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    for parts in lines:
        if int(parts[0][3:]) in want:
            v = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
            busy += sum(v) - v[3] - v[4]
    return busy / hz


def _self_cpu_seconds():
    ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return ru.ru_utime + ru.ru_stime


class LoadMeter:
    """Cores other processes kept busy between start() and stop(): Δ(busy on our CPUs) − Δ(our own
    CPU time), per second of wall time. None where /proc/stat is not readable (macOS)."""

    def __init__(self):
        self.cpus = _cpus()

    def start(self) -> None:
        self.t0, self.b0, self.s0 = time.perf_counter(), _busy_seconds(self.cpus), _self_cpu_seconds()

    def stop(self) -> Optional[float]:
        b1, s1, wall = _busy_seconds(self.cpus), _self_cpu_seconds(), time.perf_counter() - self.t0
        if b1 is None or self.b0 is None or wall <= 0:
            return None
        return round(max(0.0, (b1 - self.b0) - (s1 - self.s0)) / wall, 3)


def load_before(seconds: float = 0.5) -> Optional[float]:
    """Other processes' busy cores while this runner sleeps (the machine before we load it)."""
    m = LoadMeter()
    m.start()
    time.sleep(seconds)
    return m.stop()


# ----- llama.cpp through llama-cpp-python ---------------------------------------------------------

def _has_amx() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(ln.startswith("flags") and "amx_int8" in ln.split() for ln in f)
    except OSError:
        return False


def _plain_buffers() -> None:
    """Load without llama.cpp's extra CPU buffer types. On AMX CPUs (Xeon servers, no edge
    target) its AMX repack segfaults on per-layer-width (`deci`) files; this file may import
    nothing from edgeprune, so this repeats export/llamacpp_buffers.py's few lines."""
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params

    def plain():  # type: ignore[no-untyped-def]
        params = original()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = plain


def run_llamacpp(a: argparse.Namespace) -> Dict[str, Any]:
    import llama_cpp
    from llama_cpp import Llama

    plain = _has_amx()
    if plain:
        _plain_buffers()

    total = 1 + 2 * a.reps
    t0 = time.perf_counter()
    n_batch = max(1, min(max(a.prompt, 1), 2048))
    llm = Llama(model_path=a.model, n_ctx=max(a.prompt, a.gen, 8) + 8, n_batch=n_batch,
                n_ubatch=min(512, n_batch), n_threads=a.threads, n_threads_batch=a.threads,
                seed=a.seed, verbose=False)
    load_ms = (time.perf_counter() - t0) * 1e3
    rng = random.Random(a.seed)
    vocab = llm.n_vocab()
    prompt = [rng.randrange(vocab) for _ in range(a.prompt)]
    gen = [rng.randrange(vocab) for _ in range(a.gen)]

    llm.reset()  # warm-up: a short prefill and one decode step (pages in the weights, spins threads)
    llm.eval(prompt[:32] or gen[:1])
    llm.eval(gen[:1])
    progress(1, total)
    pp, ttft, tg = [], [], []
    for r in range(a.reps):
        if a.prompt:
            llm.reset()  # n_tokens = 0: eval() clears the KV cache from position 0
            t0 = time.perf_counter()
            llm.eval(prompt)
            t1 = time.perf_counter()
            int(llm.scores[llm.n_tokens - 1].argmax())  # TTFT includes picking the first token
            t2 = time.perf_counter()
            pp.append(t1 - t0)
            ttft.append((t2 - t0) * 1e3)
        progress(2 + 2 * r, total)
        if a.gen:
            llm.reset()
            t0 = time.perf_counter()
            for tok in gen:
                llm.eval([tok])
            tg.append(time.perf_counter() - t0)
        progress(3 + 2 * r, total)
    return {
        "runtime": "llama.cpp",
        "runtime_version": f"llama-cpp-python {llama_cpp.__version__}",
        "build": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "vocab": vocab, "load_ms": load_ms, "extra_buffers": not plain, "pp_seconds": pp, "tg_seconds": tg, "ttft_ms": ttft,
        "n_ctx": llm.n_ctx(),  # the context its KV cache was allocated for (f16, no flash attention)
    }


# ----- onnxruntime: a KV-cache greedy loop over the exported graph --------------------------------

def run_onnxruntime(a: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    total = 1 + 2 * a.reps
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    t0 = time.perf_counter()
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    np_types = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
                "tensor(int32)": np.int32, "tensor(bfloat16)": np.float32}
    inputs = {i.name: i for i in sess.get_inputs()}
    for need in ("input_ids", "attention_mask"):
        if need not in inputs:
            raise ValueError(f"ONNX graph has no {need!r} input (inputs: {sorted(inputs)})")
    out_names = [o.name for o in sess.get_outputs()]
    past_names = [n for n in inputs if n.startswith("past_key_values.")]
    # present.{i}.key -> past_key_values.{i}.key (DESIGN §6 / optimum naming)
    present_to_past = {n: "past_key_values." + n[len("present."):] for n in out_names if n.startswith("present.")}

    def empty_past():
        past = {}
        for n in past_names:
            shp = inputs[n].shape  # (batch, n_kv_heads, past_len, head_dim); batch/past symbolic
            past[n] = np.zeros((1, int(shp[1]), 0, int(shp[3])), dtype=np_types.get(inputs[n].type, np.float32))
        return past

    def ids_array(vals):
        return np.asarray([vals], dtype=np_types.get(inputs["input_ids"].type, np.int64))

    def step(tokens, past, past_len):
        n = len(tokens)
        feeds = {"input_ids": ids_array(tokens),
                 "attention_mask": np.ones((1, past_len + n), dtype=np_types.get(inputs["attention_mask"].type, np.int64))}
        if "position_ids" in inputs:
            feeds["position_ids"] = np.arange(past_len, past_len + n, dtype=np.int64)[None, :]
        feeds.update(past)
        outs = dict(zip(out_names, sess.run(None, feeds)))
        new_past = {present_to_past[k]: v for k, v in outs.items() if k in present_to_past}
        return outs["logits"], new_past

    logits, _ = step([0], empty_past(), 0)  # warm-up; also tells us the vocabulary size
    vocab = int(logits.shape[-1])
    rng = random.Random(a.seed)
    prompt = [rng.randrange(vocab) for _ in range(a.prompt)]
    gen = [rng.randrange(vocab) for _ in range(a.gen)]
    if a.prompt:
        step(prompt[:32], empty_past(), 0)
    progress(1, total)
    pp, ttft, tg = [], [], []
    for r in range(a.reps):
        if a.prompt:
            t0 = time.perf_counter()
            logits, _ = step(prompt, empty_past(), 0)
            t1 = time.perf_counter()
            int(np.argmax(logits[0, -1]))  # TTFT includes picking the first token
            t2 = time.perf_counter()
            pp.append(t1 - t0)
            ttft.append((t2 - t0) * 1e3)
        progress(2 + 2 * r, total)
        if a.gen:
            past = empty_past()
            t0 = time.perf_counter()
            for i, tok in enumerate(gen):
                _, past = step([tok], past, i)
            tg.append(time.perf_counter() - t0)
        progress(3 + 2 * r, total)
    return {"runtime": "onnxruntime", "runtime_version": f"onnxruntime {ort.__version__}",
            "build": ",".join(sess.get_providers()), "vocab": vocab, "load_ms": load_ms,
            "pp_seconds": pp, "tg_seconds": tg, "ttft_ms": ttft}


RUNTIMES = {"llamacpp": run_llamacpp, "onnxruntime": run_onnxruntime}


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runtime", choices=sorted(RUNTIMES))
    p.add_argument("model")
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--gen", type=int, default=128)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cores", default="", help="comma-separated CPU indices to pin to (Linux)")
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args(argv)
    try:
        if a.cores and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {int(c) for c in a.cores.split(",")})
        before = load_before()
        meter = LoadMeter()
        meter.start()
        res = RUNTIMES[a.runtime](a)
        during = meter.stop()  # model load included: a neighbour then also slows warm-up
    except Exception as e:  # one line back to the harness, which raises BenchError/RemoteError
        msg = f"{type(e).__name__}: {e}".replace("\n", " ")
        sys.stdout.write(f"@error {a.runtime} on {a.model}: {msg}\n")
        sys.stdout.flush()
        return 3
    res["load"] = {"cpus": len(meter.cpus), "before_other_cores": before, "during_other_cores": during}
    res.update(threads=a.threads, n_prompt=a.prompt, n_gen=a.gen, reps=a.reps,
               peak_rss_mb=peak_rss_mb(), file_bytes=os.path.getsize(a.model),
               host=socket.gethostname(), machine=platform.machine(), python=platform.python_version())
    sys.stdout.write("@result " + json.dumps(res) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
