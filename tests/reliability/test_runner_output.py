"""A device's benchmark output is data from another program: NaN, inf, zero or 1e300 times,
strings, missing fields, a huge integer or deep nesting in llama-bench's jsonl reach `bench`
through a fake ssh device (tests/reliability/fake_device.py) and each is one line naming the
field, exit 2 — never a traceback, never "0.0 t/s"."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import one_line_exit_2
from .fake_device import fake_device


def _line(**over):
    base = {"build_commit": "x", "build_number": 1, "n_threads": 4, "n_prompt": 8, "n_gen": 0,
            "samples_ns": [2_000_000], "avg_ns": 2_000_000}
    return {**base, **over}


def _tg(**over):
    return _line(**{"n_prompt": 0, "n_gen": 4, **over})


# (row id, the jsonl text llama-bench prints, what the line names)
ROWS = [
    ("NaN time", [_line(samples_ns=[float("nan")]), _tg()], "samples_ns"),
    ("inf time", [_line(), _tg(samples_ns=[float("inf")])], "samples_ns"),
    ("zero time", [_line(samples_ns=[0]), _tg()], "samples_ns"),
    ("1e300 time", [_line(), _tg(samples_ns=[1e300])], "samples_ns"),
    ("huge integer time", [_line(samples_ns=[10 ** 400]), _tg()], "samples_ns"),
    ("string time", [_line(samples_ns=["fast"]), _tg()], "samples_ns"),
    ("string count", [_line(n_prompt="eight"), _tg()], "n_prompt"),
    ("negative count", [_line(), _tg(n_gen=-4)], "n_gen"),
    ("no times at all", [_line(samples_ns=None, avg_ns=None), _tg()], "avg_ns"),
    ("no counts", [{"build_commit": "x", "samples_ns": [1]}], "no pp or tg result"),
    ("threads a string", [_line(n_threads="all"), _tg()], "n_threads"),
    ("not an object", "[1, 2]\n{}", None),  # a list line is not llama-bench's: skipped, then nothing found
    ("deep nesting", "{\"a\":" * 100_000 + "1" + "}" * 100_000 + "\n", "nested too deeply"),
]


def _text(lines) -> str:
    if isinstance(lines, str):
        return lines
    return "".join(json.dumps(x) + "\n" for x in lines)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_hostile_llama_bench_output(world_gguf, tmp_path, row):
    _, lines, needle = row
    (tmp_path / "out.jsonl").write_text(_text(lines))
    env, flags = fake_device(tmp_path, f'cat "{tmp_path / "out.jsonl"}"\n')
    r = subprocess.run([sys.executable, "-m", "edgeprune.cli", "bench", str(world_gguf), *flags],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    line = one_line_exit_2(r.returncode, r.stderr)
    assert needle is None or needle in line, line
    assert "t/s" not in r.stdout


def _raw(**over):
    base = {"runtime": "llama.cpp", "threads": 4, "n_prompt": 8, "n_gen": 4, "reps": 1, "pp_seconds": [0.01],
            "tg_seconds": [0.01], "ttft_ms": [10.0], "load_ms": 5.0, "peak_rss_mb": 40.0, "n_ctx": 12}
    return {**base, **over}


# our own runner's result (runner_script.py on the device, `--no-llama-bench`), as a broken one prints it
RUNNER_ROWS = [
    ("NaN seconds", _raw(pp_seconds=[float("nan")]), "pp_seconds"),
    ("1e300 seconds", _raw(tg_seconds=[1e300]), "tg_seconds"),
    ("zero reps", _raw(reps=0), "reps"),
    ("reps a string", _raw(reps="five"), "reps"),
    ("missing times", _raw(tg_seconds=None), "tg_seconds"),
    ("inf memory", _raw(peak_rss_mb=float("inf")), "peak_rss_mb"),
    ("a list, not an object", [1, 2], "not an object"),
]


@pytest.mark.parametrize("row", RUNNER_ROWS, ids=[r[0] for r in RUNNER_ROWS])
def test_hostile_runner_result(world_gguf, tmp_path, row):
    _, raw, needle = row
    (tmp_path / "result.txt").write_text("@result " + json.dumps(raw) + "\n")
    env, flags = fake_device(tmp_path, "exit 1\n")
    fake_py = tmp_path / "fakebin" / "fakepy"
    fake_py.write_text(f'#!/bin/sh\ncat "{tmp_path / "result.txt"}"\n')
    fake_py.chmod(0o755)
    r = subprocess.run([sys.executable, "-m", "edgeprune.cli", "bench", str(world_gguf), *flags, "--no-llama-bench",
                        "--remote-python", "fakepy"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    line = one_line_exit_2(r.returncode, r.stderr)
    assert needle in line, line


# ship benches a reachable ssh device in its bench stage: the same output reaches it there
SHIP_ROWS = [r for r in ROWS if r[0] in ("NaN time", "1e300 time", "string count", "no counts", "deep nesting")]


@pytest.fixture(scope="module")
def ship_device(tmp_path_factory, world):
    """A work folder shared by the rows (every stage before bench is done once and then up to date)
    and a device profile of the fake ssh device whose llama-bench prints `out.jsonl`."""
    from edgeprune.devices import DEVICES

    root = tmp_path_factory.mktemp("ship-bench")
    env, _flags = fake_device(root, f'cat "{root / "out.jsonl"}"\n')
    text = DEVICES["raspberry-pi-5"].read_text().replace('name = "raspberry-pi-5"', 'name = "fake-pi"')
    text = text.replace('host = "raspberrypi.local"', 'host = "fake-device"').replace('user = "pi"', 'user = "tester"')
    text = text.replace('remote_dir = "/tmp/edgeprune-bench"', f'remote_dir = "{root / "remote"}"')
    (root / "fake-pi.toml").write_text(text)
    return root, env


@pytest.mark.parametrize("row", SHIP_ROWS, ids=[r[0] for r in SHIP_ROWS])
def test_hostile_llama_bench_output_through_ship(world, ship_device, row):
    root, env = ship_device
    _, lines, needle = row
    (root / "out.jsonl").write_text(_text(lines))
    env = dict(env, EDGEPRUNE_CACHE=str(root / "cache"))
    r = subprocess.run([sys.executable, "-m", "edgeprune.cli", "ship", str(world["model"]), "--data", str(world["data"]),
                        "--method", "uniform", "--ratio", "0.3", "--recover-tokens", "0", "--calib-samples", "4",
                        "--calib-len", "32", "--eval-tokens", "2000", "--formats", "gguf", "--quant", "Q8_0",
                        "--bench-prompt", "8", "--bench-gen", "4", "--bench-reps", "1", "--devices",
                        str(root / "fake-pi.toml"), "--out", str(root / "dist"), "--no-progress"],
                       env=env, cwd=root, capture_output=True, text=True, timeout=600)
    stages = "\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("["))  # ship's stage lines
    line = one_line_exit_2(r.returncode, stages)
    assert needle is None or needle in line, line
    assert "[bench] running" in r.stderr and not (root / "dist" / "report.md").exists()
