"""Measure ONNX export fidelity per model and preset; writes export_onnx_fidelity.json, prints the table.

    python benchmarks/export_onnx_fidelity.py [--ref /work/shared/refmodels/smol-llama-32m] [--tokens 512]

Models: the tiny test specs (random weights, as in tests/export/test_onnx.py) and, when present,
the trained 31.5M reference teacher with a held-out slice of refcorpus/valid.txt as tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from edgeprune.export.onnx_export import export_onnx  # noqa: E402
from edgeprune.shape.model import build_model  # noqa: E402
from edgeprune.shape.quant_presets import ONNX_PRESETS  # noqa: E402
from edgeprune.base.table import human_bytes, markdown_table  # noqa: E402
from tests.conftest import hetero_spec, tiny_spec  # noqa: E402

TINY = {
    "tiny llama uniform tied": lambda: tiny_spec("llama", tie=True),
    "tiny qwen2 uniform untied": lambda: tiny_spec("qwen2", tie=False),
    "tiny llama hetero untied (attn-free L2, MLP-free L3+L4)": lambda: hetero_spec("llama", tie=False).with_layer(
        4, ffn_dim=0),
    "tiny qwen2 hetero tied": lambda: hetero_spec("qwen2", tie=True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default="/work/shared/refmodels/smol-llama-32m")
    ap.add_argument("--corpus", default="/work/shared/refcorpus/valid.txt")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--out", default=str(ROOT / "benchmarks"))
    args = ap.parse_args()
    quants = [p for p in ONNX_PRESETS if p != "fp32"]
    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for name, make in TINY.items():
            d = Path(tmp) / f"tiny{len(jobs)}"
            save_checkpoint(build_model(make(), seed=7), d)
            toks = torch.randint(0, 256, (128,), generator=torch.Generator().manual_seed(1234))
            jobs.append((name, d, toks))
        if Path(args.ref).is_dir():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(Path(args.ref) / "tokenizer.json"))
            text = Path(args.corpus).read_text()[:200_000]
            ids = tok.encode(text).ids[-args.tokens:]  # held-out slice (valid split), its tail
            jobs.append((f"smol-llama-32m (trained), {len(ids)} valid tokens", Path(args.ref), torch.tensor(ids)))
        for name, d, toks in jobs:
            ckpt = load_checkpoint(d)
            t0 = time.time()
            arts = export_onnx(ckpt, Path(tmp) / f"onnx-{len(results)}", quants, toks)
            secs = time.time() - t0
            for a in arts:
                f = a.fidelity
                results.append({"model": name, "n_params": ckpt.spec.n_params, "quant": a.quant,
                                "bytes": a.bytes, "export_s": secs, "tool": a.details["tool"], **f})
                rows.append([name, a.quant, human_bytes(a.bytes), f"{f['max_abs_diff']:.3g}", f"{f['rel_diff']:.3g}",
                             f"{f['kv_step_rel_diff']:.3g}", f"{f['top1_agreement']:.3f}", f"{f['ppl_ref']:.4g}",
                             f"{f['ppl']:.4g}", f"{f['ppl_delta']:+.3g}"])
    out = Path(args.out)
    (out / "export_onnx_fidelity.json").write_text(json.dumps(results, indent=2))
    table = markdown_table(["model", "quant", "size", "max abs Δ", "rel Δ", "KV-step rel Δ", "top-1",
                            "ppl ref", "ppl", "Δppl"], rows)
    print(table)  # pasted into export_onnx_fidelity.md with the context of the run


if __name__ == "__main__":
    main()
