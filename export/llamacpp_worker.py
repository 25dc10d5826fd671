"""Child-process side of llamacpp_runner: one llama.cpp job per process.

Run as `python -m edgeprune.export.llamacpp_worker REQUEST.json RESULT.json`. llama.cpp reports
some bad files with GGML_ASSERT / abort(), which kills the whole process; running here means only
this child dies and the runner turns the exit status into an ExportError. Arrays go to .npy files
beside the result (no pickles). Nothing here imports edgeprune's heavy modules (torch).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def _load(path: str, *, n_ctx: int = 256, f32_kv: bool = True, vocab_only: bool = False, threads: int = 2) -> Any:
    import llama_cpp

    from edgeprune.export.llamacpp_buffers import safe_buffers

    safe_buffers()  # numbers are checked here: plain CPU kernels where the AMX repack crashes

    kw: dict[str, Any] = dict(n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True, n_gpu_layers=0,
                              n_threads=threads, n_threads_batch=threads, vocab_only=vocab_only,
                              verbose=True)  # llama.cpp's log goes to our stderr: the runner quotes its errors
    if f32_kv:  # the float check compares against PyTorch in fp32: no f16 rounding of K/V
        kw.update(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    return llama_cpp.Llama(model_path=path, **kw)


def task_logits(req: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    tokens = [int(t) for t in req["tokens"]]
    llm = _load(req["model"], n_ctx=max(len(tokens), 8), f32_kv=req.get("f32_kv", True), threads=req.get("threads", 2))
    llm.eval(tokens)
    logits = np.array(llm.scores[: len(tokens)], dtype=np.float32)  # (T, V)
    np.save(out_dir / "logits.npy", logits)
    return {"logits": "logits.npy", "n_vocab": int(llm.n_vocab())}


def task_generate(req: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Greedy decoding token by token through llama.cpp's KV cache (argmax of the logits, no
    sampler: the comparison with PyTorch must not depend on sampler defaults)."""
    prompt = [int(t) for t in req["prompt"]]
    n_new = int(req["n_new"])
    llm = _load(req["model"], n_ctx=len(prompt) + n_new + 1, f32_kv=req.get("f32_kv", True),
                threads=req.get("threads", 2))
    llm.eval(prompt)
    out = []
    for _ in range(n_new):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        out.append(nxt)
        llm.eval([nxt])
    return {"tokens": out}


def task_tokenize(req: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    llm = _load(req["model"], vocab_only=True)
    ids = llm.tokenize(req["text"].encode("utf-8"), add_bos=False, special=False)
    return {"ids": [int(i) for i in ids]}


def task_quantize(req: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(req["ftype"])
    params.nthread = int(req.get("threads", 2))
    if req.get("head_type") is not None:
        # the head is output.weight, or token_embd.weight when tied: llama.cpp applies
        # output_tensor_type to the former and token_embedding_type to the latter
        params.output_tensor_type = int(req["head_type"])
        if req.get("tied"):
            params.token_embedding_type = int(req["head_type"])
    rc = llama_cpp.llama_model_quantize(req["src"].encode(), req["dst"].encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize returned {rc}")
    return {"rc": rc}


def task_nll(req: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Summed NLL (nats) of the windows' targets, with the same window plan as PyTorch's
    sequence_nll: each window [begin, end) of `tokens` is evaluated from an empty cache and its
    last n_new predictions (of tokens[begin+1 : end+1]) are scored."""
    tokens = [int(t) for t in req["tokens"]]
    windows = [tuple(int(x) for x in w) for w in req["windows"]]
    longest = max(e - b for b, e, _ in windows)
    llm = _load(req["model"], n_ctx=max(longest, 8), f32_kv=req.get("f32_kv", False), threads=req.get("threads", 2))
    total, count = 0.0, 0
    for b, e, n_new in windows:
        llm.reset()
        llm.eval(tokens[b:e])
        logits = np.array(llm.scores[: e - b], dtype=np.float64)[-n_new:]  # (n_new, V)
        targets = np.array(tokens[b + 1:e + 1][-n_new:])
        top = logits.max(-1, keepdims=True)
        logz = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
        total += float((logz - logits[np.arange(n_new), targets]).sum())
        count += n_new
    return {"nll": total, "n_tokens": count}


def task_chat(req: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """`create_chat_completion` as an app calls it: no chat_format given, so llama-cpp-python picks
    the format from the file's `tokenizer.chat_template` (or falls back to llama-2 without one)."""
    llm = _load(req["model"], n_ctx=int(req.get("n_ctx", 512)), f32_kv=False, threads=req.get("threads", 2))
    out = llm.create_chat_completion(messages=req["messages"], max_tokens=int(req.get("max_tokens", 32)),
                                     temperature=0.0, top_k=1, seed=0)
    return {"chat_format": llm.chat_format, "content": out["choices"][0]["message"]["content"],
            "prompt_tokens": int(out["usage"]["prompt_tokens"]),
            "completion_tokens": int(out["usage"]["completion_tokens"]),
            "finish_reason": out["choices"][0].get("finish_reason")}


TASKS = {"nll": task_nll, "chat": task_chat, "logits": task_logits, "generate": task_generate, "tokenize": task_tokenize, "quantize": task_quantize}


def main(argv: list[str]) -> int:
    req_path, res_path = Path(argv[0]), Path(argv[1])
    req = json.loads(req_path.read_text())
    try:
        result = TASKS[req["task"]](req, res_path.parent)
        result["ok"] = True
    except Exception as e:  # a Python-level failure (load error, bad args): report, don't crash
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    res_path.write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
