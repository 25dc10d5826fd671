"""llama.cpp's own `llama-bench`: its argument list and its `-o jsonl` output (used on ssh devices
that have it on PATH and on adb devices, where it is the only runner).

Field names are llama-bench's (tools/llama-bench/llama-bench.cpp, `test::get_fields()`): one JSON
object per test and line; a pp test has n_prompt > 0 and n_gen == 0, a tg test the reverse;
`samples_ns` holds one wall time per repetition.
"""

from __future__ import annotations

import json
from typing import Any, Optional, Sequence

from edgeprune.base.errors import BenchError


def llama_bench_argv(binary: str, model: str, n_prompt: int, n_gen: int, reps: int, threads: int,
                     cpu_mask: Optional[str] = None) -> list[str]:
    """argv for one pp + one tg test, jsonl on stdout. `cpu_mask` ("0xf0") pins llama.cpp's
    threads to those cores strictly (-C / --cpu-strict)."""
    argv = [binary, "-m", model, "-p", str(n_prompt), "-n", str(n_gen), "-r", str(reps),
            "-t", str(threads), "-o", "jsonl"]
    if cpu_mask:
        argv += ["-C", cpu_mask, "--cpu-strict", "1"]
    return argv


def parse_jsonl(text: str) -> list[dict[str, Any]]:
    """The JSON objects in llama-bench's stdout (other lines — adb without shell v2 merges stderr
    into stdout — are skipped)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise BenchError(f"llama-bench printed a malformed jsonl line ({e}): {line[:120]}") from None
            except RecursionError:
                raise BenchError(f"llama-bench printed a jsonl line nested too deeply: {line[:60]}") from None
            if not isinstance(out[-1], dict):
                raise BenchError(f"llama-bench printed a jsonl line that is not an object: {line[:60]}")
    return out


def raw_from_jsonl(tests: Sequence[dict[str, Any]], where: str = "llama-bench") -> dict[str, Any]:
    """llama-bench test objects -> the raw-run dict runner_script.py prints (one schema)."""
    from edgeprune.runtime_bench.raw_check import check_count, check_seconds

    def n(t: dict[str, Any], key: str) -> int:
        return check_count(t.get(key, 0), key, where)

    pp = [t for t in tests if n(t, "n_prompt") > 0 and n(t, "n_gen") == 0]
    tg = [t for t in tests if n(t, "n_gen") > 0 and n(t, "n_prompt") == 0]
    if not pp and not tg:
        raise BenchError(f"{where}: no pp or tg result in llama-bench output ({len(tests)} JSON lines)")

    def seconds(t: dict[str, Any]) -> list[float]:
        field = "samples_ns" if t.get("samples_ns") else "avg_ns"
        ns = t.get("samples_ns") or [t.get("avg_ns")]
        if not isinstance(ns, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ns):
            raise BenchError(f"{where}: field {field} is {str(ns)[:60]!r}: not nanosecond numbers")
        try:
            secs = [float(x) / 1e9 for x in ns]
        except OverflowError:
            raise BenchError(f"{where}: field {field} holds a number past any float") from None
        return check_seconds(secs, f"{field} (as seconds)", where)

    first = (pp or tg)[0]
    pp_s = seconds(pp[0]) if pp else []
    return {
        "runtime": "llama.cpp",
        "runner": "llama-bench",
        "runtime_version": f"llama-bench build {first.get('build_number', '?')} ({first.get('build_commit', '?')})",
        "build": f"{first.get('cpu_info', '')}; backends={first.get('backends', '')}",
        "threads": check_count(first.get("n_threads", 0), "n_threads", where),
        "n_prompt": n(pp[0], "n_prompt") if pp else 0,
        "n_gen": n(tg[0], "n_gen") if tg else 0,
        "reps": len(seconds(first)),
        "pp_seconds": pp_s,
        "tg_seconds": seconds(tg[0]) if tg else [],
        # llama-bench does not sample: its prefill time is the TTFT up to the (negligible) argmax
        "ttft_ms": [s * 1e3 for s in pp_s],
        "load_ms": None,
        "peak_rss_mb": None,
        "n_ctx": (n(pp[0], "n_prompt") if pp else 0) + (n(tg[0], "n_gen") if tg else 0),  # llama-bench's own
        "llama_bench": {k: first.get(k) for k in ("model_type", "model_size", "model_n_params", "cpu_mask", "n_batch",
                                                  "n_ubatch", "type_k", "type_v", "flash_attn")},
    }
