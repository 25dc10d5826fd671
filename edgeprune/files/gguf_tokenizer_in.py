"""GGUF metadata -> tokenizer files: the inverse of gguf_tokenizer.add_tokenizer.

A byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`, as SmolLM, Qwen2 and Llama-3 GGUFs
carry) becomes a `tokenizer.json` the `tokenizers` library loads: the tokens and merges as
stored, the pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` (the same name table the
exporter writes, read backwards), control tokens as special added tokens, BOS added when the
file says so. bos/eos/pad/unk and the chat template go into tokenizer_config.json (and the
template into chat_template.jinja as well). A SentencePiece vocabulary (`"llama"`) is rebuilt by
transformers' own GGUF converter when it is installed with sentencepiece support.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from edgeprune.base.errors import CheckpointError
from edgeprune.files.gguf_format import SPLIT_REGEX_PRE

log = logging.getLogger(__name__)

_PRE_REGEX = {name: regex for regex, name in SPLIT_REGEX_PRE.items()}


def _special_id_keys() -> dict[str, str]:
    import gguf

    K = gguf.Keys.Tokenizer
    return {"bos": K.BOS_ID, "eos": K.EOS_ID, "unk": K.UNK_ID, "pad": K.PAD_ID}


SPECIAL_ID_KEYS = _special_id_keys()  # role -> GGUF key (tokenizer.ggml.unknown_token_id, ...)


def _pre_tokenizer(pre: str) -> Any:
    from tokenizers import Regex, pre_tokenizers

    if pre in ("gpt-2", "default"):
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre == "smollm":  # llama.cpp: split \p{N} one by one, then GPT-2's regex
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    if pre in _PRE_REGEX:
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(_PRE_REGEX[pre]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    raise CheckpointError(f"GGUF pre-tokenizer {pre!r} is not supported as input (supported: gpt-2, smollm, "
                          f"{', '.join(sorted(_PRE_REGEX))})")


def write_tokenizer(md: dict[str, Any], out: Path) -> dict[str, Any]:
    """Write tokenizer.json / tokenizer_config.json / special_tokens_map.json (and
    chat_template.jinja) for the GGUF metadata `md` into `out`; return a summary."""
    import gguf

    K = gguf.Keys.Tokenizer
    kind = md.get(K.MODEL)
    if kind in (None, "none"):
        log.warning("GGUF has no tokenizer: the model is usable with token ids only")
        return {"model": "none"}
    tokens: list[str] = list(md.get(K.LIST) or [])
    types: list[int] = [int(t) for t in md.get(K.TOKEN_TYPE) or [gguf.TokenType.NORMAL] * len(tokens)]
    if kind == "gpt2":
        summary = _write_bpe(md, tokens, types, out)
    elif kind == "llama":
        raise CheckpointError("GGUF with a SentencePiece vocabulary (tokenizer.ggml.model = llama) is not supported "
                              "as input yet; use the model's Hugging Face directory")
    else:
        raise CheckpointError(f"GGUF tokenizer model {kind!r} is not supported as input (gpt2 byte-level BPE)")

    def text(role: str) -> Optional[str]:
        i = md.get(SPECIAL_ID_KEYS[role])
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    cfg: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_input_names": ["input_ids", "attention_mask"],
                           "add_bos_token": bool(md.get(K.ADD_BOS, False)), "add_eos_token": bool(md.get(K.ADD_EOS, False)),
                           "clean_up_tokenization_spaces": False, "model_max_length": int(summary.pop("_ctx", 2048))}
    specials = {f"{r}_token": text(r) for r in ("bos", "eos", "unk", "pad") if text(r) is not None}
    cfg.update(specials)
    template = md.get(K.CHAT_TEMPLATE)
    if template:
        cfg["chat_template"] = template
        (out / "chat_template.jinja").write_text(template)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2, ensure_ascii=False))
    summary.update(special=specials, chat_template=bool(template))
    return summary


def _write_bpe(md: dict[str, Any], tokens: list[str], types: list[int], out: Path) -> dict[str, Any]:
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    pre = str(md.get(gguf.Keys.Tokenizer.PRE) or "default")
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)  # duplicates (rare padding entries) keep their first id
    merges = [tuple(m.split(" ", 1)) for m in md.get(gguf.Keys.Tokenizer.MERGES) or []]
    try:
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=pre == "llama-bpe", fuse_unk=False,
                                   byte_fallback=False))
    except Exception as e:  # the tokenizers library raises a bare Exception for inconsistent merges
        raise CheckpointError(f"the GGUF's tokenizer cannot be rebuilt from its {len(tokens)} tokens and "
                              f"{len(merges)} merges: {str(e)[:200]}") from None
    tok.pre_tokenizer = _pre_tokenizer(pre)
    if pre == "qwen2":  # Qwen2's tokenizer.json normalises to NFC first
        tok.normalizer = normalizers.NFC()
    tok.decoder = decoders.ByteLevel()
    T = gguf.TokenType
    control = [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == T.CONTROL]
    user = [AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == T.USER_DEFINED]
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    bos = md.get(gguf.Keys.Tokenizer.BOS_ID)
    if md.get(gguf.Keys.Tokenizer.ADD_BOS) and bos is not None:
        b = tokens[int(bos)]
        tok.post_processor = processors.TemplateProcessing(single=f"{b} $A", pair=f"{b} $A {b} $B",
                                                           special_tokens=[(b, int(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(str(out / "tokenizer.json"))
    arch = md.get(gguf.Keys.General.ARCHITECTURE)
    ctx = md.get(f"{arch}.context_length", 2048)
    return {"model": "gpt2", "pre": pre, "tokens": len(tokens), "merges": len(merges),
            "control_tokens": len(control), "_ctx": ctx}
