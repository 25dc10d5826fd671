"""SSH targets (Raspberry Pi, laptops) through OpenSSH: copy, run, parse, clean up.

Flow for one job: make a fresh run directory under the profile's remote_dir; copy the model and
runner_script.py there (rsync when both ends have it, else scp); run llama.cpp's `llama-bench -o
jsonl` when the device has it on PATH (GGUF only), else our self-contained Python runner with the
device's interpreter (`--remote-python`); parse; remove the run directory, also on failure.

Every command is an argument list. The remote side of ssh is a shell, so the one command string ssh
sends is `shlex.join(argv)`: each user value reaches the remote program as exactly one argument.
The preflight is a fixed `sh -c` script that receives user values as positional parameters, never
spliced into the script text. ssh runs with BatchMode=yes (never prompts), a ConnectTimeout, and
StrictHostKeyChecking=accept-new (or =yes with a given known_hosts file).

Local values never become options: host, user, port, paths and program names are checked strictly
(remote_values.py: a `--host=-Fevil.cfg` would make ssh read a config whose ProxyCommand runs here),
the destination comes after `--`, and local files are passed as absolute paths (scp and rsync read
`a:b` as a remote path).
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
from edgeprune.devices.remote_values import (check_host, check_local_file, check_port, check_program,
                                                   check_remote_path, check_user)
from edgeprune.runtime_bench.targets import RUNNER_SCRIPT, Job, parse_runner_output

# Preflight: make the run dir, report which tools exist. Values arrive as $1 $2 $3 (never spliced).
_PREFLIGHT = ('mkdir -p -- "$1" && printf "rsync=%s\\n" "$(command -v rsync)" && '
              'printf "llama_bench=%s\\n" "$(command -v -- "$2")" && '
              'printf "python=%s\\n" "$(command -v -- "$3")"')
SSH_FAILED = 255  # ssh's own exit status when the connection / authentication fails


def split_destination(dest: str) -> tuple[str, str]:
    """'user@host' -> ('user', 'host'); 'host' -> ('', 'host')."""
    user, _, host = dest.rpartition("@")
    return user, host


@dataclass
class SshTarget:
    host: str
    remote_dir: str
    user: str = ""
    port: int = 22
    key: str = ""  # private key (ssh -i)
    known_hosts: str = ""  # UserKnownHostsFile; "" = accept-new into ~/.ssh/known_hosts
    python: str = "python3"  # interpreter on the device
    llama_bench: str = "llama-bench"
    cores: tuple[int, ...] = ()  # pin llama-bench (-C mask) / the Python runner to these CPUs
    connect_timeout: int = 10  # seconds for TCP connect + auth
    timeout: float = 3600.0  # seconds for a whole measurement
    use_llama_bench: bool = True  # prefer llama-bench for GGUF when the device has it
    use_rsync: bool = True  # copy with rsync when both ends have it (else scp)
    kind: str = "ssh"

    def __post_init__(self) -> None:
        check_host(self.host)
        check_user(self.user)
        check_remote_path(self.remote_dir)
        check_port(self.port)
        check_program(self.python, "remote python")
        check_program(self.llama_bench, "llama_bench")
        check_local_file(self.key, "ssh key")
        check_local_file(self.known_hosts, "known_hosts file")

    # ----- argument lists ---------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.destination

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def common_options(self) -> list[str]:
        """-o options shared by ssh, scp and rsync's ssh."""
        # ControlMaster=no: a master the user's config would start (ControlPersist) outlives our
        # process group and holds our pipes; an existing master is still used.
        opts = ["-o", "BatchMode=yes", "-o", "ControlMaster=no", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        else:
            opts += ["-o", "StrictHostKeyChecking=accept-new"]
        if self.key:
            opts += ["-i", self.key, "-o", "IdentitiesOnly=yes"]
        return opts

    def ssh_argv(self, remote_argv: list[str]) -> list[str]:
        """ssh argv running `remote_argv` on the device; the remote shell sees it shlex-quoted."""
        # `--` before the destination: nothing after it is read as an ssh option (OpenSSH then
        # takes the next word as the destination and the rest as the command, never re-parsing
        # options after it; a second `--` would reach the remote shell as part of the command)
        return ["ssh", *self.common_options(), "-p", str(self.port), "--", self.destination,
                shlex.join(remote_argv)]

    def copy_argv(self, local_files: list[str], remote_dir: str, rsync: bool) -> list[str]:
        check_remote_path(remote_dir)
        dest = f"{self.destination}:{remote_dir}/"
        # absolute local paths: scp / rsync read `name:with:colons` as a remote location
        local_files = [str(Path(f).resolve()) for f in local_files]
        if rsync:
            rsh = shlex.join(["ssh", *self.common_options(), "-p", str(self.port)])
            return ["rsync", "-a", "--partial", "-e", rsh, "--", *local_files, dest]
        return ["scp", "-q", *self.common_options(), "-P", str(self.port), "--", *local_files, dest]

    # ----- running ----------------------------------------------------------------------------

    def _run(self, argv: list[str], what: str, timeout: Optional[float] = None,
             on_progress: Optional[ProgressFn] = None) -> Completed:
        try:
            done = run_streaming(argv, timeout or self.connect_timeout + 30, on_progress)
        except FileNotFoundError:
            raise RemoteError(f"{argv[0]} not found on this machine: install openssh-client"
                              f"{' and rsync' if argv[0] == 'rsync' else ''}") from None
        if done.timed_out:
            raise RemoteError(f"ssh {self.destination} port {self.port}: {what} timed out after "
                              f"{timeout or self.connect_timeout + 30:.0f} s")
        if done.returncode == SSH_FAILED or (done.returncode and argv[0] in ("scp", "rsync")):
            raise RemoteError(f"ssh {self.destination} port {self.port}: {what} failed: "
                              f"{done.last_error_line()}")
        return done

    def preflight(self, run_dir: str) -> dict[str, str]:
        done = self._run(self.ssh_argv(["sh", "-c", _PREFLIGHT, "sh", run_dir, self.llama_bench, self.python]),
                         "preflight")
        if done.returncode:
            raise RemoteError(f"ssh {self.destination}: cannot create {run_dir}: {done.last_error_line()}")
        found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
        return {k: v.strip() for k, v in found.items()}

    def measure(self, job: Job, on_progress: Optional[ProgressFn] = None) -> dict[str, Any]:
        run_dir = str(PurePosixPath(self.remote_dir) / f"run-{uuid.uuid4().hex[:12]}")
        tools = self.preflight(run_dir)
        try:
            use_bench = self.use_llama_bench and job.runtime == "llamacpp" and bool(tools.get("llama_bench"))
            if not use_bench and not tools.get("python"):
                raise RemoteError(f"ssh {self.destination}: neither llama-bench nor {self.python!r} found "
                                  "on the device: install llama.cpp or Python with llama-cpp-python / "
                                  "onnxruntime, or pass --remote-python")
            files = [str(f) for f in job.files] + ([] if use_bench else [str(RUNNER_SCRIPT)])
            rsync = self.use_rsync and bool(tools.get("rsync")) and shutil.which("rsync") is not None
            self._run(self.copy_argv(files, run_dir, rsync), "copy", timeout=self.timeout)
            remote_model = f"{run_dir}/{job.model.name}"
            where = f"{job.runtime} on {self.destination}"
            if use_bench:
                mask = hex(sum(1 << c for c in job.cores)) if job.cores else None
                argv = llama_bench_argv(self.llama_bench, remote_model, job.n_prompt, job.n_gen, job.reps,
                                        job.threads, mask)
                done = self._run(self.ssh_argv(argv), "llama-bench", timeout=self.timeout)
                if done.returncode:
                    raise RemoteError(f"{where}: llama-bench failed: {done.last_error_line()}")
                return raw_from_jsonl(parse_jsonl(done.stdout), where)
            argv = [self.python, f"{run_dir}/{RUNNER_SCRIPT.name}", *job.runner_args(remote_model)]
            done = self._run(self.ssh_argv(argv), "runner", timeout=self.timeout, on_progress=on_progress)
            raw = parse_runner_output(done, where, RemoteError)
            raw["runner"] = {"llamacpp": "llama-cpp-python", "onnxruntime": "onnxruntime-python"}[job.runtime]
            return raw
        finally:
            self.cleanup(run_dir)

    def cleanup(self, run_dir: str) -> None:
        try:
            run_streaming(self.ssh_argv(["rm", "-rf", "--", run_dir]), self.connect_timeout + 30)
        except (OSError, RemoteError):  # best effort: the measurement's own error matters more
            pass
