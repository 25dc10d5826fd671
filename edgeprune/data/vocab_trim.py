"""Which tokens a trimmed vocabulary keeps, and the tokenizer files that describe it.

Decoding reads the whole output head once per token, and for a small model after a cut that head
(vocabulary x hidden) is most of the bytes; a user's text uses a fraction of a 49k-150k vocabulary.
Trimming keeps:
- every added / special / control token and the tokens the chat template renders to,
- the byte-level base tokens (all 256, or those the vocabulary has), so any string the original
  tokenizes still tokenizes (into more, shorter tokens),
- the most frequent tokens of the user's text (`size` tokens in all, or the fewest that cover a
  fraction `coverage` of the text's tokens),
CLOSED under the merges that build them: every merge whose result is kept has both its parts kept,
so each kept token is buildable from kept merges. Merges whose result is dropped are dropped.

Why closure over every merge that produces a kept token (not just one): BPE applies, at each step,
the lowest-ranked merge present among adjacent pairs. If every merge that produces a kept token
survives (with its rank order), then on a word whose original tokens were all kept, each merge the
original applied is still there and still the lowest-ranked applicable one (dropped merges only
remove candidates), so the trimmed tokenizer produces the same tokens; a word with a dropped token
stops merging earlier and comes out as kept, shorter pieces.

New ids keep the old order (old id of new id i = kept[i]), so specials stay in front as they were.
Two BPE kinds: byte-level (GPT-2, SmolLM, Qwen2, Llama-3: the 256 base tokens are the byte
alphabet) and SentencePiece-style BPE with byte_fallback (Llama-2, TinyLlama, Mistral: the 256
base tokens are `<0x00>`..`<0xFF>`; a character whose token was dropped falls back to its UTF-8
bytes). Unigram vocabularies are refused with a clear error.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

from edgeprune.base.errors import DataError

DEFAULT_ROLES = ("system", "user", "assistant")


def byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE writes bytes as (GPT-2's bytes_to_unicode)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, n = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + n))
            n += 1
    return chars


def byte_tokens() -> list[str]:
    """SentencePiece's byte-fallback tokens, `<0x00>` .. `<0xFF>`."""
    return [f"<0x{b:02X}>" for b in range(256)]


def _merge_pair(m: Any) -> tuple[str, str]:
    if isinstance(m, str):
        a, _, b = m.partition(" ")
        return a, b
    return m[0], m[1]


@dataclass(frozen=True)
class BpeVocab:
    """The parts of a BPE tokenizer.json (byte-level or byte-fallback) that trimming reads."""

    tj: Mapping[str, Any]  # the tokenizer.json as loaded
    ids: Mapping[str, int]  # token string -> id, added tokens included
    added: frozenset[int]  # ids of added tokens (special or not)
    producers: Mapping[int, tuple[tuple[int, int], ...]]  # id -> every (left, right) merge building it
    base: tuple[str, ...] = ()  # the byte tokens it has (<= 256): byte-level characters or <0xNN> fallback tokens

    @property
    def size(self) -> int:
        return max(self.ids.values()) + 1

    @classmethod
    def from_json(cls, tj: Mapping[str, Any]) -> "BpeVocab":
        model = tj.get("model") or {}
        if model.get("type") != "BPE":
            raise DataError(f"vocabulary trimming supports BPE tokenizers (byte-level: SmolLM, Qwen2, Llama-3; "
                            f"byte-fallback: Llama-2, Mistral); this tokenizer.json's model is {model.get('type')!r}")
        ids: dict[str, int] = dict(model.get("vocab") or {})
        fallback = bool(model.get("byte_fallback"))
        # the byte tokens the vocabulary has: SmolLM2's lacks 21 (bytes no UTF-8 text of its
        # training held, e.g. 0xC0, 0xFF), so the original cannot write those either; keeping the
        # rest means any string the original tokenizes, the trimmed one does too
        base = [c for c in (byte_tokens() if fallback else byte_alphabet()) if c in ids]
        if len(base) < 128:
            kind = "<0x00>..<0xFF> byte-fallback" if fallback else "byte-level"
            raise DataError(f"tokenizer.json is not {kind} BPE: only {len(base)} of the 256 byte tokens are "
                            f"in its vocabulary, so trimmed text could not always be tokenized")
        added = set()
        for t in tj.get("added_tokens") or []:
            ids.setdefault(t["content"], int(t["id"]))
            added.add(int(t["id"]))
        producers: dict[int, list[tuple[int, int]]] = {}
        for m in model.get("merges") or []:
            a, b = _merge_pair(m)
            if a in ids and b in ids and a + b in ids:
                producers.setdefault(ids[a + b], []).append((ids[a], ids[b]))
        return cls(tj=tj, ids=ids, added=frozenset(added),
                   producers={k: tuple(v) for k, v in producers.items()}, base=tuple(base))

    def byte_ids(self) -> set[int]:
        """The 256 tokens any byte string can be written in."""
        return {self.ids[c] for c in self.base}

    def closure(self, ids: Iterable[int]) -> set[int]:
        """`ids` and every token any merge building one of them needs, recursively."""
        out: set[int] = set()
        stack = list(ids)
        while stack:
            t = stack.pop()
            if t in out:
                continue
            out.add(t)
            for a, b in self.producers.get(t, ()):
                stack.extend((a, b))
        return out


