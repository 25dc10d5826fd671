"""Run one argument list with a deadline, streaming the runner's `@progress` lines to a callback.

Used for the local runner subprocess, ssh and adb alike, so every target reports progress and
times out the same way. Never a shell: `argv` is executed directly.

The child starts its own process group (session), and a timeout kills the whole group: a
runner's own children and ssh's helpers die with it. A process that left the group (a daemon,
an ssh ControlPersist master) may still hold our pipes open; they are read only until
PIPE_GRACE seconds after the child ended, never to their end, so such a process cannot keep
the caller waiting.
"""

from __future__ import annotations

import collections
import logging
import os
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
PIPE_GRACE = 2.0  # seconds to drain the pipes after the child ended or was killed
OUTPUT_MAX = 64 << 20  # stdout kept: a runner prints a few KB; more is a broken program


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


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the child's process group (the child leads it: start_new_session)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # the group is gone already
        pass


class _StderrLines:
    """Splits stderr bytes into lines: `@progress` ones to the callback, the rest into a tail."""

    def __init__(self, on_progress: Optional[ProgressFn], tail: int):
        self.on_progress, self.tail, self.partial = on_progress, collections.deque(maxlen=tail), b""

    def feed(self, chunk: bytes) -> None:
        *lines, self.partial = (self.partial + chunk).split(b"\n")
        self.partial = self.partial[-65536:]  # a line without end cannot grow without bound
        for raw in lines:
            self.line(raw.decode(errors="replace"))

    def line(self, line: str) -> None:
        if line.startswith("@progress "):
            if self.on_progress is not None:
                try:
                    done, total = (int(x) for x in line.split()[1:3])
                    self.on_progress(done, total)
                except ValueError:
                    pass
        else:
            self.tail.append(line.rstrip("\r"))

    def close(self) -> list[str]:
        if self.partial:
            self.line(self.partial.decode(errors="replace"))
        return list(self.tail)


def run_streaming(argv: Sequence[str], timeout: float, on_progress: Optional[ProgressFn] = None,
                  tail: int = 20) -> Completed:
    """Run argv; kill its process group after `timeout` seconds. FileNotFoundError propagates
    (missing binary)."""
    argv = [str(a) for a in argv]
    log.debug("run: %s", argv)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    out, err = bytearray(), _StderrLines(on_progress, tail)
    deadline, ended_at, timed_out = time.monotonic() + timeout, None, False
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    sel.register(proc.stderr, selectors.EVENT_READ)
    try:
        while sel.get_map():
            now = time.monotonic()
            if ended_at is None and not timed_out and now >= deadline:
                timed_out = True
                kill_group(proc)
            if ended_at is None and proc.poll() is not None:
                ended_at = now
            if ended_at is not None and now - ended_at > PIPE_GRACE:
                kill_group(proc)  # what is left of the group; a holder outside it is not waited for
                break
            for key, _ in sel.select(timeout=0.2):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                elif key.fileobj is proc.stdout:
                    out += chunk[:max(0, OUTPUT_MAX - len(out))]
                else:
                    err.feed(chunk)
        if not timed_out and proc.poll() is None:  # pipes closed early, the child still runs
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        sel.close()
        if proc.poll() is None:
            kill_group(proc)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):  # closed here, not by the GC (ResourceWarning)
            pipe.close()
    return Completed(argv, proc.returncode, out.decode(errors="replace"), err.close(), timed_out)
