"""The "gguf" exporter: float GGUF from our writer, quantized GGUFs from llama.cpp, every file
reloaded in llama.cpp and compared with PyTorch (DESIGN §6).

Per export:
1. write `<name>-F32.gguf` (always: it is the reference the float check gates on and the source
   every quantized file is made from; removed afterwards unless F32 was asked for);
2. check llama.cpp tokenizes a sample exactly as tokenizer.json does;
3. F16 / BF16 come from our writer, every other preset from `llama_model_quantize` (in a child);
4. every file: all-position logits of the held-out check tokens in llama.cpp (F32 KV cache) vs
   PyTorch -> `logit_fidelity`. F32 must be within F32_REL_TOL (FidelityError naming the file,
   layer count and figures otherwise); other files report their figures and fail only on
   non-finite logits. Greedy decoding of the F32 file is compared with ours for `greedy_tokens`.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeprune.base.atomic_io import atomic_path
from edgeprune.base.errors import ExportError, FidelityError
from edgeprune.export.fidelity import check_tolerance, float32_model, logit_fidelity, reference_logits
from edgeprune.base.hashing import file_sha256
from edgeprune.export.registry import Artifact, export_stem, register_exporter
from edgeprune.shape.gguf_types import head_type_of
from edgeprune.shape.quant_presets import F32_REL_TOL, GGUF_FLOAT, canonical_gguf, gguf_ftype, row_type

log = logging.getLogger(__name__)

TOKENIZER_SAMPLE = ("Once upon a time, there were 3 little pigs.\nThey built 12 houses -- one of straw!\n"
                    "  \"Don't\" she said; it's 2024... (maybe)\tOK?")


def check_tokenizer(gguf_path: Path, tokenizer_dir: Optional[Path], text: str = TOKENIZER_SAMPLE) -> Optional[dict[str, Any]]:
    """Compare llama.cpp's tokenization of `text` with tokenizer.json's; raise on a mismatch.
    None when there is no tokenizer.json to compare with."""
    from edgeprune.export.llamacpp_runner import llamacpp_tokenize

    tj = tokenizer_dir / "tokenizer.json" if tokenizer_dir else None
    if not (tj and tj.is_file()):
        return None
    from edgeprune.data.tokens import load_tokenizer

    ours = load_tokenizer(tokenizer_dir).encode(text)  # as saved, no special tokens added
    theirs = llamacpp_tokenize(gguf_path, text)
    if ours != theirs:
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise ExportError(f"{gguf_path.name}: llama.cpp tokenizes differently from tokenizer.json "
                          f"(first difference at token {first}: ours {ours[first:first + 5]} vs llama.cpp "
                          f"{theirs[first:first + 5]}); the pre-tokenizer mapping is wrong for this tokenizer")
    return {"sample_tokens": len(ours), "match": True}


def _validate(path: Path, quant: str, ref: np.ndarray, tokens: np.ndarray, n_layers: int, arch: str) -> dict[str, float]:
    from edgeprune.export.llamacpp_runner import llamacpp_logits

    got = llamacpp_logits(path, tokens.tolist())
    if not np.isfinite(got).all():
        raise FidelityError(f"{path.name}: llama.cpp produced non-finite logits ({n_layers} layers, arch {arch})")
    fid = logit_fidelity(ref, got, tokens)
    if quant == "F32":
        check_tolerance(fid, F32_REL_TOL, f"{path.name} ({n_layers} layers, arch {arch}, F32 KV cache)")
    elif not math.isfinite(fid["ppl"]):
        raise FidelityError(f"{path.name}: perplexity is not finite ({fid['ppl']})")
    return fid


def decided_head(ckpt: Any, quant: str) -> Optional[str]:
    """The head type the pruning decided for `quant` (edgeprune.json "pruning" → "head", written by
    the search under a decode target), or None: a decision holds for the quant it was priced at."""
    head = (getattr(ckpt, "meta", None) or {}).get("pruning", {}).get("head") or {}
    if head.get("decided") and str(head.get("quant", "")).upper() == quant.upper():
        return head_type_of(head.get("type"))
    return None


@register_exporter("gguf")
def export_gguf(ckpt: Any, out_dir: Path, quants: list[str], check_tokens: Any, *, name: Optional[str] = None,
                greedy_tokens: int = 20, require_greedy: bool = False, progress: bool = True,
                head_type: Optional[str] = None, **_: Any) -> list[Artifact]:
    """Write, quantize and validate GGUF files for `ckpt` under `out_dir`; one Artifact per quant.

    check_tokens: 1-D LongTensor evaluated by both runtimes (a held-out slice: its perplexity is
    the `ppl` figure). greedy_tokens: continuation length compared with PyTorch on the F32 file
    (0 = skip); require_greedy makes a difference an error rather than a reported figure.
    head_type: the GGML type of the output head (the tied embedding) in every quantized file
    (HEAD_TYPES; None: the pruning's decision for the quant it was decided at, see `decided_head`,
    else llama.cpp's choice, Q6_K or Q8_0); float files keep theirs.
    """
    from edgeprune.base.progress import progress_bar

    from edgeprune.export.gguf_writer import write_gguf
    from edgeprune.files.gguf_reader import tensor_report
    from edgeprune.export.llamacpp_runner import llamacpp_generate, llamacpp_quantize

    quants = [canonical_gguf(q) for q in quants] or ["F32"]
    head_type = head_type_of(head_type)  # a bad name is one line before any file is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, spec = float32_model(ckpt.model), ckpt.spec  # the greedy check compares with the F32 file
    stem = name or export_stem(ckpt)
    tokens = np.asarray(check_tokens.reshape(-1).tolist(), dtype=np.int64)
    if tokens.size < 2:
        raise ExportError("the check tokens need at least 2 tokens")
    ref = reference_logits(model, check_tokens.reshape(-1))
    # general.name comes from the model (edgeprune.json), not from the directory name;
    # an explicit `name` overrides it
    writer_kw = dict(tokenizer_dir=ckpt.path, config=getattr(ckpt, "config", {}), meta=getattr(ckpt, "meta", {}),
                     name=name)

    f32 = out_dir / f"{stem}-F32.gguf"
    summary = write_gguf(model, f32, ftype="F32", **writer_kw)
    arch = summary["arch"]
    artifacts: list[Artifact] = []
    try:
        tok_check = check_tokenizer(f32, ckpt.path)
        f32_fid = _validate(f32, "F32", ref, tokens, spec.n_layers, arch)
        greedy = _greedy_check(model, f32, tokens, greedy_tokens, require_greedy, llamacpp_generate)
        bar = progress_bar(quants, desc="gguf", unit="file", disable=not progress)
        for q in bar:
            bar.set_postfix_str(q)
            path = out_dir / f"{stem}-{q}.gguf"
            if q == "F32":
                fid = f32_fid
            else:
                if q in GGUF_FLOAT:
                    write_gguf(model, path, ftype=q, **writer_kw)
                else:
                    with atomic_path(path) as tmp:
                        # llama.cpp applies an asked-for head type without its row fallback (a Q6_K
                        # head of 576-wide rows aborts it): ask for the type the row really takes
                        want = head_type or decided_head(ckpt, q)
                        head = row_type(want, spec.hidden_size) if want else None
                        llamacpp_quantize(f32, tmp, gguf_ftype(q), head_type=_ggml_type(head),
                                          tied=spec.tie_word_embeddings)
                fid = _validate(path, q, ref, tokens, spec.n_layers, arch)
            report = tensor_report(path)
            details = {**summary, **report, "tokenizer_check": tok_check}
            if q not in GGUF_FLOAT and (head_type or decided_head(ckpt, q)):
                details["head_type"] = head_type or decided_head(ckpt, q)
                details["head_type_from"] = "--head-type" if head_type else "pruning"
            if q == "F32":
                details["greedy"] = greedy
            if report["fallbacks"]:
                log.info("%s: %d tensors fell back from %s (row length not a block multiple)", path.name,
                         len(report["fallbacks"]), report["fallbacks"][0]["wanted"])
            artifacts.append(Artifact("gguf", q, path, path.stat().st_size, file_sha256(path), fid, details))
    except BaseException:
        for a in artifacts:
            a.path.unlink(missing_ok=True)
        f32.unlink(missing_ok=True)
        raise
    if "F32" not in quants:
        f32.unlink(missing_ok=True)
    return artifacts


def _ggml_type(name: Optional[str]) -> Optional[int]:
    import gguf

    return None if name is None else int(gguf.GGMLQuantizationType[name])


def _greedy_check(model: Any, f32: Path, tokens: np.ndarray, n: int, required: bool, generate: Any) -> Optional[dict[str, Any]]:
    if n <= 0:
        return None
    import torch

    prompt = tokens[: max(1, min(8, len(tokens) // 2))]
    ours = model.generate(torch.as_tensor(prompt)[None], max_new_tokens=n)[0, len(prompt):].tolist()
    theirs = generate(f32, prompt.tolist(), n)
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), n)
    if required and same < n:
        raise FidelityError(f"{f32.name}: greedy decoding diverges from PyTorch at token {same} of {n} "
                            f"(ours {ours[same:same + 3]} vs llama.cpp {theirs[same:same + 3]})")
    return {"tokens": n, "matching_prefix": same, "ours": ours, "llamacpp": theirs}
