"""Child-process side of `edgeprune generate/chat` on a GGUF: one llama.cpp completion per process.

Run as `python -m edgeprune.pipeline.generate_worker REQUEST.json RESULT.json`. llama.cpp aborts on some
bad files (GGML_ASSERT), which only ends this child. The prompt is tokenized by llama.cpp's own
tokenizer (special tokens a chat template writes are parsed as such); decoding is greedy at
temperature 0, else top-k sampling with numpy (the same rule as edgeprune.pipeline.generate). Imports no
torch: only numpy and llama_cpp.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def complete(req: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    from edgeprune.export.llamacpp_buffers import safe_buffers

    safe_buffers()  # plain CPU kernels where llama.cpp's AMX repack crashes

    n_new = int(req["max_new_tokens"])
    probe = llama_cpp.Llama(model_path=req["model"], vocab_only=True, verbose=False)
    ids = probe.tokenize(req["prompt"].encode("utf-8"), add_bos=True, special=True)
    ids = ids or [probe.token_bos()]
    # the context llama.cpp allocates: what the request needs, at most what the model was trained
    # for (a request for a billion tokens would ask for a KV cache of a billion cells)
    meta = probe.metadata  # a vocab-only load reads no hyperparameters: the context is in the metadata
    trained = int(meta.get(f"{meta.get('general.architecture', '')}.context_length") or 0) or len(ids) + n_new + 8
    probe.close()
    ids = ids[-max(1, trained - 1):]  # as the PyTorch runner does, a prompt past the context keeps its end
    n_ctx = min(len(ids) + n_new + 8, trained)
    llm = llama_cpp.Llama(model_path=req["model"], n_ctx=n_ctx, n_batch=max(8, len(ids)),
                          n_gpu_layers=0, seed=int(req.get("seed", 0)), logits_all=True, verbose=False)
    rng = np.random.default_rng(int(req.get("seed", 0)))
    temperature, top_k = float(req.get("temperature", 0.0)), int(req.get("top_k") or 0)
    eos = llm.token_eos()
    llm.eval(ids)
    out: list[int] = []
    full = None
    for _ in range(n_new):
        logits = np.asarray(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        if temperature <= 0:
            nxt = int(np.argmax(logits))
        else:
            z = logits / temperature
            if top_k:
                z = np.where(z < np.partition(z, -top_k)[-top_k], -np.inf, z)
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
        if req.get("stop_at_eos", True) and nxt == eos:
            break
        out.append(nxt)
        if llm.n_tokens >= n_ctx:  # the context is full: what came so far is the answer
            full = n_ctx
            break
        llm.eval([nxt])
    text = llm.detokenize(out).decode("utf-8", errors="replace")
    llm.close()  # free while llama_cpp is still importable (its __del__ at exit is noisy)
    return {"text": text, "prompt_tokens": len(ids), "new_tokens": len(out), "tokens": out, "context": full}


def main(argv: list[str]) -> int:
    req_path, res_path = Path(argv[0]), Path(argv[1])
    try:
        res = {"ok": True, **complete(json.loads(req_path.read_text()))}
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        res = {"ok": False, "error": f"{type(e).__name__}: {e}".replace("\n", " ")}
    res_path.write_text(json.dumps(res))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
