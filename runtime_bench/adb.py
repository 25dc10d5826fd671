"""Android targets over adb: push the GGUF to /data/local/tmp, run llama.cpp's `llama-bench`
pinned to the big cores, parse its jsonl, clean up.

Pinning: `taskset MASK` (toybox, hex mask without 0x) from the profile's `cores`, plus llama-bench's
own `-C 0xMASK --cpu-strict 1` so its worker threads stay there too. The llama-bench binary must
already be on the device (profile `access.llama_bench`, e.g. an Android NDK build of llama.cpp
pushed to /data/local/tmp). Only GGUF runs on adb (no Python on a stock phone).

No phone is attached in CI: tests check the argument lists and parse recorded llama-bench output
(tests/runtime_bench/data/); the real device path is exercised only by users with a phone.
"""

from __future__ import annotations

import shlex
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from edgeprune.base.errors import RemoteError
from edgeprune.runtime_bench.llama_bench import llama_bench_argv, parse_jsonl, raw_from_jsonl
from edgeprune.runtime_bench.process import Completed, ProgressFn, run_streaming
from edgeprune.devices.remote_values import check_program, check_remote_path, check_serial
from edgeprune.runtime_bench.targets import Job


@dataclass
class AdbTarget:
    serial: str = ""  # adb -s SERIAL ("" = the only attached device)
    remote_dir: str = "/data/local/tmp/edgeprune"
    llama_bench: str = "/data/local/tmp/llama-bench"
    cores: tuple[int, ...] = ()  # big cores to pin to
    timeout: float = 3600.0
    command_timeout: float = 60.0  # adb housekeeping commands (get-state, mkdir, rm)
    kind: str = "adb"

    def __post_init__(self) -> None:
        # adb has no `--` before its global options: a serial like `-H evil` must never get here
        check_serial(self.serial)
        check_remote_path(self.remote_dir)
        check_program(self.llama_bench, "llama_bench")

    @property
    def label(self) -> str:
        return f"adb:{self.serial or 'default'}"

    def adb_argv(self, *args: str) -> list[str]:
        return ["adb", *(["-s", self.serial] if self.serial else []), *args]

    def shell_argv(self, remote_argv: list[str]) -> list[str]:
        """`adb shell` runs one command line through the device shell: quote every value."""
        return self.adb_argv("shell", shlex.join(remote_argv))

    def push_argv(self, local: str, remote: str) -> list[str]:
        # `--` ends adb push's options; an absolute local path cannot look like one either
        return self.adb_argv("push", "--", str(Path(local).resolve()), remote)

    def bench_argv(self, remote_model: str, job: Job) -> list[str]:
        cores = job.cores or self.cores
        mask = sum(1 << c for c in cores) if cores else 0
        argv = llama_bench_argv(self.llama_bench, remote_model, job.n_prompt, job.n_gen, job.reps, job.threads,
                                hex(mask) if mask else None)
        if mask:
            argv = ["taskset", format(mask, "x"), *argv]
        return self.shell_argv(argv)

    def _run(self, argv: list[str], what: str, timeout: float,
             on_progress: Optional[ProgressFn] = None) -> Completed:
        if shutil.which(argv[0]) is None:
            raise RemoteError("adb not found on this machine: install Android platform-tools")
        done = run_streaming(argv, timeout, on_progress)
        if done.timed_out:
            raise RemoteError(f"{self.label}: {what} timed out after {timeout:.0f} s")
        if done.returncode:
            raise RemoteError(f"{self.label}: {what} failed: {done.last_error_line()}")
        return done

    def measure(self, job: Job, on_progress: Optional[ProgressFn] = None) -> dict[str, Any]:
        if job.runtime != "llamacpp":
            raise RemoteError(f"{self.label}: only GGUF (llama-bench) runs over adb, not {job.runtime}")
        state = self._run(self.adb_argv("get-state"), "get-state", self.command_timeout).stdout.strip()
        if state != "device":
            raise RemoteError(f"{self.label}: device state is {state!r}, expected 'device' (authorise USB debugging)")
        run_dir = str(PurePosixPath(self.remote_dir) / f"run-{uuid.uuid4().hex[:12]}")
        self._run(self.shell_argv(["mkdir", "-p", "--", run_dir]), "mkdir", self.command_timeout)
        try:
            remote_model = f"{run_dir}/{job.model.name}"
            self._run(self.push_argv(str(job.model), remote_model), "push", self.timeout)
            done = self._run(self.bench_argv(remote_model, job), "llama-bench", self.timeout)
            return raw_from_jsonl(parse_jsonl(done.stdout), f"llama-bench on {self.label}")
        finally:
            try:
                run_streaming(self.shell_argv(["rm", "-rf", "--", run_dir]), self.command_timeout)
            except OSError:
                pass
