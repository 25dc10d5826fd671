"""How well each latency prediction fits real llama.cpp runs on a device (issues 12 and 16).

Reads the device's calibrated table (`edgeprune devices calibrate NAME`, or `--calibrate` here)
and, for every measured synthetic shape, compares the measured tg128 / pp512 with:
  - the latency model (fitted; held-out shapes were not used by the fit),
  - the roofline plus default overheads (what an uncalibrated device gets),
  - the bandwidth-only roofline η·bandwidth / bytes (the physical bound's estimate).
Writes <out>.md and <out>.json (the table itself is copied there, so the figures can be checked).

    python benchmarks/latency_model.py --device local [--calibrate --shapes 24 --reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="local")
    p.add_argument("--calibrate", action="store_true", help="measure a new table first")
    p.add_argument("--shapes", type=int, default=24)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", default="benchmarks/latency_model")
    a = p.parse_args(argv)

    from edgeprune.devices import load_device
    from edgeprune.devices import roofline as rl
    from edgeprune.runtime_bench.calibrate import calibrate
    from edgeprune.devices.latency_model import LatencyModel, load_table, save_table
    from edgeprune.shape.spec import ArchSpec
    from edgeprune.base.table import markdown_table

    dev = load_device(a.device)
    if a.calibrate:
        save_table(calibrate(dev, n_shapes=a.shapes, reps=a.reps))
    table = load_table(dev.name)
    if table is None:
        sys.exit(f"no latency table for {dev.name}: run with --calibrate")
    fitted, fallback = LatencyModel(dev, table), LatencyModel(dev, None)
    rows, errs = [], {}
    for pt in table.points:
        spec, q = ArchSpec.from_dict(pt["spec"]), pt["qtype"]
        cost = rl.cost_from_spec(spec, q)
        bound = rl.predict_decode_tps(rl.decode_bytes_per_token(cost, rl.decode_context(table.n_gen)),
                                      dev.bandwidth_gbs, dev.efficiency)
        preds = {"model": fitted.decode_tps(spec, q), "defaults": fallback.decode_tps(spec, q), "roofline": bound}
        for k, v in preds.items():
            errs.setdefault((q, k, pt["held_out"]), []).append(v / pt["tg_tps"] - 1)
        pp = fitted.prefill_tps(spec, q)
        errs.setdefault((q, "pp-model", pt["held_out"]), []).append(pp / pt["pp_tps"] - 1)
        rows.append([q, "held out" if pt["held_out"] else "fit", f"{spec.n_params / 1e6:.1f}M", spec.n_layers,
                     "uniform" if spec.is_uniform else "hetero", f"{pt['tg_tps']:.0f} (±{100 * pt['tg_spread'] / 2:.0f}%)",
                     f"{preds['model']:.0f}", f"{preds['defaults']:.0f}", f"{bound:.0f}",
                     f"{pt['pp_tps']:.0f}", f"{pp:.0f}"])
    summary = []
    for (q, k, held), e in sorted(errs.items()):
        summary.append([q, k, "held out" if held else "fit", len(e), f"{100 * statistics.mean(abs(x) for x in e):.1f}%",
                        f"{100 * max(abs(x) for x in e):.1f}%", f"{statistics.median(x + 1 for x in e):.2f}×"])
    coef = [[q, *[f"{v:.3g}" for v in c["decode"]]] for q, c in sorted(table.coefficients.items())]
    md = (f"# Latency model vs measurement on `{dev.name}`\n\n"
          f"Table measured {table.created} on {table.machine} ({len(table.points)} runs of synthetic GGUFs, "
          f"random weights in real layouts, quantized by llama.cpp; pp{table.n_prompt} / tg{table.n_gen}, median of the "
          f"repetitions; calibration took {table.seconds:.0f} s). Shapes: 1-40M parameters, uniform and heterogeneous, "
          f"2-20 layers, some layers without attention or MLP.\n\n"
          "## Error of each predictor (predicted / measured − 1)\n\n"
          + markdown_table(["quant", "predictor", "shapes", "n", "mean |error|", "max |error|", "median ratio"], summary)
          + "\n\n`model` = the fitted latency model (devices/latency_model.py); `defaults` = the roofline plus the "
          "documented default overheads, what a device without a table gets; `roofline` = η·bandwidth / bytes per token "
          "alone. Held-out shapes were not used by the fit.\n\n"
          "## Fitted decode coefficients (seconds per unit)\n\n"
          + markdown_table(["quant", "per token", "per layer", "per attention block", "per MLP block",
                            "per weight byte", "per KV byte"], coef)
          + "\n\n## Every measured shape\n\n"
          + markdown_table(["quant", "use", "params", "layers", "shape", "tg128 measured t/s (± half-spread)",
                            "tg model", "tg defaults", "tg roofline", "pp512 measured", "pp model"], rows) + "\n")
    Path(a.out + ".md").write_text(md)
    Path(a.out + ".json").write_text(json.dumps(table.to_dict(), indent=1))
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
