"""No option injection through --host / user / port / adb serial / remote paths.

The attack of the report: `--host=-Fevil.cfg` made ssh read a config whose ProxyCommand ran a
command on this machine. Reproduced here with a temp ssh config that touches a marker file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgeprune.cli import main
from edgeprune.devices import load_device
from edgeprune.devices.profile import load_profile_file
from edgeprune.base.errors import DeviceError, RemoteError
from edgeprune.runtime_bench.adb import AdbTarget
from edgeprune.runtime_bench.harness import make_target
from edgeprune.devices.remote_values import check_host
from edgeprune.runtime_bench.ssh import SshTarget

from .conftest import one_line_exit_2

needs_ssh = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "pwned"
    cfg = tmp_path / "evilcfg"
    cfg.write_text(f'Host *\n ProxyCommand sh -c "touch {marker}; exit 1"\n')
    return cfg, marker


@needs_ssh
def test_proxycommand_attack_reproduced_with_the_old_argv_and_harmless_now(evil):
    cfg, marker = evil
    # the argv the old code built for --host=-F<cfg>: the host before `--`, read as an option
    old = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-p", "22", f"-F{cfg}", "--", "true"]
    subprocess.run(old, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert marker.exists(), "control: the attack must work against the old argv form"
    marker.unlink()
    # now: the value is refused before any argv is built ...
    with pytest.raises(RemoteError, match="not a valid host"):
        make_target(load_device("raspberry-pi-5"), host=f"-F{cfg}")
    # ... and even a value that skipped the check sits after `--`, where ssh takes it as a name
    t = SshTarget(host="example.invalid", remote_dir="/tmp/x", connect_timeout=3)
    t.host = f"-F{cfg}"
    subprocess.run(t.ssh_argv(["true"]), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert not marker.exists()


@pytest.mark.parametrize("argv", [
    ["bench", "x.gguf", "--device", "raspberry-pi-5", "--host=-F{cfg}"],
    ["bench", "x.gguf", "--device", "raspberry-pi-5", "--host", "pi@h", "--port", "0"],
    ["bench", "x.gguf", "--device", "raspberry-pi-5", "--host=-oProxyCommand=sh@h"],
    ["bench", "x.gguf", "--device", "snapdragon-8-gen-3", "--serial=-H evil"],
    ["bench", "x.gguf", "--device", "raspberry-pi-5", "--host", "pi@h", "--remote-dir", "../../etc"],
    ["ship", "{model}", "--method", "uniform", "--ratio", "0.3", "--data", "{data}", "--recover-tokens", "0",
     "--devices", "raspberry-pi-5", "--host=-F{cfg}", "--out", "x"],
])
def test_cli_refuses_option_like_values_with_one_line(world, tmp_path, monkeypatch, capsys, evil, argv):
    cfg, marker = evil
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    argv = [a.format(cfg=cfg, model=world["model"], data=world["data"]) for a in argv]
    rc = main(argv)
    one_line_exit_2(rc, capsys.readouterr().err)
    assert not marker.exists() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("key, value", [
    ("host", "-Fevil.cfg"), ("host", "a b"), ("user", "-oProxyCommand=x"), ("port", 0), ("port", 70000),
    ("remote_dir", "-rf"), ("remote_dir", "/tmp/$(reboot)"), ("python", "-c"), ("llama_bench", "x;reboot"),
])
def test_device_toml_values_are_checked(tmp_path, key, value):
    toml = (Path(load_device("raspberry-pi-5").source).read_text())
    import re
    line = f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}"
    if re.search(rf"^{key} = .*$", toml, flags=re.M):
        toml = re.sub(rf"^{key} = .*$", line, toml, count=1, flags=re.M)
    else:
        toml = toml.replace("[access]\n", f"[access]\n{line}\n")
    f = tmp_path / "raspberry-pi-5.toml"
    f.write_text(toml)
    with pytest.raises(DeviceError, match=f"access.{key}"):
        load_profile_file(f)


def test_adb_serial_and_paths_are_checked_and_argv_has_no_option_slots():
    for bad in ("-H evil", "-s", "a b", "x;y"):
        with pytest.raises(RemoteError):
            AdbTarget(serial=bad)
    with pytest.raises(RemoteError):
        AdbTarget(serial="R5CX", remote_dir="-x")
    t = AdbTarget(serial="192.168.1.7:5555")
    argv = t.push_argv("-weird.gguf", "/data/local/tmp/e/m.gguf")
    assert argv[argv.index("push") + 1] == "--" and argv[argv.index("push") + 2].startswith("/")


def test_port_zero_is_refused_not_defaulted():
    with pytest.raises(RemoteError, match="1..65535"):
        make_target(load_device("raspberry-pi-5"), host="pi@10.0.0.7", port=0)
    assert make_target(load_device("raspberry-pi-5"), host="pi@10.0.0.7").port == 22  # unset: the profile's


@pytest.mark.parametrize("host", ["raspberrypi.local", "10.0.0.7", "fe80::1%eth0", "[::1]", "my_host-2"])
def test_ordinary_hosts_still_pass(host):
    assert check_host(host) == host
