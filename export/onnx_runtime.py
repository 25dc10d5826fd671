"""onnxruntime session over one of our exported files: logits for tokens, KV-cache greedy decode.

Reads the graph's own inputs to learn which layers carry a cache and their shapes
(see onnx_wrapper: `past_key_values.{layer}.key|value`, (B, n_kv_heads, T_past, head_dim)), so it
works for uniform and heterogeneous exports and for optimum's own uniform exports alike.
The benchmark stage reuses `OnnxLM.generate_timed` for latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from edgeprune.base.errors import ExportError

PAST_PREFIX = "past_key_values."


@dataclass
class GenerationTiming:
    prefill_s: float = 0.0  # wall seconds of the prompt pass
    decode_s: list[float] = field(default_factory=list)  # wall seconds of each 1-token step

    @property
    def tokens_per_s(self) -> float:
        return len(self.decode_s) / sum(self.decode_s) if self.decode_s else 0.0


class OnnxLM:
    """A loaded ONNX causal LM with flat KV inputs (optimum's naming)."""

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None,
                 providers: Optional[list[str]] = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX file {self.path} does not exist")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: ORT warns about unused initializers on quantized files
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # ORT raises InvalidProtobuf / Fail / InvalidGraph / RuntimeException
            first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
            raise ExportError(
                f"{self.path} is not a loadable ONNX model ({type(e).__name__}: {first}); "
                f"the file is corrupt or truncated: re-run `edgeprune export` to rewrite it"
            ) from None
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = [n for n in ("input_ids", "attention_mask") if n not in self.inputs]
        if missing or "logits" not in self.output_names:
            raise ExportError(f"{self.path} is not a causal-LM export: inputs {list(self.inputs)} lack "
                              f"{missing or ['logits output']}")
        self.past_names = [n for n in self.inputs if n.startswith(PAST_PREFIX)]
        self.kv_float = np.float16 if any("float16" in self.inputs[n].type for n in self.past_names) else np.float32

    # -- one call ------------------------------------------------------------------------------
    def empty_past(self, batch: int) -> dict[str, np.ndarray]:
        """Past of length 0 for the first step (what optimum feeds on the prompt pass)."""
        past = {}
        for name in self.past_names:
            shape = self.inputs[name].shape  # [batch_size, n_kv, past_sequence_length, head_dim]
            n_kv, head_dim = shape[1], shape[3]
            if not (isinstance(n_kv, int) and isinstance(head_dim, int)):
                raise ExportError(f"{self.path}: input {name} has symbolic heads/head_dim {shape}")
            past[name] = np.zeros((batch, n_kv, 0, head_dim), dtype=self.kv_float)
        return past

    def forward(self, input_ids: np.ndarray, past: Optional[dict[str, np.ndarray]] = None,
                attention_mask: Optional[np.ndarray] = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """input_ids (B, T) -> logits (B, T, V) and the present cache keyed as the next past."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        B, T = input_ids.shape
        if past is None:
            past = self.empty_past(B)
        past_len = next(iter(past.values())).shape[2] if past else 0
        if attention_mask is None:
            attention_mask = np.ones((B, past_len + T), dtype=np.int64)
        feeds: dict[str, np.ndarray] = {"input_ids": input_ids, "attention_mask": attention_mask, **past}
        if "position_ids" in self.inputs:
            feeds["position_ids"] = np.broadcast_to(np.arange(past_len, past_len + T, dtype=np.int64),
                                                    (B, T)).copy()
        outs = dict(zip(self.output_names, self.session.run(None, feeds)))
        present = {name.replace("present.", PAST_PREFIX, 1): v
                   for name, v in outs.items() if name.startswith("present.")}
        return outs["logits"], present

    def logits(self, tokens: Union[Sequence[int], np.ndarray]) -> np.ndarray:
        """Logits (T, V) of one token sequence in a single prompt pass."""
        ids = np.asarray(tokens, dtype=np.int64).reshape(1, -1)
        return self.forward(ids)[0][0]

    # -- generation ----------------------------------------------------------------------------
    def generate_timed(self, input_ids: Union[Sequence[int], np.ndarray], max_new_tokens: int = 20,
                       eos_token_id: Optional[int] = None) -> tuple[np.ndarray, GenerationTiming]:
        """Greedy decode with the KV cache; returns (prompt + new tokens (B, T + n), timings)."""
        seq = np.asarray(input_ids, dtype=np.int64)
        if seq.ndim == 1:
            seq = seq[None]
        timing = GenerationTiming()
        t0 = time.perf_counter()
        logits, past = self.forward(seq)
        timing.prefill_s = time.perf_counter() - t0
        for i in range(max_new_tokens):
            nxt = logits[:, -1].argmax(-1)[:, None].astype(np.int64)  # (B, 1)
            seq = np.concatenate([seq, nxt], axis=1)
            done = eos_token_id is not None and bool((nxt == eos_token_id).all())
            if done or i == max_new_tokens - 1:
                break  # the last token needs no further forward pass
            t0 = time.perf_counter()
            logits, past = self.forward(nxt, past)
            timing.decode_s.append(time.perf_counter() - t0)
        return seq, timing

    def generate(self, input_ids: Union[Sequence[int], np.ndarray], max_new_tokens: int = 20,
                 eos_token_id: Optional[int] = None) -> np.ndarray:
        return self.generate_timed(input_ids, max_new_tokens, eos_token_id)[0]
