"""Device profiles: every shipped file validates; bad files fail with DeviceError naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeprune.devices import DEVICES, load_device
from edgeprune.devices.local_probe import probe_local
from edgeprune.devices.profile import load_profile_file
from edgeprune.base.errors import DeviceError
from edgeprune.shape.quant_presets import canonical_gguf, onnx_preset

GOOD = """
name = "{name}"
description = "test board"
cpu = "4x Cortex-A76"
cores = [0, 1, 2, 3]
threads = 4
isa = ["neon", "dotprod"]
ram_gb = 8
bandwidth_gbs = 17.1
efficiency = 0.5
peak_gflops = 153.6
gguf_quants = ["Q4_0", "Q8_0"]
onnx_quants = ["int8-arm64"]
align = 32

[access]
kind = "ssh"
host = "pi.local"
remote_dir = "/tmp/x"
"""


def _write(tmp_path: Path, text: str, name: str = "board") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(text.replace("{name}", name))
    return p


@pytest.mark.parametrize("name", sorted(n for n in DEVICES if n != "local"))
def test_every_shipped_profile_validates(name):
    prof = load_profile_file(DEVICES[name])
    assert prof.name == name
    assert prof.threads <= len(prof.cores), "threads beyond the pinned cores"
    assert 0.3 <= prof.efficiency <= 0.85
    assert prof.bandwidth_gbs > 5 and prof.peak_gflops > 10
    assert {"Q4_0", "Q8_0"} <= set(prof.gguf_quants)
    if prof.access.kind in ("ssh", "adb"):
        assert prof.access.remote_dir
    if "neon" in prof.isa:  # ARM devices must not ask for x86 ONNX presets, and vice versa
        assert not any("avx" in q for q in prof.onnx_quants)


def test_phone_profiles_pin_big_cores_only():
    g3 = load_device("tensor-g3")
    assert g3.cores == (4, 5, 6, 7, 8) and g3.cpu_mask == "0x1f0"
    sd = load_device("snapdragon-8-gen-3")
    assert 0 not in sd.cores and 1 not in sd.cores  # the A520 little cores
    pi5, pi4 = load_device("raspberry-pi-5"), load_device("raspberry-pi-4")
    assert "dotprod" in pi5.isa and "i8mm" not in pi5.isa and "dotprod" not in pi4.isa
    assert pi5.bandwidth_gbs == pytest.approx(17.1) and pi4.bandwidth_gbs == pytest.approx(12.8)


def test_local_profile_probes_this_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path))
    prof = load_profile_file(DEVICES["local"])
    assert prof.access.kind == "local"
    assert prof.threads == len(prof.cores) >= 1
    assert prof.bandwidth_gbs > 0.5 and prof.peak_gflops > 0.5 and prof.ram_gb > 0.1
    assert "bandwidth_gbs" in prof.measured
    cache = tmp_path / "local_device.json"
    assert cache.exists()
    # second probe reads the cache (same numbers, no re-measurement)
    assert probe_local()["bandwidth_gbs"] == prof.bandwidth_gbs


def test_good_custom_file_loads_by_path(tmp_path):
    prof = load_device(str(_write(tmp_path, GOOD)))
    assert prof.access.host == "pi.local" and prof.access.port == 22 and prof.cpu_mask == "0xf"


@pytest.mark.parametrize("edit, needle", [
    (lambda t: t.replace('align = 32', 'align = 32\nturbo = true'), "turbo"),  # unknown key
    (lambda t: t.replace('peak_gflops = 153.6\n', ''), "peak_gflops"),  # missing field
    (lambda t: t.replace('efficiency = 0.5', 'efficiency = 1.5'), "efficiency"),
    (lambda t: t.replace('"Q8_0"]', '"Q9_9"]'), "Q9_9"),
    (lambda t: t.replace('"Q8_0"]', '"IQ2_XXS"]'), "IQ2_XXS"),  # needs an importance matrix: export refuses it
    (lambda t: t.replace('["int8-arm64"]', '["int3"]'), "int3"),
    (lambda t: t.replace('remote_dir = "/tmp/x"', 'remote_dir = "/tmp/x"\nserial = "abc"'), "serial"),
    (lambda t: t.replace('kind = "ssh"', 'kind = "telnet"'), "telnet"),
    (lambda t: t.replace('ram_gb = 8', 'ram_gb = "auto"'), "auto"),  # auto only for local
    (lambda t: t.replace('cores = [0, 1, 2, 3]', 'cores = [0, 0]'), "cores"),
    (lambda t: t.replace('name = "board"', 'name = "other"'), "other"),
    (lambda t: t + "\n[[[broken", "TOML"),
])
def test_bad_file_names_file_and_key(tmp_path, edit, needle):
    path = _write(tmp_path, edit(GOOD.replace("{name}", "board")))
    with pytest.raises(DeviceError) as e:
        load_profile_file(path)
    msg = str(e.value)
    assert str(path) in msg and needle in msg and "\n" not in msg


@pytest.mark.parametrize("gguf, onnx, needle", [
    ('"IQ2_XXS"', '"int8-arm64"', "gguf_quants has unknown or unsupported llama.cpp ftype(s) ['IQ2_XXS']"),
    ('"Q4_0"', '"fp16"', "onnx_quants has unknown preset(s) ['fp16']"),
])
def test_profile_refuses_a_preset_export_refuses(tmp_path, gguf, onnx, needle):
    """Profiles use export's own check (edgeprune/shape/quant_presets.py), so export never meets a
    device preset it cannot write."""
    text = GOOD.replace('gguf_quants = ["Q4_0", "Q8_0"]', f"gguf_quants = [{gguf}]")
    text = text.replace('onnx_quants = ["int8-arm64"]', f"onnx_quants = [{onnx}]")
    path = _write(tmp_path, text)
    with pytest.raises(DeviceError) as e:
        load_profile_file(path)
    assert needle in str(e.value) and "known: [" in str(e.value)


def test_profile_quants_are_stored_in_their_canonical_spelling(tmp_path):
    text = GOOD.replace('["Q4_0", "Q8_0"]', '["q4_k_m"]').replace('["int8-arm64"]', '["INT8"]')
    prof = load_profile_file(_write(tmp_path, text))
    assert prof.gguf_quants == ("Q4_K_M",) and prof.onnx_quants == ("int8",)


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_every_shipped_profile_names_presets_export_writes(name):
    """`local` included: its quant lists are plain values even though other fields are probed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    data = tomllib.loads(DEVICES[name].read_text(encoding="utf-8"))
    assert [canonical_gguf(q) for q in data["gguf_quants"]] == data["gguf_quants"]
    assert [onnx_preset(q).name for q in data["onnx_quants"]] == data["onnx_quants"]


def test_unknown_device_name_lists_known():
    with pytest.raises(DeviceError, match="raspberry-pi-5"):
        load_device("raspberry-pi-9")


def test_devices_cli_lists_and_shows(capsys):
    from edgeprune.cli import main

    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert all(n in out for n in DEVICES)
    assert main(["devices", "show", "snapdragon-8-elite"]) == 0
    assert "84.8" in capsys.readouterr().out
    assert main(["devices", "show", "nope"]) == 2
    assert "unknown device" in capsys.readouterr().err
