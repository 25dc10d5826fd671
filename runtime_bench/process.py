"""Run one argument list with a deadline, streaming the runner's `@progress` lines to a callback.

Used for the local runner subprocess, ssh and adb alike, so every target reports progress and
times out the same way. Never a shell: `argv` is executed directly.
"""

from __future__ import annotations

import collections
import logging
import subprocess
import threading
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr_tail: list[str]  # last stderr lines (progress lines removed)
    timed_out: bool

    def last_error_line(self) -> str:
        for line in reversed(self.stderr_tail):
            if line.strip():
                return line.strip()
        return f"exit code {self.returncode}"


def run_streaming(argv: Sequence[str], timeout: float, on_progress: Optional[ProgressFn] = None,
                  tail: int = 20) -> Completed:
    """Run argv; kill it after `timeout` seconds. FileNotFoundError propagates (missing binary)."""
    argv = [str(a) for a in argv]
    log.debug("run: %s", argv)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")
    out_chunks: list[str] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    err: collections.deque[str] = collections.deque(maxlen=tail)
    try:
        for line in proc.stderr:
            if line.startswith("@progress ") and on_progress is not None:
                try:
                    done, total = (int(x) for x in line.split()[1:3])
                    on_progress(done, total)
                except ValueError:
                    pass
            elif not line.startswith("@progress "):
                err.append(line.rstrip("\n"))
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
        for pipe in (proc.stdout, proc.stderr):  # closed here, not by the GC (ResourceWarning)
            if pipe is not None:
                pipe.close()
    return Completed(argv, proc.returncode, "".join(out_chunks), list(err), timed_out.is_set())
