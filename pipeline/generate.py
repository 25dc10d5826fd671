"""Try a model: text in, text out, from any file edgeprune writes.

    lm = open_lm("dist/model")                 # HF dir: PyTorch (our EdgeLM)
    lm = open_lm("dist/gguf/model-Q8_0.gguf")  # llama.cpp, in a subprocess (a bad file cannot kill us)
    lm = open_lm("dist/onnx/model-int8.onnx")  # onnxruntime (tokenizer.json beside the graph)
    lm.complete("Once upon a time", max_new_tokens=40)
    lm.complete(lm.chat_prompt([{"role": "user", "content": "hi"}]), ...)

Decoding is greedy by default (temperature 0: the same text from every runtime for the same
weights), sampled with `temperature` > 0 and `top_k`. Chat prompts use the model's own chat
template (tokenizer_config.json, or GGUF `tokenizer.chat_template`); a model without one gets a
plain "User:/Assistant:" prompt, and `has_chat_template` says so.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgeprune.data.chat_template import PLAIN_CHAT_TEMPLATE, render_chat  # noqa: F401 (this module's API too)
from edgeprune.base.errors import CheckpointError, ExportError

log = logging.getLogger(__name__)

@dataclass
class Completion:
    text: str  # the generated continuation only
    prompt_tokens: int
    new_tokens: int
    runtime: str  # "pytorch" | "llama.cpp" | "onnxruntime"
    context: Optional[int] = None  # set when generation stopped because the model's context was full


def kind_of(path: Path) -> str:
    """'gguf', 'onnx' or 'hf' (a checkpoint directory / hub name); anything else is an error."""
    p = Path(path)
    if p.suffix == ".gguf":
        return "gguf"
    if p.suffix == ".onnx":
        return "onnx"
    if p.is_dir() or (not p.exists() and "/" in str(path) and not p.suffix):
        return "hf"
    raise CheckpointError(f"{path}: not a model edgeprune can run (give a checkpoint directory, a .gguf or "
                          "an .onnx file)")


def _sample(logits: np.ndarray, temperature: float, top_k: Optional[int], rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


class _TokenizerLM:
    """Shared by the PyTorch and ONNX runners: tokenizer.json + chat template from a directory."""

    runtime = ""
    rows: Optional[int] = None  # the model's embedding rows: a prompt id at or past them indexes nothing

    def __init__(self, tok_dir: Path):
        from edgeprune.data.tokens import load_tokenizer

        self.tok = load_tokenizer(tok_dir)
        cfg_path = Path(tok_dir) / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        tpl = cfg.get("chat_template")
        chat_file = Path(tok_dir) / "chat_template.jinja"  # transformers >= 4.43 writes it beside
        if not tpl and chat_file.is_file():
            tpl = chat_file.read_text()
        self.chat_template: Optional[str] = tpl if isinstance(tpl, str) else None
        self.template_source = str(chat_file if not cfg.get("chat_template") and chat_file.is_file() else cfg_path)
        # as llama.cpp does with tokenizer.ggml.add_bos_token: BOS first when the config asks
        self.add_bos = bool(cfg.get("add_bos_token", False)) and self.tok.bos_id is not None

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        bos = self.tok._tok.id_to_token(self.tok.bos_id) if self.tok.bos_id is not None else ""
        eos = self.tok._tok.id_to_token(self.tok.eos_id) if self.tok.eos_id is not None else ""
        return render_chat(self.chat_template, messages, bos or "", eos or "", source=self.template_source)

    def _encode(self, text: str) -> list[int]:
        # special tokens written by a chat template (<|im_start|>, ...) are parsed as such
        return self.tok._tok.encode(text, add_special_tokens=False).ids

    def _next_logits(self, ids: list[int]) -> Any:  # a generator: send None, get logits per step
        raise NotImplementedError

    def complete(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_k: Optional[int] = 40, seed: int = 0, stop_at_eos: bool = True) -> Completion:
        ids = ([self.tok.bos_id] if self.add_bos else []) + self._encode(prompt)
        if not ids:
            ids = [self.tok.bos_id if self.tok.bos_id is not None else 0]
        past = [i for i in ids if self.rows is not None and not 0 <= i < self.rows]
        if past:  # an added token beyond the vocabulary, or a tokenizer larger than the model
            piece = self.tok._tok.id_to_token(past[0])
            raise CheckpointError(f"the prompt's token id {past[0]} ({piece!r}) is at or past the model's "
                                  f"{self.rows} embedding rows: its tokenizer holds tokens the model has no row for")
        rng = np.random.default_rng(seed)
        out: list[int] = []
        steps = self._next_logits(ids)
        logits = next(steps)
        full = None
        for _ in range(max_new_tokens):
            nxt = _sample(logits, temperature, top_k, rng)
            if stop_at_eos and nxt == self.tok.eos_id:
                break
            out.append(nxt)
            try:
                logits = steps.send(nxt)
            except StopIteration as stop:  # the runner's context is full: what came so far is the answer
                full = stop.value
                break
        return Completion(self.tok.decode(out, skip_special_tokens=True), len(ids), len(out), self.runtime, full)


class TorchLM(_TokenizerLM):
    runtime = "pytorch"

    def __init__(self, model_dir: str):
        from edgeprune.files.checkpoint import load_checkpoint

        self.ck = load_checkpoint(model_dir)
        if self.ck.path is None:
            raise CheckpointError(f"{model_dir}: no checkpoint directory with a tokenizer")
        super().__init__(Path(self.ck.path))
        self.model = self.ck.model.eval()
        self.max_len = self.ck.spec.max_position_embeddings
        self.rows = self.ck.spec.vocab_size

    def _next_logits(self, ids: list[int]):
        import torch

        with torch.no_grad():
            ids = ids[-self.max_len:]
            out = self.model(torch.as_tensor([ids]), use_cache=True)
            past, pos = out.past_key_values, len(ids)
            while True:
                nxt = yield out.logits[0, -1].float().numpy()
                if pos >= self.max_len:
                    return self.max_len  # complete() stops here and reports the context
                out = self.model(torch.as_tensor([[nxt]]), past_key_values=past, use_cache=True,
                                 position_ids=torch.as_tensor([[pos]]))
                past, pos = out.past_key_values, pos + 1


class OnnxRunLM(_TokenizerLM):
    runtime = "onnxruntime"

    def __init__(self, path: str):
        from edgeprune.export.onnx_runtime import OnnxLM

        from edgeprune.files.onnx_file import onnx_problem

        p = Path(path)
        problem = onnx_problem(p)  # the file first: a text file is no model missing its tokenizer
        if problem is not None:
            raise ExportError(problem)
        tok_dir = next((d for d in (p.parent, p.parent.parent / "model") if (d / "tokenizer.json").is_file()), None)
        if tok_dir is None:
            raise ExportError(f"{p}: no tokenizer.json beside it (edgeprune export writes one into the ONNX folder)")
        super().__init__(tok_dir)
        self.lm = OnnxLM(p)
        from edgeprune.files.spec_of import spec_or_none

        spec = spec_or_none(p)  # our exports carry their spec: the context to stop at
        self.max_len = spec.max_position_embeddings if spec is not None else None
        self.rows = spec.vocab_size if spec is not None else None

    def _next_logits(self, ids: list[int]):
        ids = ids[-self.max_len:] if self.max_len else ids
        logits, past = self.lm.forward(np.asarray([ids], dtype=np.int64), None)
        pos = len(ids)
        while True:
            nxt = yield np.asarray(logits[0, -1], dtype=np.float32)
            if self.max_len and pos >= self.max_len:
                return self.max_len  # complete() stops here and reports the context
            logits, past = self.lm.forward(np.asarray([[nxt]], dtype=np.int64), past)
            pos += 1


class GgufLM:
    """llama.cpp through llama-cpp-python in a child process (generate_worker.py), one per call:
    an abort() on a bad file ends that child, not us."""

    runtime = "llama.cpp"

    def __init__(self, path: str):
        from edgeprune.export.llamacpp_runner import have_llamacpp

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"GGUF file {self.path} does not exist")
        if not have_llamacpp():
            raise ExportError("llama-cpp-python is not installed: pip install edgeprune[llama]")
        self.chat_template, self.bos, self.eos = _gguf_chat_fields(self.path)

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        return render_chat(self.chat_template, messages, self.bos, self.eos, source=str(self.path))

    def complete(self, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_k: Optional[int] = 40, seed: int = 0, stop_at_eos: bool = True) -> Completion:
        req = {"model": str(self.path), "prompt": prompt, "max_new_tokens": max_new_tokens,
               "temperature": temperature, "top_k": top_k or 0, "seed": seed, "stop_at_eos": stop_at_eos}
        with tempfile.TemporaryDirectory(prefix="edgeprune-generate-") as work:
            rq, rs = Path(work) / "request.json", Path(work) / "result.json"
            rq.write_text(json.dumps(req))
            done = subprocess.run([sys.executable, "-m", "edgeprune.pipeline.generate_worker", str(rq), str(rs)],
                                  capture_output=True, text=True, timeout=600)
            res = json.loads(rs.read_text()) if rs.is_file() else None
        if res is None or not res.get("ok"):
            why = (res or {}).get("error") or (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            raise ExportError(f"llama.cpp could not run {self.path}: {why}")
        return Completion(res["text"], res["prompt_tokens"], res["new_tokens"], self.runtime, res.get("context"))


def _gguf_chat_fields(path: Path) -> tuple[Optional[str], str, str]:
    """(chat template, bos text, eos text) from GGUF metadata (gguf's own key constants)."""
    from gguf.constants import Keys

    from edgeprune.files.gguf_reader import open_gguf

    r = open_gguf(path)  # a lying header is one line naming the defect (edgeprune/files/gguf_header.py)

    def get(key: str) -> Any:
        f = r.get_field(key)
        return None if f is None else f.contents()

    tokens = get(Keys.Tokenizer.LIST) or []

    def tok(key: str) -> str:
        i = get(key)
        return str(tokens[int(i)]) if i is not None and 0 <= int(i) < len(tokens) else ""

    tpl = get(Keys.Tokenizer.CHAT_TEMPLATE)
    return (str(tpl) if tpl else None), tok(Keys.Tokenizer.BOS_ID), tok(Keys.Tokenizer.EOS_ID)


def open_lm(model: str) -> Any:
    """A runner for `model` by its kind: HF dir (PyTorch), .gguf (llama.cpp), .onnx (onnxruntime)."""
    kind = kind_of(Path(model))
    return {"hf": TorchLM, "gguf": GgufLM, "onnx": OnnxRunLM}[kind](model)
