"""Every child is bounded: a timeout ends the child's whole process group, and a process that
holds our pipes after the child ended (a daemon, an ssh ControlPersist master) keeps nobody
waiting. Rows run `edgeprune bench` against a fake ssh device (tests/reliability/fake_device.py)
whose llama-bench misbehaves; each must end within the subprocess limit with one line, exit 2,
and leave no process of the group alive."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import one_line_exit_2
from .fake_device import fake_device

# (row id, llama-bench's body: $PIDS is a file each spawned process writes its pid to, the
# message the one line carries)
ROWS = [
    ("grandchild holds the pipes", 'sleep 300 & echo $! >> "$PIDS"\nexec sleep 300', "llama-bench timed out after 3 s"),
    ("grandchild ignores TERM", "sh -c 'trap \"\" TERM; echo $$ >> \"$PIDS\"; exec sleep 300' &\nwait",
     "llama-bench timed out after 3 s"),
    # a process that left the group keeps stdout open; the child exits at once (after printing nothing)
    ("daemon keeps the pipes, child exits", f"{sys.executable} -c 'import os,time; os.setsid(); "
     "open(os.environ[\"PIDS\"], \"a\").write(str(os.getpid()) + \"\\n\"); time.sleep(300)' &\nexit 0",
     "no pp or tg result"),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_bench_timeout_ends_the_group(world_gguf, tmp_path, row):
    _, body, needle = row
    env, flags = fake_device(tmp_path, body)
    env["PIDS"] = str(tmp_path / "pids")
    try:
        # the limit is generous (the run should take ~3-5 s); a hang fails as TimeoutExpired
        r = subprocess.run([sys.executable, "-m", "edgeprune.cli", "bench", str(world_gguf), *flags, "--timeout", "3"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        line = one_line_exit_2(r.returncode, r.stderr)
        assert needle in line, line
    finally:
        pids = [int(p) for p in (tmp_path / "pids").read_text().split()] if (tmp_path / "pids").exists() else []
        left = [p for p in pids if _alive(p)]
        for p in left:  # the daemon row's holder left the group by design: ours to end
            os.kill(p, 9)
    assert pids
    in_group = [p for p in left if "daemon" not in row[0]]
    assert not in_group, f"processes of the killed group still alive: {in_group}"
