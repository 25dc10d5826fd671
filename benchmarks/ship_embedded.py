"""Benchmark (not a test): the README's first command, `edgeprune ship` with no arguments, from an
empty cache, timed; writes benchmarks/ship_embedded.md and ship_embedded.json from the run's own
report.json, so the widths, parameter counts, perplexities, files and latencies in the markdown
are always those of a real run (the hand-written page had drifted from the code).

    python benchmarks/ship_embedded.py [--work /tmp/shiprun] [--keep-cache]

The machine's load is recorded before the run (other processes' busy cores); latency rows carry
the harness's own flags (contended / noisy / one-rep).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edgeprune.base.table import human_bytes, markdown_table

HERE = Path(__file__).resolve().parent


def other_busy_cores(seconds: float = 2.0) -> float:
    """Cores other processes keep busy right now (/proc/stat over `seconds`)."""
    def busy() -> float:
        v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    b0 = busy()
    time.sleep(seconds)
    return round((busy() - b0) / seconds, 2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--work", default="/tmp/shiprun", help="scratch folder (cache and dist go here)")
    p.add_argument("--keep-cache", action="store_true", help="reuse a cached embedded teacher (not a fresh run)")
    a = p.parse_args()
    work = Path(a.work)
    if not a.keep_cache:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    load = other_busy_cores()
    env = dict(os.environ, EDGEPRUNE_CACHE=str(work / "cache"))
    cmd = [sys.executable, "-m", "edgeprune.cli", "ship", "--out", str(work / "dist"), "--no-progress"]
    t0 = time.time()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if done.returncode != 0:
        sys.exit(f"ship failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    rep = json.loads((work / "dist" / "report.json").read_text())
    facts = {"wall_s": round(wall, 1), "cpus": os.cpu_count(), "machine": platform.machine(),
             "python": platform.python_version(), "other_busy_cores_before": load,
             "fresh_cache": not a.keep_cache, "stderr_lines": len(done.stderr.splitlines()), "report": rep}
    (HERE / "ship_embedded.json").write_text(json.dumps(facts, indent=1, default=str))
    (HERE / "ship_embedded.md").write_text(render(facts) + "\n")
    print(f"wrote {HERE / 'ship_embedded.md'} ({wall:.0f} s)")


def render(f: dict) -> str:
    rep = f["report"]
    ev, held, prune = rep["eval"], rep["eval"].get("heldout", {}), rep["prune"]
    stages = {s["stage"]: s for s in rep["stages"]}
    md = ["# The embedded default, end to end (`edgeprune ship` with no arguments)", "",
          "Written by `benchmarks/ship_embedded.py` from the run's own report.json (do not edit by hand).", "",
          f"Machine: {f['cpus']} CPU cores ({f['machine']}), Python {f['python']}, "
          f"{'empty cache (the teacher is trained in this run)' if f['fresh_cache'] else 'cached teacher'}; "
          f"other processes kept **{f['other_busy_cores_before']} cores busy** when the run started "
          "(timings below are contended when that is above zero).", "",
          f"**Wall time: {f['wall_s'] / 60:.1f} min**; stderr: {f['stderr_lines']} lines.", "",
          markdown_table(["stage", "seconds"], [[k, v["seconds"]] for k, v in stages.items()]), "",
          "## Quality", "",
          f"Perplexity on the same {held.get('tokens', '?'):,} tokens of the embedded corpus "
          f"({held.get('split', '')}), windows of {held.get('seq_len', '?')} tokens:", "",
          markdown_table(["model", "params", "perplexity"],
                         [[k, f"{ev[k]['params']:,}", ev[k]["ppl"]] for k in ("teacher", "pruned_only", "pruned")
                          if k in ev]), "",
          "(`pruned_only` is the cut before recovery, `pruned` the shipped model after it.) A recovered model "
          "below its teacher means the small, briefly trained teacher had room to improve; the recovery "
          "tokens also continue its training.", "",
          f"## Widths ({prune['ratio_removed']:.1%} of parameters removed, aligned to {prune['align']})", "",
          markdown_table(["layer", "heads", "kv heads", "ffn", "params before", "params after"], prune["layers"]), "",
          "## Exported files", "",
          markdown_table(["file", "size", "tensor types", "bits/weight", "top-1 agree", "ppl PyTorch", "ppl file"],
                         [[x["path"], human_bytes(x["bytes"]), _mix(x), (x.get("details") or {}).get("bits_per_weight"),
                           x["fidelity"].get("top1_agreement"), x["fidelity"].get("ppl_ref"), x["fidelity"].get("ppl")]
                          for x in rep["artifacts"]]), ""]
    if rep["bench"]:
        md += ["## Latency on this machine", "",
               markdown_table(["file", "pp t/s", "tg t/s", "tg median", "other cores busy", "flags"],
                              [[r["model"], _pm(r["pp_tps_mean"], r["pp_tps_std"]),
                                _pm(r["tg_tps_mean"], r["tg_tps_std"]), r.get("tg_tps_median"),
                                (r.get("load") or {}).get("during_other_cores"), ", ".join(r.get("flags") or [])]
                               for r in rep["bench"]]), ""]
    return "\n".join(md)


def _mix(a: dict) -> str:
    c = (a.get("details") or {}).get("type_counts") or {}
    return " + ".join(f"{n} {t}" for t, n in sorted(c.items(), key=lambda kv: -kv[1])) or "-"


def _pm(m, s) -> str:
    return "-" if m is None else f"{m:.1f} ± {s or 0:.1f}"


if __name__ == "__main__":
    main()