def template_texts(template: Optional[str], roles: Sequence[str] = DEFAULT_ROLES) -> list[str]:
    """Text the chat template emits around messages: a rendered conversation with empty contents
    (one message per role, and the generation prompt), and every quoted literal in the template
    (a branch the sample does not take still carries its strings there)."""
    if not template:
        return []
    texts = re.findall(r"'((?:[^'\\]|\\.)*)'|\"((?:[^\"\\]|\\.)*)\"", template)
    out = [a or b for a, b in texts]
    out = [s.replace("\\n", "\n").replace("\\t", "\t") for s in out]  # Jinja string escapes
    out += re.split(r"\{[%{#].*?[%}#]\}", template, flags=re.S)  # literal text between tags
    try:
        from edgeprune.data.chat_template import render_chat

        out.append(render_chat(template, [{"role": r, "content": ""} for r in roles], add_generation_prompt=True))
    except Exception:  # a template that refuses this sample: its literals above still count
        pass
    return [s for s in out if s]


@dataclass(frozen=True)
class VocabTrim:
    """A trimmed vocabulary: `kept[i]` is the old id of new id i (ascending)."""

    kept: tuple[int, ...]
    original_size: int  # ids the tokenizer used (added tokens included)
    required: int  # tokens kept whatever the text (specials, bytes, template), with their closure
    covered: float  # fraction of the counted text's tokens whose token is kept
    counted: int  # tokens counted in the user's text

    @property
    def size(self) -> int:
        return len(self.kept)

    def new_ids(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.kept)}

    def summary(self) -> dict[str, Any]:
        """edgeprune.json's "vocab": sizes, coverage and the old id of every new id."""
        return {"size": self.size, "original_size": self.original_size, "required": self.required,
                "covered": round(self.covered, 6), "counted_tokens": self.counted, "kept_ids": list(self.kept)}


def plan_trim(tj: Mapping[str, Any], counts: Sequence[int], *, size: Optional[int] = None,
              coverage: Optional[float] = None, chat_template: Optional[str] = None,
              encode: Any = None) -> VocabTrim:
    """The tokens to keep for a tokenizer.json `tj`, given `counts[i]` = how often token i occurs
    in the user's text: exactly one of `size` (kept tokens in all, at most) or `coverage` (keep
    the most frequent tokens until they make up this fraction of the text). `encode(text) -> ids`
    tokenizes the chat template's text (default: `tj` itself)."""
    if (size is None) == (coverage is None):
        raise DataError("trim the vocabulary to a size or a coverage, not both or neither")
    if coverage is not None and not 0.0 < coverage <= 1.0:
        raise DataError(f"--vocab-coverage {coverage} must be in (0, 1], e.g. 0.999")
    vocab = BpeVocab.from_json(tj)
    if encode is None:
        encode = _encoder(tj)
    seed = set(vocab.added) | vocab.byte_ids()
    unk = (tj.get("model") or {}).get("unk_token")
    if unk in vocab.ids:  # what an unknown piece becomes
        seed.add(vocab.ids[unk])
    for text in template_texts(chat_template):
        seed.update(encode(text))
    kept = vocab.closure(seed)
    required = len(kept)
    freq = [(int(c), i) for i, c in enumerate(counts) if int(c) > 0 and i < vocab.size]
    freq.sort(key=lambda x: (-x[0], x[1]))
    total = sum(int(c) for c in counts)
    if size is not None:
        if size < required:
            raise DataError(f"--vocab {size} is below the {required} tokens every trimmed vocabulary keeps "
                            f"(special and chat-template tokens, the byte tokens, and the merges building them)")
        for _, t in freq:
            if t in kept:
                continue
            extra = vocab.closure([t]) - kept
            if len(kept) + len(extra) <= size:
                kept |= extra
            if len(kept) >= size:
                break
    else:
        acc, goal = 0, coverage * total
        wanted = []
        for c, t in freq:
            if acc >= goal:
                break
            wanted.append(t)
            acc += c
        kept |= vocab.closure(wanted)
    covered = sum(int(counts[t]) for t in kept if t < len(counts)) / total if total else 1.0
    return VocabTrim(kept=tuple(sorted(kept)), original_size=vocab.size, required=required,
                     covered=covered, counted=int(total))


# coverages of the user's text a search may trim to below the user's own --vocab-coverage: never
# under 99% (the floor), never above what the user asked (their P is the largest vocabulary tried)
COVERAGE_LADDER = (0.999, 0.995, 0.99)


def coverage_ladder(coverage: float) -> list[float]:
    """The coverages a search with a speed target may choose among for `--vocab-coverage P`: P itself
    and the ladder's points below it, down to the 0.99 floor (P alone when it is at the floor or below)."""
    return [float(coverage)] + [c for c in COVERAGE_LADDER if c < coverage]


