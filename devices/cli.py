"""`edgeprune devices` — list the device profiles, or `edgeprune devices show NAME`."""

from __future__ import annotations

import argparse
import json

HELP = "list device profiles, or show one"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list",
                   help="list (default) or show NAME")
    p.add_argument("name", nargs="?", help="device name (or path to a .toml file) for `show`")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from edgeprune.devices import DEVICES, load_device
    from edgeprune.errors import DeviceError
    from edgeprune.table import markdown_table

    if args.action == "show":
        if not args.name:
            raise DeviceError("`edgeprune devices show` needs a NAME; see `edgeprune devices`")
        prof = load_device(args.name)
        d = prof.to_dict()
        if args.json:
            print(json.dumps(d, indent=1))
            return 0
        from edgeprune.devices.profile import access_keys

        access = d.pop("access")
        if not d["measured"]:
            d.pop("measured")
        rows = [[k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v] for k, v in d.items()]
        rows.append(["cpu_mask", prof.cpu_mask])
        rows += [[f"access.{k}", access[k]] for k in ["kind", *sorted(access_keys(prof.access.kind))]
                 if access[k] not in ("", None)]
        print(markdown_table(["field", "value"], rows))
        return 0
    # list: parse remote profiles only (loading `local` would measure this machine's bandwidth)
    from edgeprune.devices.profile import load_profile_file

    rows, records = [], []
    for name, path in DEVICES.items():
        if name == "local":
            rows.append([name, "local", "(probed)", "-", "-", "-", "-", "this machine"])
            records.append({"name": name, "access": "local"})
            continue
        p = load_profile_file(path)
        rows.append([name, p.access.kind, p.cpu, p.threads, p.bandwidth_gbs, p.efficiency,
                     ",".join(p.gguf_quants), p.description])
        records.append(p.to_dict())
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        print(markdown_table(["device", "access", "cpu", "threads", "GB/s", "η", "gguf", "description"],
                             rows))
    return 0
