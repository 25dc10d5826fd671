"""Measured GGUF fidelity per layout case and quant type -> benchmarks/export_fidelity.md (+ .json).

Random-weight tiny models for every layout case (F32 only: the 1e-4 gate), a trained tiny model
for all quant types (perplexity on a held-out slice), and, with --refmodel, the real 31.5M
teacher (/work/shared/refmodels/smol-llama-32m) on refcorpus/valid.txt.
Run: python benchmarks/export_fidelity.py [--refmodel DIR --refvalid FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUANTS = ["F32", "F16", "BF16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"]


def rows_of(case: str, arts) -> list[list]:
    out = []
    for a in arts:
        f = a.fidelity
        out.append([case, a.quant, a.details["arch"], f"{a.bytes / 1024:.0f} KiB",
                    f"{a.details['matrix_bits_per_weight']:.2f}", len(a.details["fallbacks"]),
                    f"{f['max_abs_diff']:.3g}", f"{f['rel_diff']:.2e}", f"{f['top1_agreement']:.3f}",
                    f"{f['ppl_ref']:.4g}", f"{f['ppl']:.4g}"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--refmodel", default=None)
    ap.add_argument("--refvalid", default="/work/shared/refcorpus/valid.txt")
    ap.add_argument("--tokens", type=int, default=512)
    args = ap.parse_args()

    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.export.api import load_check_tokens
    from edgeprune.export.gguf_export import export_gguf
    from edgeprune.shape.model import build_model
    from edgeprune.base.table import markdown_table
    from tests.export.gguf_cases import CASES, encode, make_tokenizer, save_case, spec_of, train_tiny

    tmp = Path(tempfile.mkdtemp())
    tok = make_tokenizer(tmp / "tok")
    ids = encode(tok)
    rows, raw = [], {}
    for case in CASES:
        arts = export_gguf(load_checkpoint(save_case(tmp, case, tok)), tmp / "out" / case, ["F32"], ids[:128],
                           greedy_tokens=0, progress=False)
        rows += rows_of(f"{case} (random)", arts)
        raw[case] = [a.to_dict() for a in arts]
    model = train_tiny(build_model(spec_of("llama-hetero-tied"), seed=0), ids)
    ckpt = load_checkpoint(save_case(tmp, "trained", tok, model))
    arts = export_gguf(ckpt, tmp / "out" / "trained", QUANTS, ids[-128:], greedy_tokens=20, progress=False)
    greedy = arts[0].details["greedy"]
    rows += rows_of("llama-hetero-tied (trained)", arts)
    raw["trained"] = [a.to_dict() for a in arts]
    if args.refmodel:
        ref = load_checkpoint(args.refmodel)
        check = load_check_tokens(ref, args.refvalid, n=args.tokens)
        arts = export_gguf(ref, tmp / "out" / "ref", QUANTS, check, greedy_tokens=20, progress=True)
        rows += rows_of(Path(args.refmodel).name, arts)
        raw["refmodel"] = [a.to_dict() for a in arts]
    headers = ["case", "quant", "arch", "size", "matrix bpw", "fallbacks", "max|Δ|", "rel", "top-1", "ppl ref", "ppl"]
    md = ["# GGUF export fidelity (llama.cpp vs PyTorch)", "",
          "Measured by `python benchmarks/export_fidelity.py"
          + (f" --refmodel {args.refmodel}" if args.refmodel else "") + "` (llama-cpp-python 0.3.36, CPU, "
          "F32 KV cache). rel = max|Δlogit| / max|logit|; F32 must be ≤ 1e-4. Random cases have "
          "weights ×10 and random biases (large logits, so errors are visible); perplexities of random "
          "models are meaningless beyond ref-vs-export. Tiny models have hidden 64, so every k-quant "
          "falls back to legacy types (listed as fallbacks).", "",
          markdown_table(headers, rows), "",
          f"Greedy 20 tokens, trained model, F32 GGUF: matching prefix {greedy['matching_prefix']}/20.", ""]
    (ROOT / "benchmarks" / "export_fidelity.md").write_text("\n".join(md))
    (ROOT / "benchmarks" / "export_fidelity.json").write_text(json.dumps(raw, indent=1, default=str))
    print("\n".join(md))


if __name__ == "__main__":
    main()