def split_growth(tj: Mapping[str, Any], trim: VocabTrim, counts: Sequence[int]) -> float:
    """Extra tokens per token of the counted text once the trimmed tokenizer writes every dropped
    token in kept pieces: sum over dropped tokens of count x (pieces - 1), over all counted tokens.
    Each dropped token's pieces are what the trimmed BPE model makes of that token's own string (in
    running text the word around it may merge differently; this is the count, not the tokenization)."""
    import json

    from tokenizers import Tokenizer

    total = sum(int(c) for c in counts)
    if not total:
        return 0.0
    kept = set(trim.kept)
    by_old = {i: s for s, i in BpeVocab.from_json(tj).ids.items()}
    model = Tokenizer.from_str(json.dumps(trimmed_tokenizer_json(tj, trim))).model
    extra = 0
    for t, c in enumerate(counts):
        if int(c) > 0 and t not in kept and t in by_old:
            extra += int(c) * (len(model.tokenize(by_old[t])) - 1)
    return extra / total


def _encoder(tj: Mapping[str, Any]) -> Any:
    import json

    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(json.dumps(tj))
    return lambda text: tok.encode(text, add_special_tokens=False).ids


def trimmed_tokenizer_json(tj: Mapping[str, Any], trim: VocabTrim) -> dict[str, Any]:
    """tokenizer.json for the kept tokens: vocab and added tokens renumbered, merges whose three
    tokens are kept (in their original rank order), ids in the post-processor remapped."""
    vocab = BpeVocab.from_json(tj)
    new = trim.new_ids()
    by_old = {i: s for s, i in vocab.ids.items()}
    keep_str = {by_old[i] for i in trim.kept}
    out = copy.deepcopy(dict(tj))
    model = out["model"]
    model["vocab"] = {s: new[i] for s, i in (model.get("vocab") or {}).items() if i in new}
    merges = []
    for m in model.get("merges") or []:
        a, b = _merge_pair(m)
        if a in keep_str and b in keep_str and a + b in keep_str:
            merges.append(m)
    model["merges"] = merges
    out["added_tokens"] = [{**t, "id": new[int(t["id"])]} for t in out.get("added_tokens") or []]
    if out.get("post_processor"):
        out["post_processor"] = _remap_processor(out["post_processor"], new)
    return out


def _remap_processor(proc: dict[str, Any], new: Mapping[int, int]) -> dict[str, Any]:
    """Post-processors that name token ids (Llama-3's TemplateProcessing adds BOS by id)."""
    kind = proc.get("type")
    if kind == "Sequence":
        proc["processors"] = [_remap_processor(p, new) for p in proc.get("processors", [])]
    elif kind == "TemplateProcessing":
        for spec in (proc.get("special_tokens") or {}).values():
            spec["ids"] = [_remap(i, new, "post-processor special token") for i in spec.get("ids", [])]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        for key in ("sep", "cls"):
            if key in proc:
                proc[key] = [proc[key][0], _remap(proc[key][1], new, f"post-processor {key}")]
    return proc


def _remap(old: int, new: Mapping[int, int], what: str) -> int:
    if int(old) not in new:
        raise DataError(f"{what} id {old} is not in the trimmed vocabulary")
    return new[int(old)]


def trimmed_tokenizer_config(cfg: Mapping[str, Any], trim: VocabTrim) -> dict[str, Any]:
    """tokenizer_config.json with `added_tokens_decoder` keyed by the new ids."""
    out = dict(cfg)
    dec = cfg.get("added_tokens_decoder")
    if isinstance(dec, dict):
        new = trim.new_ids()
        out["added_tokens_decoder"] = {str(new[int(k)]): v for k, v in dec.items() if int(k) in new}
    return out


def remap_token_ids(config: Mapping[str, Any], trim: VocabTrim) -> dict[str, Any]:
    """bos/eos/pad ids of a config or generation config, renumbered (a list stays a list)."""
    new = trim.new_ids()
    out = {}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = config.get(key)
        if v is None:
            continue
        if isinstance(v, list):
            out[key] = [_remap(i, new, key) for i in v]
        else:
            out[key] = _remap(v, new, key)
    return out


def text_token_counts(source: Any, tokenizer_dir: Any, progress: bool = False) -> "Any":
    """How often each token id occurs in the text `source` (a file, folder or hf:NAME, as --data
    takes it), tokenized with the model's own tokenizer (cached like every token stream)."""
    import numpy as np

    from edgeprune.data.tokens import load_tokenizer, token_file

    tok = load_tokenizer(tokenizer_dir)
    ids = token_file(source, tok, progress=progress)
    return np.bincount(np.asarray(ids, dtype=np.int64), minlength=tok.vocab_size)


__all__ = ["BpeVocab", "VocabTrim", "byte_alphabet", "byte_tokens", "plan_trim", "template_texts", "trimmed_tokenizer_json",
           "trimmed_tokenizer_config", "remap_token_ids", "text_token_counts", "COVERAGE_LADDER", "coverage_ladder",
           "split_growth"]
