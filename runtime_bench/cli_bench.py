"""`edgeprune bench` — measure GGUF / ONNX artifacts on a device, with roofline predictions.

    edgeprune bench m.Q4_0.gguf m.int8.onnx --device local --out results.json
    edgeprune bench m.Q4_0.gguf --device raspberry-pi-5 --host pi@10.0.0.7 --key ~/.ssh/id_ed25519
    edgeprune bench m.Q4_0.gguf --device snapdragon-8-gen-3 --serial R5CX...
    edgeprune bench --predict-only --model ckpt_dir        # roofline table for every device profile
    edgeprune bench a.gguf b.gguf c.gguf --vs a.gguf --rounds 10   # interleaved rounds, paired ratios
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any
from edgeprune.base.cli_flags import model_help

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgeprune.base.cli_flags import csv_list, hidden_alias, positive_int

    p.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help=".gguf / .onnx files to measure")
    dev = p.add_argument("--device", action="extend", type=csv_list, default=None, metavar="NAME[,NAME]",
                         help="device profile(s), names or .toml paths (default: local; with --predict-only: "
                              "every profile but local)")
    p.add_argument("--host", help="ssh destination user@host (overrides the profile; implies ssh)")
    p.add_argument("--port", type=int, help="ssh port")
    p.add_argument("--key", help="ssh private key file")
    p.add_argument("--known-hosts", help="ssh known_hosts file to check the host key against")
    p.add_argument("--remote-python", help="python on the ssh device (needs llama_cpp / onnxruntime)")
    p.add_argument("--remote-dir", help="scratch directory on the device")
    p.add_argument("--no-llama-bench", action="store_true",
                   help="on ssh, use our Python runner even when the device has llama-bench")
    p.add_argument("--serial", help="adb device serial")
    p.add_argument("--prompt", type=positive_int, default=512, help="pp test: prompt tokens (default 512)")
    p.add_argument("--gen", type=positive_int, default=128, help="tg test: generated tokens (default 128)")
    p.add_argument("--reps", type=positive_int, default=5, help="repetitions (default 5)")
    p.add_argument("--threads", type=positive_int, help="threads (default: the profile's)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per measurement")
    p.add_argument("--connect-timeout", type=int, default=10, help="ssh connect timeout, seconds")
    p.add_argument("--vs", metavar="ARTIFACT",
                   help="compare the files against this one in interleaved rounds (each file its own process "
                        "per round, order shuffled) and print paired ratios with their spread")
    p.add_argument("--rounds", type=positive_int, default=10, help="--vs: interleaved rounds (default 10)")
    p.add_argument("--out", type=Path, help="write records (JSON) here; a .md table and a decode plot beside it")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--predict-only", action="store_true",
                   help="no measurement: the roofline table for every device profile")
    p.add_argument("--spec", help="--predict-only: an ArchSpec JSON file")
    p.add_argument("--model", help=model_help("--predict-only: the model", extra=("an .onnx file",)))
    p.add_argument("--quant", default="Q4_0,Q8_0", help="--predict-only with a spec: GGML types (default Q4_0,Q8_0)")
    hidden_alias(p, dev, "--devices")


def outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """--out and the files written beside it (checked, locked and guarded by edgeprune.cli)."""
    if not args.out:
        return []
    if args.predict_only:
        return [(args.out, "file")]
    return [(args.out, "file"), (args.out.with_suffix(".md"), "file"),
            (args.out.with_name(args.out.stem + "_decode.png"), "file")]


def run(args: argparse.Namespace) -> int:
    from edgeprune.base.errors import BenchError

    if args.predict_only:
        return _predict(args)
    if not args.artifacts:
        raise BenchError("give at least one .gguf / .onnx ARTIFACT, or --predict-only")
    if args.vs:
        return _paired(args)
    from edgeprune.runtime_bench.harness import bench
    from edgeprune.runtime_bench.report import records_table

    spec = _spec(args) if (args.spec or args.model) else None
    records = []
    for device in args.device or ["local"]:
        records += bench(args.artifacts, device, n_prompt=args.prompt, n_gen=args.gen, reps=args.reps,
                         threads=args.threads, spec=spec, host=args.host, port=args.port, key=args.key,
                         serial=args.serial, remote_python=args.remote_python, remote_dir=args.remote_dir,
                         known_hosts=args.known_hosts, use_llama_bench=not args.no_llama_bench,
                         connect_timeout=args.connect_timeout, timeout=args.timeout,
                         progress=not args.no_progress)
    table = records_table(records)
    print(table)
    if args.out:
        from edgeprune.base.atomic_io import atomic_write_text
        from edgeprune.runtime_bench.plots import plot_decode
        from edgeprune.runtime_bench.schema import write_records

        from edgeprune.base.atomic_io import atomic_files

        with atomic_files():  # the records, their table and plot: all new or all as they were
            write_records(records, args.out)
            atomic_write_text(args.out.with_suffix(".md"), table + "\n")
            plot_decode([r.to_dict() for r in records], args.out.with_name(args.out.stem + "_decode.png"))
        log.info("wrote %s (+ .md, _decode.png)", args.out)
    return 0


def _paired(args: argparse.Namespace) -> int:
    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.runtime_bench.paired import paired_bench

    results = []
    for device in args.device or ["local"]:
        res = paired_bench(args.artifacts, device, vs=args.vs, rounds=args.rounds, n_prompt=args.prompt,
                           n_gen=args.gen, progress=not args.no_progress, threads=args.threads, host=args.host,
                           port=args.port, key=args.key, serial=args.serial, remote_python=args.remote_python,
                           remote_dir=args.remote_dir, known_hosts=args.known_hosts,
                           use_llama_bench=not args.no_llama_bench, connect_timeout=args.connect_timeout,
                           timeout=args.timeout)
        print(res.table())
        results.append(res)
    if args.out:
        from edgeprune.base.atomic_io import atomic_files

        with atomic_files():
            atomic_write_text(args.out, json.dumps([r.to_dict() for r in results], indent=2) + "\n")
            atomic_write_text(args.out.with_suffix(".md"), "\n\n".join(r.table() for r in results) + "\n")
        log.info("wrote %s (+ .md)", args.out)
    return 0


def _spec(args: argparse.Namespace):
    from edgeprune.files.spec_of import spec_of

    return spec_of(args.spec or args.model)


def _predict(args: argparse.Namespace) -> int:
    from edgeprune.devices import DEVICES, load_device
    from edgeprune.devices.predict import predict
    from edgeprune.base.errors import BenchError
    from edgeprune.devices import roofline as rl
    from edgeprune.runtime_bench.report import predict_table

    for a in args.artifacts:  # unreadable files: one line, before any row
        _cost_of(Path(a))
    models: list[tuple[str, Any, Any]] = [(Path(a).name, Path(a), None) for a in args.artifacts]
    if args.spec or args.model:
        spec = _spec(args)
        name = Path(args.spec or args.model).name.removesuffix(".json")
        models += [(f"{name} {q}", spec, q) for q in args.quant.split(",") if q]
    if not models:
        raise BenchError("--predict-only needs --spec JSON, --model DIR or ARTIFACT files")
    names = args.device or [n for n in DEVICES if n != "local"]
    devices = [load_device(n) for n in names]
    rows = [{"model": label, "device": d.name, **predict(m, d, q, n_prompt=args.prompt, n_gen=args.gen)}
            for label, m, q in models for d in devices]
    caveats = [f"- {row['model']} on {row['device']}: {row['model_caveat']}" for row in rows if row.get("model_caveat")]
    print(predict_table(rows))
    print(f"\ndecode at {rl.decode_context(args.gen):g} cached tokens (tg{args.gen} from an empty cache), "
          f"prefill bound at pp{args.prompt}; tg pred = η·bandwidth / bytes per token (the physical bound's "
          "estimate); tg / pp model = the device's latency model (pp512 / tg128), measured by `edgeprune devices "
          "calibrate NAME`, else the roofline plus default per-token and per-layer overheads.")
    if caveats:
        print("\noutside the validated regime:\n" + "\n".join(caveats))
    if args.out:
        from edgeprune.base.atomic_io import atomic_write_text

        atomic_write_text(args.out, json.dumps(rows, indent=1))
    return 0


def _cost_of(path: Path):
    """Roofline cost read from an artifact; a missing or unparseable file is one line (BenchError):
    the readers are third-party parsers that raise anything on a corrupt file."""
    from edgeprune.base.errors import BenchError, EdgepruneError
    from edgeprune.devices import roofline as rl

    if not path.is_file():
        raise BenchError(f"artifact {path} does not exist (or is not a file)")
    if path.suffix not in (".gguf", ".onnx"):
        raise BenchError(f"artifact {path}: expected a .gguf or .onnx file")
    if path.suffix == ".onnx":
        from edgeprune.files.onnx_file import onnx_problem

        problem = onnx_problem(path)
        if problem is not None:
            raise BenchError(problem)
    try:
        return rl.cost_from_file(path)
    except EdgepruneError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt input, not our bug
        raise BenchError(f"artifact {path} is not a readable {path.suffix[1:].upper()} file "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
