"""The SSH path, for real: a local sshd (conftest) is the device, a temp dir its scratch space."""

from __future__ import annotations

import shlex
from pathlib import Path
import sys
import time

import pytest

from edgeprune.devices import load_device
from edgeprune.base.errors import RemoteError
from edgeprune.runtime_bench.harness import bench, make_target
from edgeprune.runtime_bench.ssh import SshTarget
from edgeprune.runtime_bench.targets import Job

from .conftest import free_port
from .test_local import SMALL, check_record


def _target(sshd, **kw) -> dict:
    opts = dict(host=f"{sshd['user']}@{sshd['host']}", port=sshd["port"], key=sshd["key"],
                known_hosts=sshd["known_hosts"], remote_python=sys.executable,
                remote_dir=str(sshd["device_dir"]), connect_timeout=5, timeout=120)
    opts.update(kw)
    return opts


def test_ssh_onnx_same_schema_and_cleans_up(sshd, tiny_onnx):
    (rec,) = bench([tiny_onnx], "local", **SMALL, **_target(sshd))
    check_record(rec, "onnx", "onnxruntime-python")
    assert rec.access == "ssh" and rec.device == "local"
    assert list(sshd["device_dir"].iterdir()) == []  # run directory removed


def test_ssh_gguf_python_runner(sshd, tiny_gguf):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    (rec,) = bench([tiny_gguf], "local", **SMALL, **_target(sshd))
    check_record(rec, "gguf", "llama-cpp-python")
    assert rec.access == "ssh" and list(sshd["device_dir"].iterdir()) == []


def test_ssh_argv_quotes_what_the_remote_shell_sees():
    t = SshTarget(host="10.0.0.7", user="pi", port=2222, key="/k/id", remote_dir="/tmp/eb")
    argv = t.ssh_argv(["python3", "/tmp/eb/run x/r.py", "a;rm -rf ~"])
    assert argv[0] == "ssh" and argv[-3:-1] == ["--", "pi@10.0.0.7"]
    assert ["-p", "2222"] == argv[argv.index("-p"):argv.index("-p") + 2]
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=accept-new" in argv and "/k/id" in argv
    assert shlex.split(argv[-1]) == ["python3", "/tmp/eb/run x/r.py", "a;rm -rf ~"]
    scp = t.copy_argv(["m.gguf"], "/tmp/eb/run-1", rsync=False)
    assert scp[0] == "scp" and ["-P", "2222"] == scp[scp.index("-P"):scp.index("-P") + 2]
    assert scp[-3:] == ["--", str(Path("m.gguf").resolve()), "pi@10.0.0.7:/tmp/eb/run-1/"]
    rs = t.copy_argv(["m.gguf"], "/tmp/eb/run-1", rsync=True)
    assert rs[0] == "rsync" and "-p 2222" in rs[rs.index("-e") + 1]
    for bad in (dict(host="-oProxyCommand=x"), dict(host="h", user="a b"), dict(host="h", remote_dir="~/x y")):
        with pytest.raises(RemoteError):
            SshTarget(**{"remote_dir": "/tmp/eb", **bad})


def test_profile_host_override_builds_ssh_target():
    t = make_target(load_device("raspberry-pi-5"), host="alice@192.168.1.20", key="/k")
    assert isinstance(t, SshTarget) and t.user == "alice" and t.host == "192.168.1.20" and t.cores == (0, 1, 2, 3)
    t2 = make_target(load_device("raspberry-pi-5"))
    assert (t2.user, t2.host, t2.remote_dir) == ("pi", "raspberrypi.local", "/tmp/edgeprune-bench")


def _bench_unreachable(tiny_onnx, tmp_path) -> tuple[float, RemoteError, int]:
    """A bench on a port nothing listens on: the seconds it took to fail, its error, the port."""
    port = free_port()
    t0 = time.perf_counter()
    with pytest.raises(RemoteError) as e:
        bench([tiny_onnx], "local", **SMALL, host="127.0.0.1", port=port, remote_dir="/tmp/x",
              known_hosts=str(tmp_path / "kh"), connect_timeout=3, timeout=30)
    return time.perf_counter() - t0, e.value, port


def test_unreachable_host_fails_with_one_line(tiny_onnx, tmp_path):
    _, err, port = _bench_unreachable(tiny_onnx, tmp_path)
    msg = str(err)
    assert "\n" not in msg and str(port) in msg and "refused" in msg.lower()


