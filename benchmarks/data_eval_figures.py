"""Measure the data layer and evaluation; writes benchmarks/data_eval_figures.{json,md}.

    python benchmarks/data_eval_figures.py [--shared /work/shared] [--ppl-tokens 65536] [--seq-len 1024]

Figures: embedded corpus build time and size; embedded tokenizer training time (and that two
trainings give the same file); tokenization throughput and token counts (embedded corpus,
refcorpus/valid.txt); cache-hit latency; the reference teacher's perplexity on the first
`--ppl-tokens` tokens of valid.txt (0 = all of it, ~452k tokens) at `--seq-len`, fp32 on CPU.
Runs in a private cache ($EDGEPRUNE_CACHE is set to a temporary folder) so every figure is cold.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.environ.get("EDGEPRUNE_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--ppl-tokens", type=int, default=65536)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "data_eval_figures"))
    args = ap.parse_args()
    os.environ["EDGEPRUNE_CACHE"] = tempfile.mkdtemp(prefix="edgeprune-bench-cache-")

    import torch

    from edgeprune.data.tokens import embedded_corpus_path, embedded_tokenizer_dir, load_tokenizer, token_file
    from edgeprune.data.embedded import train_tokenizer
    from edgeprune.base.table import markdown_table

    rows, figures = [], {"python": platform.python_version(), "torch_threads": torch.get_num_threads(),
                         "cpu_count": os.cpu_count()}

    t = time.perf_counter()
    corpus = embedded_corpus_path()
    figures["embedded_corpus_build_s"] = time.perf_counter() - t
    figures["embedded_corpus_mb"] = corpus.stat().st_size / 1e6
    rows.append(["embedded corpus build", f"{figures['embedded_corpus_build_s']:.2f} s",
                 f"{figures['embedded_corpus_mb']:.2f} MB of stdlib text"])

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        t = time.perf_counter()
        train_tokenizer(corpus, Path(a))
        figures["tokenizer_train_s"] = time.perf_counter() - t
        train_tokenizer(corpus, Path(b))
        figures["tokenizer_train_deterministic"] = filecmp.cmp(Path(a) / "tokenizer.json", Path(b) / "tokenizer.json",
                                                               shallow=False)
        figures["shipped_tokenizer_equals_retrained"] = filecmp.cmp(
            Path(a) / "tokenizer.json", embedded_tokenizer_dir() / "tokenizer.json", shallow=False)
    rows.append(["BPE tokenizer training (vocab 4096)", f"{figures['tokenizer_train_s']:.2f} s",
                 f"deterministic: {figures['tokenizer_train_deterministic']}; shipped file == retrained here: "
                 f"{figures['shipped_tokenizer_equals_retrained']}"])

    tok = load_tokenizer(embedded_tokenizer_dir())
    t = time.perf_counter()
    arr = token_file(corpus, tok, progress=False)
    dt = time.perf_counter() - t
    figures.update(embedded_tokens=len(arr), embedded_tokenize_s=dt,
                   embedded_bytes_per_token=corpus.stat().st_size / len(arr))
    rows.append(["tokenize embedded corpus", f"{dt:.2f} s",
                 f"{len(arr):,} tokens, {figures['embedded_bytes_per_token']:.2f} bytes/token, "
                 f"{corpus.stat().st_size / 1e6 / dt:.2f} MB/s"])
    t = time.perf_counter()
    token_file(corpus, tok, progress=False)
    figures["cache_hit_s"] = time.perf_counter() - t
    rows.append(["token_file cache hit (hash 6 MB + mmap)", f"{figures['cache_hit_s'] * 1000:.0f} ms", ""])

    shared = Path(args.shared)
    ref, valid = shared / "refmodels" / "smol-llama-32m", shared / "refcorpus" / "valid.txt"
    if ref.is_dir() and valid.is_file():
        from edgeprune.files.checkpoint import load_checkpoint
        from edgeprune.pipeline.evaluate import sequence_nll

        rtok = load_tokenizer(ref)
        t = time.perf_counter()
        v = token_file(valid, rtok, progress=False)
        dt = time.perf_counter() - t
        figures.update(valid_tokens=len(v), valid_tokenize_s=dt)
        rows.append(["tokenize refcorpus/valid.txt", f"{dt:.2f} s", f"{len(v):,} tokens (README: ≈452k)"])
        model = load_checkpoint(ref).model
        n = args.ppl_tokens or len(v)
        t = time.perf_counter()
        nll = sequence_nll(model, v, seq_len=args.seq_len, max_tokens=n, batch_size=4, progress=True)
        dt = time.perf_counter() - t
        figures.update(ref_ppl=nll.perplexity, ref_ppl_tokens=nll.n_tokens, ref_ppl_seq_len=args.seq_len,
                       ref_ppl_s=dt)
        rows.append([f"smol-llama-32m perplexity, first {nll.n_tokens:,} tokens of valid.txt, seq {args.seq_len}",
                     f"{dt:.1f} s", f"ppl {nll.perplexity:.3f} (README: 7.446 on all of valid.txt, bf16 autocast)"])

    figures["load_average_1m_at_end"] = os.getloadavg()[0]  # wall times inflate on a shared machine
    md = ("# data + eval figures\n\n" + markdown_table(["what", "time", "result"], rows)
          + f"\n\nPython {figures['python']}, {figures['cpu_count']} CPUs, {figures['torch_threads']} torch threads, "
          f"1-minute load average at the end {figures['load_average_1m_at_end']:.1f}.\n")
    Path(args.out + ".json").write_text(json.dumps(figures, indent=2) + "\n")
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
