"""Device profiles as data (DESIGN §7): one TOML file per target in this folder.

`load_device("raspberry-pi-5")` validates and returns a DeviceProfile; a path to a .toml file
works too (your own device). `list_devices()` names every profile; `DEVICES` maps name -> file.
Adding a device = adding a file here (tests/devices validates every one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from edgeprune.devices.profile import ACCESS_KINDS, Access, DeviceProfile, load_profile_file
from edgeprune.base.errors import DeviceError

DEVICE_DIR = Path(__file__).resolve().parent
# name -> profile file. Files are parsed on demand: `local` measures bandwidth when first loaded.
DEVICES: dict[str, Path] = {p.stem: p for p in sorted(DEVICE_DIR.glob("*.toml"))}

_loaded: dict[str, DeviceProfile] = {}


def list_devices() -> list[str]:
    return list(DEVICES)


def load_device(name: Union[str, Path]) -> DeviceProfile:
    """The profile called `name` (a registry name or a path to a .toml file), validated."""
    if isinstance(name, DeviceProfile):
        return name
    key = str(name)
    if key in _loaded:
        return _loaded[key]
    if key in DEVICES:
        path = DEVICES[key]
    elif key.endswith(".toml") or Path(key).is_file():
        path = Path(key)
    else:
        raise DeviceError(f"unknown device {key!r}; known: {', '.join(DEVICES)} "
                          "(or give the path of a device .toml file)")
    prof = load_profile_file(path)
    _loaded[key] = prof
    return prof


__all__ = ["DEVICES", "DEVICE_DIR", "DeviceProfile", "Access", "ACCESS_KINDS",
           "list_devices", "load_device"]