@pytest.mark.timing
def test_unreachable_host_fails_within_the_connect_timeout(tiny_onnx, tmp_path):
    seconds, _, _ = _bench_unreachable(tiny_onnx, tmp_path)
    assert seconds < 3


def test_wrong_key_is_one_line(sshd, tiny_onnx):
    with pytest.raises(RemoteError) as e:
        bench([tiny_onnx], "local", **SMALL, **_target(sshd, key=sshd["stranger_key"]))
    assert "\n" not in str(e.value) and "permission denied" in str(e.value).lower()


def test_missing_remote_python_is_one_line(sshd, tiny_onnx):
    with pytest.raises(RemoteError) as e:
        bench([tiny_onnx], "local", **SMALL, **_target(sshd, remote_python="/nonexistent/python3"))
    assert "\n" not in str(e.value) and "/nonexistent/python3" in str(e.value)
    assert list(sshd["device_dir"].iterdir()) == []


def test_ssh_scp_copy(sshd, tiny_onnx):
    t = SshTarget(host=sshd["host"], user=sshd["user"], port=sshd["port"], key=sshd["key"],
                  known_hosts=sshd["known_hosts"], python=sys.executable, remote_dir=str(sshd["device_dir"]),
                  use_rsync=False)
    raw = t.measure(Job("onnxruntime", tiny_onnx, 4, 4, 1, 1))
    assert raw["tg_seconds"][0] > 0 and list(sshd["device_dir"].iterdir()) == []


def test_remote_runner_error_surfaces(sshd, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    t = SshTarget(host=sshd["host"], user=sshd["user"], port=sshd["port"], key=sshd["key"],
                  known_hosts=sshd["known_hosts"], python=sys.executable, remote_dir=str(sshd["device_dir"]))
    with pytest.raises(RemoteError, match="bad.onnx"):
        t.measure(Job("onnxruntime", bad, 4, 4, 1, 1))
    assert list(sshd["device_dir"].iterdir()) == []


def test_ssh_onnx_with_external_data(sshd, tiny_onnx, tmp_path):
    """An ONNX model whose weights live in model.onnx.data travels with that file."""
    import onnx

    ext = tmp_path / "ext" / "model_fp32.onnx"
    ext.parent.mkdir()
    onnx.save_model(onnx.load(str(tiny_onnx)), str(ext), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model_fp32.onnx.data", size_threshold=0)
    assert (ext.parent / "model_fp32.onnx.data").stat().st_size > ext.stat().st_size
    (rec,) = bench([ext], "local", n_prompt=8, n_gen=4, reps=1, threads=1, progress=False, **_target(sshd))
    assert rec.tg_tps_mean > 0 and rec.quant == "fp32"
    assert rec.file_bytes == ext.stat().st_size + (ext.parent / "model_fp32.onnx.data").stat().st_size


def test_ssh_prefers_llama_bench_when_the_device_has_it(sshd, tiny_gguf, tmp_path):
    """Through the real sshd, with a stand-in `llama-bench` on the device that checks its
    arguments and replays recorded jsonl (no llama.cpp binaries are built here)."""
    from .test_adb import RECORDED

    args_log = tmp_path / "args.txt"
    fake = tmp_path / "llama-bench"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {shlex.quote(str(args_log))}\n"
                    f"test -f \"$2\" || {{ echo 'model not found' >&2; exit 1; }}\n"
                    f"cat {shlex.quote(str(RECORDED))}\n")
    fake.chmod(0o755)
    t = SshTarget(host=sshd["host"], user=sshd["user"], port=sshd["port"], key=sshd["key"],
                  known_hosts=sshd["known_hosts"], python=sys.executable, remote_dir=str(sshd["device_dir"]),
                  llama_bench=str(fake), cores=(0,))
    raw = t.measure(Job("llamacpp", tiny_gguf, 512, 128, 5, 1, (0,)))
    assert raw["runner"] == "llama-bench" and raw["n_prompt"] == 512 and len(raw["tg_seconds"]) == 5
    args = args_log.read_text().split("\n")
    assert args[0] == "-m" and args[1].endswith("/tiny.Q8_0.gguf") and "/run-" in args[1]
    assert args[2:14] == ["-p", "512", "-n", "128", "-r", "5", "-t", "1", "-o", "jsonl", "-C", "0x1"]
    assert list(sshd["device_dir"].iterdir()) == []  # model copied for the run, then removed
