"""A fake ssh device on this machine: `ssh`, `scp` and `rsync` shims on PATH that run the remote command
with the local shell and copy files locally, and a `llama-bench` whose behaviour a test writes.
What the harness does (preflight, copy, llama-bench, cleanup) runs for real; only the wire is
replaced, so a hostile device's output reaches `edgeprune bench` exactly as a real one's would."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SSH = """#!/bin/sh
# skip options up to `--`, then the destination; the remote command is one shell string
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift 2
exec sh -c "$1"
"""
# scp and rsync copy the same way here: files after `--`, the last word is host:dir/
COPY = """#!/bin/sh
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done
shift
for last; do :; done
dest="${last#*:}"
while [ "$#" -gt 1 ]; do cp -- "$1" "$dest"; shift; done
"""


def fake_device(root: Path, llama_bench: str) -> tuple[dict[str, str], list[str]]:
    """(env, the bench flags) for a device whose llama-bench is the shell script `llama_bench`."""
    bin_dir = root / "fakebin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("ssh", SSH), ("scp", COPY), ("rsync", COPY), ("llama-bench", "#!/bin/sh\n" + llama_bench)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    # the shims come first on PATH, so whichever copier the harness picks (rsync where this machine
    # has one, else scp) is a shim; the rest of PATH stays, the shims need sh and cp from it
    path = ":".join([str(bin_dir), os.environ["PATH"], str(Path(sys.executable).parent)])
    env = dict(os.environ, PATH=path, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    flags = ["--device", "raspberry-pi-5", "--host", "tester@fake-device", "--remote-dir", str(root / "remote"),
             "--connect-timeout", "2", "--reps", "1", "--prompt", "8", "--gen", "4", "--no-progress"]
    return env, flags
