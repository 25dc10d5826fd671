"""The tokenizer half of a GGUF file: vocabulary, merges, special ids and chat template.

llama.cpp re-implements tokenization from the metadata alone, so what we write must make it
produce the same ids as the `tokenizers` library does from tokenizer.json:
- byte-level BPE (GPT-2 / SmolLM / Qwen2 / Llama-3 style) -> `tokenizer.ggml.model = "gpt2"` with
  the merges and a `tokenizer.ggml.pre` name whose regex llama.cpp knows (llama-vocab.cpp picks the
  split regex from that name; we pick the name from the tokenizer.json pre-tokenizer itself rather
  than convert_hf_to_gguf's hash of a probe string, so unseen-but-standard tokenizers work);
- SentencePiece (tokenizer.model) -> `"llama"` with scores and token types;
- no tokenizer at all -> `"none"` with the vocabulary size (llama.cpp then evaluates token ids only).
The exporter checks the result by tokenizing a sample in llama.cpp (gguf_export.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.errors import ExportError
from edgeprune.files.checkpoint import read_json  # size-bounded, depth-safe: one line for a hostile file
from edgeprune.files.gguf_format import SPLIT_REGEX_PRE

log = logging.getLogger(__name__)



def bpe_pre_name(pre_tokenizer: Optional[dict[str, Any]]) -> str:
    """The llama.cpp `tokenizer.ggml.pre` name equivalent to a tokenizer.json pre-tokenizer.

    ByteLevel(use_regex) alone is GPT-2's regex ("gpt-2"); Digits(individual) + ByteLevel is
    SmolLM's ("smollm": llama.cpp splits \\p{N} first, then the GPT-2 regex); a Split with the
    Qwen2 / Llama-3 regex followed by ByteLevel(use_regex=False) is "qwen2" / "llama-bpe".
    """
    if not pre_tokenizer:
        raise ExportError("tokenizer.json has no pre_tokenizer: cannot map it to a llama.cpp pre-tokenizer")
    kind = pre_tokenizer.get("type")
    if kind == "ByteLevel" and pre_tokenizer.get("use_regex", True):
        return "gpt-2"
    if kind == "Sequence":
        parts = pre_tokenizer.get("pretokenizers", [])
        kinds = [p.get("type") for p in parts]
        if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits") and parts[1].get("use_regex", True):
            return "smollm"
        if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
            pattern = parts[0].get("pattern", {})
            regex = pattern.get("Regex") or pattern.get("String")
            if regex in SPLIT_REGEX_PRE:
                return SPLIT_REGEX_PRE[regex]
    raise ExportError(
        f"byte-level BPE pre-tokenizer {json.dumps(pre_tokenizer)[:200]} has no known llama.cpp "
        f"equivalent (supported: ByteLevel = gpt-2, Digits+ByteLevel = smollm, Qwen2 and Llama-3 Split)"
    )


def _special_ids(config: dict[str, Any], tok_cfg: dict[str, Any], vocab: dict[str, int]) -> dict[str, int]:
    """bos/eos/pad/unk ids: config.json first (what our checkpoints and generation use), then the
    token strings of tokenizer_config.json."""
    ids: dict[str, int] = {}
    for role in ("bos", "eos", "pad", "unk"):
        value = config.get(f"{role}_token_id")
        if isinstance(value, list):
            value = value[0] if value else None
        if value is None:
            tok = tok_cfg.get(f"{role}_token")
            if isinstance(tok, dict):
                tok = tok.get("content")
            value = vocab.get(tok) if tok is not None else None
        if value is not None:
            ids[role] = int(value)
    return ids


def _chat_template(tokenizer_dir: Path, tok_cfg: dict[str, Any]) -> Optional[str]:
    jinja = tokenizer_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    tmpl = tok_cfg.get("chat_template")
    if isinstance(tmpl, list):  # [{"name": "default", "template": ...}, ...]
        tmpl = next((t.get("template") for t in tmpl if t.get("name") == "default"), None)
    return tmpl if isinstance(tmpl, str) else None


PROBE_CONVERSATION = [{"role": "user", "content": "Hello"}]  # the one turn every chat template takes


def probe_chat_template(template: str, tokenizer_dir: Path) -> None:
    """Render the template once (within its budget) before the file claims to have one: a template
    that raises or hangs is refused here, not found by the app that loads the GGUF."""
    from edgeprune.data.chat_template import render_chat

    render_chat(template, PROBE_CONVERSATION, source=str(tokenizer_dir))


def add_tokenizer(writer: Any, tokenizer_dir: Optional[Path], config: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """Write the tokenizer metadata for a model with `vocab_size` embedding rows into a
    gguf.GGUFWriter; return a summary (model, pre, special ids) for the manifest."""

    tok_json = tokenizer_dir / "tokenizer.json" if tokenizer_dir else None
    sp_model = tokenizer_dir / "tokenizer.model" if tokenizer_dir else None
    if not (tok_json and tok_json.is_file()) and not (sp_model and sp_model.is_file()):
        writer.add_tokenizer_model("none")  # llama.cpp sizes it from {arch}.vocab_size
        log.warning("no tokenizer beside the model: GGUF gets a token-id-only vocabulary")
        return {"model": "none"}
    tok_cfg: dict[str, Any] = {}
    if (tokenizer_dir / "tokenizer_config.json").is_file():
        tok_cfg = read_json(tokenizer_dir / "tokenizer_config.json")

    if sp_model and sp_model.is_file():
        summary = _add_sentencepiece(writer, sp_model, vocab_size)
        vocab = summary.pop("_vocab")
    else:
        summary, vocab = _add_bpe(writer, read_json(tok_json), vocab_size)

    ids = _special_ids(config, tok_cfg, vocab)
    setters = {"bos": writer.add_bos_token_id, "eos": writer.add_eos_token_id,
               "pad": writer.add_pad_token_id, "unk": writer.add_unk_token_id}
    for role, value in ids.items():
        if not 0 <= value < vocab_size:
            raise ExportError(f"{role}_token_id {value} is outside the vocabulary (size {vocab_size})")
        setters[role](value)
    # our byte-level tokenizers add no BOS; SentencePiece Llama ones do unless told otherwise
    writer.add_add_bos_token(bool(tok_cfg.get("add_bos_token", summary["model"] == "llama")))
    writer.add_add_eos_token(bool(tok_cfg.get("add_eos_token", False)))
    template = _chat_template(tokenizer_dir, tok_cfg)
    if template:
        probe_chat_template(template, tokenizer_dir)
        writer.add_chat_template(template)
    summary.update(special_ids=ids, chat_template=bool(template))
    return summary


def _add_bpe(writer: Any, tj: dict[str, Any], vocab_size: int) -> tuple[dict[str, Any], dict[str, int]]:
    import gguf

    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise ExportError(f"tokenizer.json model type {model.get('type')!r} is not supported (BPE or a "
                          f"SentencePiece tokenizer.model)")
    if model.get("byte_fallback"):
        raise ExportError("BPE with byte_fallback (SentencePiece-converted) needs its tokenizer.model; "
                          "put tokenizer.model beside tokenizer.json")
    pre = bpe_pre_name(tj.get("pre_tokenizer"))
    vocab: dict[str, int] = dict(model["vocab"])
    added = {t["id"]: t for t in tj.get("added_tokens", [])}
    for t in added.values():
        vocab.setdefault(t["content"], t["id"])
    if max(vocab.values()) >= vocab_size:
        raise ExportError(f"tokenizer has id {max(vocab.values())} but the model has only {vocab_size} "
                          f"embedding rows")
    by_id = {i: s for s, i in vocab.items()}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            if i in added:
                types.append(gguf.TokenType.CONTROL if added[i].get("special") else gguf.TokenType.USER_DEFINED)
            else:
                types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    return {"model": "gpt2", "pre": pre, "tokens": len(vocab), "merges": len(merges)}, vocab


def _add_sentencepiece(writer: Any, path: Path, vocab_size: int) -> dict[str, Any]:
    import gguf

    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError:
        raise ExportError(f"{path} is a SentencePiece tokenizer: pip install sentencepiece to export it") from None
    sp = SentencePieceProcessor()
    sp.LoadFromFile(str(path))
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [gguf.TokenType.UNUSED] * vocab_size
    for i in range(min(sp.vocab_size(), vocab_size)):
        tokens[i] = sp.IdToPiece(i)
        scores[i] = sp.GetScore(i)
        types[i] = (gguf.TokenType.UNKNOWN if sp.IsUnknown(i) else gguf.TokenType.CONTROL if sp.IsControl(i)
                    else gguf.TokenType.UNUSED if sp.IsUnused(i) else gguf.TokenType.BYTE if sp.IsByte(i)
                    else gguf.TokenType.NORMAL)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    return {"model": "llama", "pre": "default", "tokens": sp.vocab_size(),
            "_vocab": {tokens[i]: i for i in range(min(sp.vocab_size(), vocab_size))}}
