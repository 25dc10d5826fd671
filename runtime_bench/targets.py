"""Where a measurement runs. A target turns (runtime, model file, test sizes) into a raw-run dict
(runner_script.py's output shape); the harness adds the device, the roofline and the schema.

Targets are a registry keyed by the profile's access kind: `local` (a subprocess of this Python),
`ssh` (runtime_bench/ssh.py) and `adb` (runtime_bench/adb.py).
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol

from edgeprune.base.errors import BenchError
from edgeprune.runtime_bench.process import Completed, ProgressFn, run_streaming

RUNNER_SCRIPT = Path(__file__).resolve().with_name("runner_script.py")


@dataclass(frozen=True)
class Job:
    """One measurement request."""

    runtime: str  # "llamacpp" | "onnxruntime" (runner_script.RUNTIMES)
    model: Path  # local path of the artifact
    n_prompt: int
    n_gen: int
    reps: int
    threads: int
    cores: tuple[int, ...] = ()  # pin to these CPUs ("" = no pinning)
    side_files: tuple[Path, ...] = ()  # files the model needs beside it (ONNX external data)

    @property
    def files(self) -> list[Path]:
        return [self.model, *self.side_files]

    def runner_args(self, model_path: str) -> list[str]:
        args = [self.runtime, model_path, "--prompt", str(self.n_prompt), "--gen", str(self.n_gen),
                "--reps", str(self.reps), "--threads", str(self.threads)]
        if self.cores:
            args += ["--cores", ",".join(map(str, self.cores))]
        return args


class Target(Protocol):
    kind: str  # access kind: "local" | "ssh" | "adb"

    @property
    def label(self) -> str: ...  # host name shown in records

    def measure(self, job: Job, on_progress: Optional[ProgressFn] = None) -> dict[str, Any]: ...


def parse_runner_output(done: Completed, where: str, error_cls: type = BenchError) -> dict[str, Any]:
    """runner_script.py's `@result {json}` line, or its `@error` line raised as `error_cls`."""
    for line in done.stdout.splitlines():
        if line.startswith("@result "):
            try:
                raw = json.loads(line[len("@result "):])
            except (ValueError, RecursionError) as e:
                raise error_cls(f"{where}: the runner printed an unreadable result ({str(e)[:80]})") from None
            if not isinstance(raw, dict):
                raise error_cls(f"{where}: the runner's result is a JSON {type(raw).__name__}, not an object")
            return raw
    for line in done.stdout.splitlines():
        if line.startswith("@error "):
            raise error_cls(f"{where}: {line[len('@error '):]}")
    if done.timed_out:
        raise error_cls(f"{where}: runner timed out")
    raise error_cls(f"{where}: runner failed ({done.last_error_line()})")


@dataclass
class LocalTarget:
    """Runs runner_script.py in a subprocess of this interpreter (crashes and RSS isolated)."""

    python: str = sys.executable
    timeout: float = 3600.0
    kind: str = "local"

    @property
    def label(self) -> str:
        return socket.gethostname()

    def measure(self, job: Job, on_progress: Optional[ProgressFn] = None) -> dict[str, Any]:
        argv = [self.python, str(RUNNER_SCRIPT), *job.runner_args(str(job.model))]
        done = run_streaming(argv, self.timeout, on_progress)
        raw = parse_runner_output(done, f"{job.runtime} on {job.model.name}")
        raw["runner"] = {"llamacpp": "llama-cpp-python", "onnxruntime": "onnxruntime-python"}[job.runtime]
        return raw
