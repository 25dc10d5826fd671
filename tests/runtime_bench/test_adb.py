"""adb target: argument lists and parsing of recorded llama-bench jsonl (no phone in CI).

The jsonl in data/ was written by hand in llama-bench's `-o jsonl` schema (field names from
tools/llama-bench/llama-bench.cpp) with plausible Snapdragon 8 Gen 3 figures; it is not a capture
from a real device. The flow test drives AdbTarget against a fake `adb` on PATH that logs its argv
and replays that file — it checks our command sequence, not a phone.
"""

from __future__ import annotations

import json
import os
import shlex
import stat
from pathlib import Path

import pytest

from edgeprune.devices import load_device
from edgeprune.base.errors import BenchError, RemoteError
from edgeprune.runtime_bench.adb import AdbTarget
from edgeprune.runtime_bench.harness import make_target, record_from_raw
from edgeprune.runtime_bench.llama_bench import llama_bench_argv, parse_jsonl, raw_from_jsonl
from edgeprune.devices.predict import predict
from edgeprune.runtime_bench.targets import Job
from edgeprune.shape.arch_presets import preset_spec

RECORDED = Path(__file__).parent / "data" / "llama_bench_sd8g3_smollm135m_q4_0.jsonl"


def test_llama_bench_argv():
    assert llama_bench_argv("llama-bench", "m.gguf", 512, 128, 5, 6, "0xfc") == [
        "llama-bench", "-m", "m.gguf", "-p", "512", "-n", "128", "-r", "5", "-t", "6", "-o", "jsonl",
        "-C", "0xfc", "--cpu-strict", "1"]
    assert "-C" not in llama_bench_argv("llama-bench", "m.gguf", 512, 128, 5, 4, None)


def test_adb_argument_lists_pin_big_cores():
    prof = load_device("snapdragon-8-gen-3")
    t = make_target(prof, serial="R5CX12345")
    assert isinstance(t, AdbTarget) and t.cores == (2, 3, 4, 5, 6, 7)
    job = Job("llamacpp", Path("m.gguf"), 512, 128, 5, 6, prof.cores)
    argv = t.bench_argv("/data/local/tmp/edgeprune/run-1/m.gguf", job)
    assert argv[:4] == ["adb", "-s", "R5CX12345", "shell"] and len(argv) == 5
    remote = shlex.split(argv[4])  # what the device shell will execute
    assert remote == ["taskset", "fc", "/data/local/tmp/llama-bench", "-m", "/data/local/tmp/edgeprune/run-1/m.gguf",
                      "-p", "512", "-n", "128", "-r", "5", "-t", "6", "-o", "jsonl", "-C", "0xfc",
                      "--cpu-strict", "1"]
    assert t.push_argv("a b.gguf", "/data/local/tmp/x/a b.gguf") == [
        "adb", "-s", "R5CX12345", "push", "--", str(Path("a b.gguf").resolve()), "/data/local/tmp/x/a b.gguf"]
    # a hostile file name stays one argument on the device
    hostile = t.shell_argv(["rm", "-rf", "/data/local/tmp/x; reboot"])
    assert shlex.split(hostile[-1]) == ["rm", "-rf", "/data/local/tmp/x; reboot"]
    g3 = make_target(load_device("tensor-g3"))
    assert g3.adb_argv("get-state") == ["adb", "get-state"]  # no serial: the only device


def test_parse_recorded_llama_bench_jsonl():
    text = "llama_model_loader: loaded meta data\n" + RECORDED.read_text()  # adb may merge stderr
    tests = parse_jsonl(text)
    assert len(tests) == 2
    raw = raw_from_jsonl(tests)
    assert raw["n_prompt"] == 512 and raw["n_gen"] == 128 and raw["reps"] == 5 and raw["threads"] == 6
    assert raw["runner"] == "llama-bench" and "6512" in raw["runtime_version"]
    pp_expected = json.loads(RECORDED.read_text().splitlines()[0])
    assert raw["pp_seconds"] == [ns / 1e9 for ns in pp_expected["samples_ns"]]
    # the schema's mean of per-rep tokens/s equals llama-bench's own avg_ts
    prof = load_device("snapdragon-8-gen-3")
    gguf = RECORDED.with_suffix(".gguf")  # record_from_raw needs a file for the size
    try:
        gguf.write_bytes(b"\0" * 1024)
        rec = record_from_raw(raw, gguf, prof, "adb", "adb:R5CX", predict(preset_spec("smollm-135m"), prof, "Q4_0"),
                              "Q4_0")
    finally:
        gguf.unlink()
    tg_expected = json.loads(RECORDED.read_text().splitlines()[1])
    assert rec.pp_tps_mean == pytest.approx(pp_expected["avg_ts"], rel=1e-6)
    assert rec.tg_tps_mean == pytest.approx(tg_expected["avg_ts"], rel=1e-6)
    assert rec.tg_tps_std == pytest.approx(tg_expected["stddev_ts"], rel=1e-5)
    assert rec.load_ms is None and rec.peak_rss_mb is None and rec.ttft_ms > 0
    assert 0 < rec.roofline["efficiency_fitted"] < 1


def test_malformed_jsonl_is_one_line_error():
    with pytest.raises(BenchError, match="malformed"):
        parse_jsonl('{"n_prompt": 512,\n')
    with pytest.raises(BenchError, match="no pp or tg"):
        raw_from_jsonl([{"n_prompt": 0, "n_gen": 0}])


def _fake_adb(bin_dir: Path, log: Path) -> None:
    """An `adb` that logs argv and replays the recorded llama-bench output for the bench command."""
    script = bin_dir / "adb"
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> {shlex.quote(str(log))}
case "$*" in
  *get-state*) echo device ;;
  *llama-bench*) cat {shlex.quote(str(RECORDED))} ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_adb_flow_against_fake_adb(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "adb.log"
    _fake_adb(bin_dir, log)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    model = tmp_path / "smollm.Q4_0.gguf"
    model.write_bytes(b"\0" * 64)
    t = AdbTarget(serial="S1", cores=(4, 5, 6, 7))
    raw = t.measure(Job("llamacpp", model, 512, 128, 5, 4, (4, 5, 6, 7)))
    assert raw["tg_seconds"] and raw["pp_seconds"]
    calls = log.read_text().splitlines()
    assert calls[0] == "-s S1 get-state"
    assert calls[1].startswith("-s S1 shell mkdir -p -- /data/local/tmp/edgeprune/run-")
    assert calls[2].startswith("-s S1 push ") and calls[2].endswith("/smollm.Q4_0.gguf")
    assert " shell taskset f0 /data/local/tmp/llama-bench -m " in calls[3] and "-C 0xf0" in calls[3]
    assert calls[4].startswith("-s S1 shell rm -rf -- /data/local/tmp/edgeprune/run-")  # cleaned up
    with pytest.raises(RemoteError, match="only GGUF"):
        t.measure(Job("onnxruntime", model, 8, 8, 1, 1))


def test_missing_adb_binary_is_remote_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RemoteError, match="adb not found"):
        AdbTarget().measure(Job("llamacpp", tmp_path / "m.gguf", 8, 8, 1, 1))
