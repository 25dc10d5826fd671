"""Fixtures for the harness tests: tiny GGUF / ONNX artifacts and a real sshd on 127.0.0.1."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from edgeprune.shape.arch_presets import preset_spec

SSHD = Path("/usr/sbin/sshd")
DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    """A ~100k-parameter llama GGUF (preset 'tiny') with random Q8_0 weights."""
    from edgeprune.runtime_bench.synthetic import write_random_gguf

    return write_random_gguf(preset_spec("tiny"), tmp_path_factory.mktemp("gguf") / "tiny.Q8_0.gguf", "Q8_0")


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """EdgeLM('tiny') exported with its KV cache as past_key_values.{i}.key|value inputs."""
    import torch
    from torch import nn

    from edgeprune.shape.model import build_model

    spec = preset_spec("tiny")
    model = build_model(spec, seed=0).eval()
    kv = [i for i, lay in enumerate(spec.layers) if lay.has_attention]

    class Flat(nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, input_ids, attention_mask, position_ids, *flat):
            past = [None] * spec.n_layers
            for j, i in enumerate(kv):
                past[i] = (flat[2 * j], flat[2 * j + 1])  # (B, n_kv, T_past, head_dim)
            out = self.lm(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                          past_key_values=past, use_cache=True)
            return (out.logits, *[t for i in kv for t in out.past_key_values[i]])

    T, P = 3, 2
    ids = torch.randint(0, spec.vocab_size, (1, T))
    mask = torch.ones(1, P + T, dtype=torch.long)
    pos = torch.arange(P, P + T)[None]
    past = [torch.zeros(1, spec.layers[i].n_kv_heads, P, spec.head_dim) for i in kv for _ in (0, 1)]
    past_names = [f"past_key_values.{i}.{k}" for i in kv for k in ("key", "value")]
    out_names = ["logits"] + [f"present.{i}.{k}" for i in kv for k in ("key", "value")]
    dyn = {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "a"}, "position_ids": {0: "b", 1: "t"},
           "logits": {0: "b", 1: "t"}, **{n: {0: "b", 2: "p"} for n in past_names},
           **{n: {0: "b", 2: "pt"} for n in out_names[1:]}}
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(Flat(model), (ids, mask, pos, *past), str(path), dynamo=False, opset_version=17,
                      input_names=["input_ids", "attention_mask", "position_ids", *past_names],
                      output_names=out_names, dynamic_axes=dyn)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1:<free port> for the current user, key auth only."""
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("needs openssh-server + openssh-client (apt-get install openssh-server)")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    elif not Path("/run/sshd").exists():
        pytest.skip("sshd needs /run/sshd (create it as root)")
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    _keygen(d / "stranger_key")  # never authorised: the wrong-key test
    auth = d / "authorized_keys"
    auth.write_text((d / "user_key.pub").read_text())
    auth.chmod(0o600)
    port = free_port()
    sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")
                 if Path(p).exists()), "internal-sftp")
    cfg = d / "sshd_config"
    cfg.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {auth}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel ERROR
Subsystem sftp {sftp}
""")
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} " + (d / "host_key.pub").read_text())
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(cfg)], stderr=subprocess.PIPE, text=True)
    for _ in range(100):  # up to ~10 s for sshd to listen, counted in polls
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {proc.stderr.read().strip()[:300]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    device_dir = d / "device"
    device_dir.mkdir()
    yield {"host": "127.0.0.1", "port": port, "user": getpass.getuser(), "key": str(d / "user_key"),
           "stranger_key": str(d / "stranger_key"), "known_hosts": str(known), "device_dir": device_dir}
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
