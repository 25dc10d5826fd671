"""Peak RSS is the runner's own, not its parent's (ru_maxrss survives exec on Linux)."""

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER_DIR = Path(__file__).resolve().parents[2] / "runtime_bench"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_runner_peak_rss_ignores_a_large_parent():
    ballast = bytearray(400 * 2**20)  # the parent holds 400 MiB, touched
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    code = f"import sys; sys.path.insert(0, {str(RUNNER_DIR)!r}); import runner_script as r; print(r.peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 1 < float(out.stdout) < 200
    del ballast
