"""Run llama.cpp (through llama-cpp-python) in a child process, so a bad file cannot kill us.

llama.cpp stops on some malformed inputs with GGML_ASSERT -> abort(), which no Python `try`
catches. Each call here starts `python -m edgeprune.export.llamacpp_worker` with a JSON request,
waits for it (with a timeout) and turns every way it can fail — Python exception, abort/signal,
timeout, missing result — into one ExportError naming the file, the job and llama.cpp's own
error lines. Logits come back as .npy (no pickles).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgeprune.base.errors import ExportError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600
_ERROR_WORDS = ("error", "failed", "wrong", "assert", "invalid", "abort", "corrupt", "exceed", "unexpected")


def have_llamacpp() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _error_lines(stderr: str, n: int = 4) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if any(w in ln.lower() for w in _ERROR_WORDS)]
    return " | ".join(lines[-n:]) if lines else (stderr.strip().splitlines() or [""])[-1][-300:]


def run_llamacpp(task: str, what: str, timeout_s: float = DEFAULT_TIMEOUT_S, **request: Any) -> tuple[dict[str, Any], Path]:
    """Run one worker task; return (result dict, its directory — valid until the next call's
    cleanup by the caller) or raise ExportError. `what` names the file for messages."""
    if not have_llamacpp():
        raise ExportError("llama-cpp-python is not installed: pip install llama-cpp-python==0.3.36 "
                          "(needed to quantize and validate GGUF files)")
    work = Path(tempfile.mkdtemp(prefix="edgeprune-llamacpp-"))
    req_path, res_path = work / "request.json", work / "result.json"
    req_path.write_text(json.dumps({"task": task, **request}))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, "-m", "edgeprune.export.llamacpp_worker", str(req_path), str(res_path)],
                              capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise ExportError(f"llama.cpp {task} of {what} did not finish in {timeout_s:.0f} s") from None
    result = json.loads(res_path.read_text()) if res_path.is_file() else None
    if proc.returncode < 0:  # killed by a signal: GGML_ASSERT -> SIGABRT, or a segfault
        sig = signal.Signals(-proc.returncode).name
        raise ExportError(f"llama.cpp crashed ({sig}) during {task} of {what}: {_error_lines(proc.stderr)}")
    if result is None:
        raise ExportError(f"llama.cpp {task} of {what} exited with code {proc.returncode} and no result: "
                          f"{_error_lines(proc.stderr)}")
    if not result.get("ok"):
        raise ExportError(f"llama.cpp could not {task} {what}: {result.get('error')}; llama.cpp says: "
                          f"{_error_lines(proc.stderr)}")
    return result, work


def _cleanup(work: Path) -> None:
    import shutil

    shutil.rmtree(work, ignore_errors=True)


def llamacpp_logits(model: Path, tokens: Sequence[int], f32_kv: bool = True, threads: int = 2) -> np.ndarray:
    """All-position logits (T, vocab) of `tokens` evaluated by llama.cpp in one batch."""
    result, work = run_llamacpp("logits", str(model), model=str(model), tokens=[int(t) for t in tokens],
                                f32_kv=f32_kv, threads=threads)
    try:
        return np.load(work / result["logits"], allow_pickle=False)
    finally:
        _cleanup(work)


def llamacpp_generate(model: Path, prompt: Sequence[int], n_new: int, f32_kv: bool = True) -> list[int]:
    """Greedy continuation of `prompt` (argmax, one token at a time through the KV cache)."""
    result, work = run_llamacpp("generate", str(model), model=str(model), prompt=[int(t) for t in prompt],
                                n_new=int(n_new), f32_kv=f32_kv)
    _cleanup(work)
    return [int(t) for t in result["tokens"]]


def llamacpp_tokenize(model: Path, text: str) -> list[int]:
    """Token ids llama.cpp's own tokenizer gives `text` (no BOS, no special-token parsing)."""
    result, work = run_llamacpp("tokenize", str(model), model=str(model), text=text)
    _cleanup(work)
    return [int(t) for t in result["ids"]]


def llamacpp_nll(model: Path, tokens: Sequence[int], windows: Sequence[tuple[int, int, int]],
                 threads: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S) -> tuple[float, int]:
    """(summed NLL in nats, scored tokens) of `tokens` under the GGUF as it is (its own quant
    types, f16 KV cache as apps run it), window by window as evaluate.window_plan lays them out."""
    result, work = run_llamacpp("nll", str(model), timeout_s=timeout_s, model=str(model),
                                tokens=[int(t) for t in tokens], windows=[list(w) for w in windows],
                                threads=threads)
    _cleanup(work)
    return float(result["nll"]), int(result["n_tokens"])


def llamacpp_chat(model: Path, messages: Sequence[dict[str, str]], max_tokens: int = 32,
                  n_ctx: int = 512, threads: int = 2, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """One greedy `create_chat_completion` in llama.cpp with the chat format it picks itself from
    the file: {chat_format, content, prompt_tokens, completion_tokens, finish_reason}."""
    result, work = run_llamacpp("chat", str(model), timeout_s=timeout_s, model=str(model),
                                messages=[dict(m) for m in messages], max_tokens=int(max_tokens),
                                n_ctx=int(n_ctx), threads=threads)
    _cleanup(work)
    return {k: v for k, v in result.items() if k != "ok"}


def llamacpp_quantize(src: Path, dst: Path, ftype: int, threads: Optional[int] = None,
                      head_type: Optional[int] = None, tied: bool = False) -> None:
    """Quantize `src` into `dst` with llama.cpp's own quantizer (llama_model_quantize with its
    default params: k-quant fallbacks and the per-tensor mixes of *_K_M are llama.cpp's), the
    output head at GGML type `head_type` when given (`tied`: the head is the token embedding)."""
    result, work = run_llamacpp("quantize", str(src), src=str(src), dst=str(dst), ftype=int(ftype),
                                threads=threads or min(4, os.cpu_count() or 1),
                                head_type=None if head_type is None else int(head_type), tied=bool(tied))
    _cleanup(work)
