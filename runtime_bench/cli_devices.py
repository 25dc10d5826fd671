"""`edgeprune devices` — list the device profiles, `edgeprune devices show NAME`, or
`edgeprune devices calibrate NAME`: measure synthetic shapes on the device and cache its latency
model (devices/latency_model.py)."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", choices=["list", "show", "calibrate"], default="list",
                   help="list (default), show NAME, or calibrate NAME (measure its latency model: minutes)")
    p.add_argument("name", nargs="?", help="device name (or path to a .toml file) for `show` / `calibrate`")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c = p.add_argument_group("calibrate")
    c.add_argument("--quant", default="Q4_0,Q8_0", help="GGUF types to calibrate, comma-separated (default Q4_0,Q8_0)")
    c.add_argument("--shapes", type=int, default=16, help="synthetic shapes to measure (default 16; a quarter held out)")
    c.add_argument("--reps", type=int, default=3, help="repetitions per shape (median taken; default 3)")
    c.add_argument("--seed", type=int, default=0, help="seed of the shape draw")
    c.add_argument("--host", default=None, help="user@host for an ssh device (overrides the profile)")
    c.add_argument("--refit", action="store_true",
                   help="fit the latency model again on the measurements already in NAME's table (no new runs)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from edgeprune.devices import DEVICES, load_device
    from edgeprune.base.errors import DeviceError
    from edgeprune.base.table import markdown_table

    if args.action == "calibrate":
        return _calibrate(args)
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


def _calibrate(args: argparse.Namespace) -> int:
    from edgeprune.devices import load_device
    from edgeprune.base.errors import DeviceError
    from edgeprune.runtime_bench.calibrate import calibrate
    from edgeprune.devices.latency_model import LatencyModel, save_table
    from edgeprune.base.table import markdown_table

    if not args.name:
        raise DeviceError("`edgeprune devices calibrate` needs a NAME; see `edgeprune devices`")
    if args.shapes < 8 or args.reps < 1:
        raise DeviceError(f"--shapes {args.shapes} / --reps {args.reps}: need >= 8 shapes and >= 1 repetition")
    prof = load_device(args.name)
    if prof.access.kind == "adb":
        raise DeviceError(f"{prof.name}: calibration over adb is not supported yet (no phone to test it on); "
                          "calibrate a local or ssh device")
    quants = [q.strip().upper() for q in args.quant.split(",") if q.strip()]
    options = {"host": args.host} if args.host else {}
    if args.refit:
        from edgeprune.runtime_bench.calibrate import refit

        table = refit(prof)
    else:
        table = calibrate(prof, quants=quants, n_shapes=args.shapes, reps=args.reps, seed=args.seed,
                          progress=not args.no_progress, **options)
    path = save_table(table)
    if args.json:
        print(json.dumps(table.to_dict(), indent=1))
        return 0
    rows = [[q, e["fitted_on"], e["held_out"], f"{100 * e['decode_mape']:.1f}%", f"{100 * e['decode_max']:.1f}%",
             f"{100 * e['prefill_mape']:.1f}%", f"{100 * e['prefill_max']:.1f}%"] for q, e in sorted(table.error.items())]
    print(markdown_table(["quant", "fitted on", "held out", "decode err (mean)", "decode err (max)",
                          "prefill err (mean)", "prefill err (max)"], rows))
    busy = sum(e.get("contended", 0) for e in table.error.values())
    if busy:
        print(f"\n{busy} measurement(s) taken while other processes kept the CPUs busy were left out of the fit; "
              "calibrate on a quiet machine for a full table")
    print(f"\n{LatencyModel(prof, table).describe()}\ncalibrated in {table.seconds:.0f} s; wrote {path}")
    return 0
