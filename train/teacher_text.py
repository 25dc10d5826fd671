"""Recovery text sampled from the teacher itself (`--data teacher:20M`).

The user of a published model rarely has its pretraining data, and someone else's corpus pulls an
instruct model away from chat; the teacher's own samples are on its distribution by construction,
and distilling on them recovers what the pruned model lost (sequence-level KD, Kim & Rush 2016).

Two kinds of prompt, drawn from seed text (the user's corpus when the run has one, else the
embedded corpus):
- chat turns: an instruction about a seed snippet, rendered through the model's own chat template
  (tokenizer_config / chat_template.jinja, which a GGUF input's converted directory carries), so
  the answer is the model answering in its chat format; only when the tokenizer has a template;
- plain continuations of a short seed prefix.

Sampling is batched with the model's KV cache (left-padded prompts), at a recorded temperature and
top-p, on the GPU when there is one. The output is a folder of JSONL shards (`{"text", "tokens",
"kind"}` per line), one shard per batch, each written atomically; shard k depends only on the
settings and k (its own seeds), so after a kill a rerun keeps the complete shards and samples
from the first missing one, and the result is the same as an uninterrupted run. `meta.json`
(settings, fingerprints, tokens/s) is written last and marks the folder complete. The folder
lives under `$EDGEPRUNE_CACHE/teacher_text/KEY`, KEY a hash of the teacher's weights, its
tokenizer and template, the settings, the seed text's content and the device kind: the same
request twice samples once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from edgeprune.base.atomic_io import atomic_write_json, atomic_write_text
from edgeprune.base.errors import DataError
from edgeprune.base.hashing import digest, json_digest, state_dict_digest
from edgeprune.base.paths import cache_root
from edgeprune.train.teacher_settings import SamplingSettings
from edgeprune.data.text_sources import (describe_source, has_teacher_source, is_teacher_source, iter_documents,
                                    join_sources, source_key, split_sources, teacher_source_tokens)

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

SAMPLES_FORMAT = 2  # bump when prompts, shards or the sampling rule change (new cache keys); 2: shard hashes
META_FILE = "meta.json"
SEED_POOL_CHARS = 4_000_000  # seed text read from the start of the seed source
SEED_DOC_CHARS = 20_000  # one long document must not crowd the pool
SNIPPET_CHARS = 400
SYNC_EVERY = 8  # decode steps between checks that every row of a batch has stopped  # seed snippet quoted in a chat instruction
# end-of-turn / end-of-text names across the families we load (ChatML, Llama 3, Gemma, SentencePiece)
STOP_NAMES = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<end_of_turn>")

# Instructions that turn a seed snippet into a user turn: varied asks so the answers cover
# explaining, summarising, continuing and question answering, all about real text.
CHAT_INSTRUCTIONS = (
    "Explain what the following text is about, in simple words.\n\n{snippet}",
    "Summarize the following text in two or three sentences.\n\n{snippet}",
    "Continue the following text.\n\n{snippet}",
    "Write three questions a reader might ask about this text, and answer them.\n\n{snippet}",
    "What are the key ideas in this passage?\n\n{snippet}",
    "Rewrite the following text so that a child could understand it.\n\n{snippet}",
    "Give a short title for this text and explain your choice.\n\n{snippet}",
    "Here is a text:\n\n{snippet}\n\nWhat would you like to know more about, and why?",
)


# ----- the teacher ---------------------------------------------------------------------------------

@dataclass
class _Teacher:
    model: Any  # EdgeLM in eval mode on its sampling device
    tok: Any  # edgeprune.data.tokens.Tokenizer
    template: Optional[str]
    bos: str
    eos: str
    stop_ids: list[int]
    path: Path


def _load_teacher(teacher: PathLike, device: torch.device) -> _Teacher:
    from edgeprune.data.chat_template import read_chat_template
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.data.tokens import load_tokenizer

    ck = load_checkpoint(teacher)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = ck.model.to(device=device, dtype=dtype).eval()
    tok = load_tokenizer(ck.path)
    stops = {tok.eos_id} if tok.eos_id is not None else set()
    stops |= {i for i in (tok.token_to_id(n) for n in STOP_NAMES) if i is not None}

    def name(i: Optional[int]) -> str:
        return (tok._tok.id_to_token(i) or "") if i is not None else ""

    return _Teacher(model=model, tok=tok, template=read_chat_template(ck.path), bos=name(tok.bos_id),
                    eos=name(tok.eos_id), stop_ids=sorted(stops), path=Path(ck.path))


# ----- prompts -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _SeedDoc:
    text: str
    line_starts: np.ndarray  # offsets a snippet may start at (0 and after every newline)


def _seed_pool(seed_source: Optional[PathLike]) -> list[_SeedDoc]:
    """Seed documents from the start of `seed_source` (the embedded corpus when None)."""
    if seed_source is None:
        from edgeprune.data.embedded import embedded_corpus_path

        seed_source = embedded_corpus_path()
    pool, size = [], 0
    for doc in iter_documents(seed_source):
        doc = doc.strip()[:SEED_DOC_CHARS]
        if len(doc) < 40:  # a title or a stray line seeds nothing
            continue
        starts = np.flatnonzero(np.frombuffer(doc.encode("utf-32-le"), dtype=np.uint32) == 10) + 1
        pool.append(_SeedDoc(doc, np.concatenate([[0], starts[starts < len(doc) - 20]])))
        size += len(doc)
        if size >= SEED_POOL_CHARS:
            break
    if not pool:
        raise DataError(f"seed text {describe_source(seed_source)} holds no document of 40+ characters")
    return pool


def _snippet(doc: _SeedDoc, rng: np.random.Generator, chars: int) -> str:
    """About `chars` characters of `doc` from a random line start, cut at a space."""
    start = int(doc.line_starts[int(rng.integers(len(doc.line_starts)))])
    text = doc.text[start:start + chars]
    cut = text.rfind(" ", chars // 2)
    return (text[:cut] if cut > 0 and len(text) == chars else text).strip()


def _prompts(t: _Teacher, pool: Sequence[_SeedDoc], s: SamplingSettings, shard: int, n: int
             ) -> list[tuple[str, list[int]]]:
    """(kind, token ids) of shard `shard`'s `n` prompts: the same for the same settings and shard."""
    from edgeprune.data.chat_template import render_chat

    rng = np.random.default_rng([s.seed, shard, SAMPLES_FORMAT])
    chat_share = s.chat_fraction if t.template is not None else 0.0
    out = []
    for _ in range(n):
        doc = pool[int(rng.integers(len(pool)))]
        if rng.random() < chat_share:
            instruction = CHAT_INSTRUCTIONS[int(rng.integers(len(CHAT_INSTRUCTIONS)))]
            msg = instruction.format(snippet=_snippet(doc, rng, SNIPPET_CHARS))
            text = render_chat(t.template, [{"role": "user", "content": msg}], t.bos, t.eos, source=str(t.path))
            out.append(("chat", t.tok._tok.encode(text, add_special_tokens=False).ids))  # template tokens as such
        else:
            ids = t.tok.encode(_snippet(doc, rng, s.prompt_tokens * 8))[: s.prompt_tokens]
            out.append(("continuation", ids or [t.stop_ids[0] if t.stop_ids else 0]))
    return out


# ----- batched sampling ----------------------------------------------------------------------------

def _top_p_sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> torch.Tensor:
    """One token per row of `logits` (B, V): temperature, then the nucleus of mass `top_p`."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)  # (B, V)
        outside = sorted_p.cumsum(-1) - sorted_p > top_p  # the most likely token always stays
        sorted_p = sorted_p.masked_fill(outside, 0.0)
        pick = torch.multinomial(sorted_p, 1, generator=gen)  # (B, 1) index into the sorted order
        return order.gather(-1, pick).squeeze(-1)  # (B,)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)  # (B,)


@torch.no_grad()
def sample_batch(model: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, temperature: float,
                 top_p: float, stop_ids: Sequence[int], vocab_size: int, pad_id: int = 0,
                 generator: Optional[torch.Generator] = None) -> list[list[int]]:
    """Sample continuations of `prompts` together: left-padded into one batch, one forward for the
    prompts, then one cached forward per new token. A row ends at its first stop token (kept);
    the batch ends when every row has. Returns the new tokens of each row."""
    device = model.device
    ctx = model.spec.max_position_embeddings
    prompts = [list(p)[-(ctx - max_new_tokens):] if ctx > max_new_tokens else list(p)[-1:] for p in prompts]
    max_new_tokens = min(max_new_tokens, ctx - max(len(p) for p in prompts))
    B, T = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding: every row's last prompt token sits at T - 1
        ids[i, T - len(p):] = torch.as_tensor(p, dtype=torch.long)
        mask[i, T - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    stops = torch.as_tensor(list(stop_ids) or [-1], device=device)
    out = model(ids, attention_mask=mask, use_cache=True)
    past, logits = out.past_key_values, out.logits[:, -1, :vocab_size]  # (B, vocab): ids the tokenizer has
    done = torch.zeros(B, dtype=torch.bool, device=device)
    steps = []
    for step in range(max(0, max_new_tokens)):
        nxt = _top_p_sample(logits, temperature, top_p, generator)  # (B,)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        steps.append(nxt)
        done = done | torch.isin(nxt, stops)
        # asking the GPU whether every row is done waits for it: every few steps only, so the
        # host queues the next steps' kernels meanwhile (a few surplus steps of pad are dropped)
        if step % SYNC_EVERY == SYNC_EVERY - 1 and bool(done.all()):
            break
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)  # (B, T + steps)
        out = model(nxt[:, None], attention_mask=mask, past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1, :vocab_size]
    if not steps:
        return [[] for _ in prompts]
    new = torch.stack(steps, dim=1).cpu().tolist()  # (B, steps)
    stop_set = set(int(i) for i in stop_ids)
    result = []
    for row in new:
        end = next((j + 1 for j, t in enumerate(row) if t in stop_set), len(row))
        result.append(row[:end])
    return result


# ----- the cache -----------------------------------------------------------------------------------

def _shard_path(root: Path, k: int) -> Path:
    return root / f"shard-{k:05d}.jsonl"


def _shard_hash_path(root: Path, k: int) -> Path:
    return root / f"shard-{k:05d}.sha256"  # not a data suffix: readers of the folder skip it


def _shard_tokens(root: Path, k: int) -> Optional[int]:
    """Tokens of shard k when it is whole (its bytes hash to what was written beside it), else None."""
    path, hash_path = _shard_path(root, k), _shard_hash_path(root, k)
    if not path.is_file() or not hash_path.is_file():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != hash_path.read_text(errors="replace").strip():
        return None
    try:  # not splitlines: U+2028 is text
        return sum(int(json.loads(line)["tokens"]) for line in data.decode("utf-8").split("\n") if line.strip())
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _complete_shards(root: Path) -> Iterator[tuple[int, int]]:
    """(index, tokens) of the whole shards 0, 1, ... up to the first missing or failing one. A
    shard cut short (even at a line boundary) or changed fails its hash and is resampled: its
    seeds depend only on the settings and its index, so the new one is the same text."""
    k = 0
    while True:
        n = _shard_tokens(root, k)
        if n is None:
            if _shard_path(root, k).exists():
                log.warning("teacher-text shard %s fails its content check (sha256): resampling from it",
                            _shard_path(root, k))
            return
        yield k, n
        k += 1


def _batch_size(s: SamplingSettings, device: torch.device) -> int:
    return s.batch_size or (256 if device.type == "cuda" else 16)


def samples_key(t: _Teacher, s: SamplingSettings, seed_key: str, device: torch.device) -> str:
    return json_digest({"format": SAMPLES_FORMAT, "weights": state_dict_digest(t.model.state_dict()),
                        "tokenizer": t.tok.fingerprint, "template": digest(t.template or ""),
                        "settings": asdict(s), "seed_text": seed_key, "device": device.type}, n=24)


def _read_meta(root: Path) -> Optional[dict[str, Any]]:
    try:
        meta = json.loads((root / META_FILE).read_text())
        return meta if isinstance(meta, dict) and meta.get("complete") else None
    except (OSError, ValueError):
        return None


def sample_teacher_text(teacher: PathLike, settings: SamplingSettings, seed_source: Optional[PathLike] = None,
                        device: Union[str, torch.device, None] = None, progress: bool = True,
                        cache_dir: Optional[PathLike] = None) -> Path:
    """The folder of `settings.tokens` tokens of text sampled from `teacher` (a checkpoint
    directory, GGUF file or hub name): from the cache when this request was sampled before,
    else sampled now, continuing from the complete shards a killed run left."""
    from edgeprune.base.torch_device import resolve_device

    settings.validate()
    dev = resolve_device(None if device is None else str(device))
    t = _load_teacher(teacher, dev)
    s = replace(settings, batch_size=_batch_size(settings, dev))
    seed_key = source_key(seed_source) if seed_source is not None else "embedded"
    key = samples_key(t, s, seed_key, dev)
    root = (Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "teacher_text") / key
    meta = _read_meta(root)
    if meta is not None:
        if len(list(_complete_shards(root))) == meta.get("shards"):
            log.info("teacher samples cache hit %s", root)
            return root
        (root / META_FILE).unlink()  # incomplete again until the failing shards are resampled
    root.mkdir(parents=True, exist_ok=True)
    done = list(_complete_shards(root))
    have = sum(n for _, n in done)
    k = len(done)
    pool = _seed_pool(seed_source) if have < s.tokens else []
    bar = None
    if progress:
        from edgeprune.base.progress import progress_bar

        bar = progress_bar(total=s.tokens, initial=min(have, s.tokens), desc="teacher samples", unit=" tok",
                   unit_scale=True)
    t0, sampled = time.perf_counter(), 0
    pad = t.tok.eos_id if t.tok.eos_id is not None else 0
    try:
        while have < s.tokens:
            prompts = _prompts(t, pool, s, k, s.batch_size)
            gen = torch.Generator(device=dev).manual_seed(int(digest(f"{s.seed}:{k}", n=15), 16))
            news = sample_batch(t.model, [p for _, p in prompts], max_new_tokens=s.max_new_tokens,
                                temperature=s.temperature, top_p=s.top_p, stop_ids=t.stop_ids,
                                vocab_size=min(t.tok.vocab_size, t.model.spec.vocab_size), pad_id=pad, generator=gen)
            lines, n_shard = [], 0
            for (kind, prompt), new in zip(prompts, news):
                if new and new[-1] == t.tok.eos_id:  # packing puts EOS after every document anyway
                    new = new[:-1]
                ids = prompt + new
                lines.append(json.dumps({"text": t.tok.decode(ids), "tokens": len(ids), "kind": kind, "prompt_tokens": len(prompt),
                                         "new_tokens": len(new)}, ensure_ascii=False))
                n_shard += len(ids)
                sampled += len(new)
            text = "\n".join(lines) + "\n"
            atomic_write_text(_shard_path(root, k), text)
            atomic_write_text(_shard_hash_path(root, k), hashlib.sha256(text.encode("utf-8")).hexdigest() + "\n")
            have += n_shard
            k += 1
            if bar is not None:
                bar.update(min(n_shard, max(0, s.tokens - bar.n)))
                bar.set_postfix_str(f"{sampled / max(1e-9, time.perf_counter() - t0):,.0f} new tok/s")
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    meta = {"complete": True, "format": SAMPLES_FORMAT, "teacher": str(teacher), "teacher_dir": str(t.path),
            "settings": asdict(s), "chat_template": t.template is not None,
            "seed_text": describe_source(seed_source) if seed_source is not None else "embedded corpus",
            "tokens": have, "shards": k, "device": str(dev), "sampling_seconds": round(seconds, 2),
            "new_tokens_per_s": round(sampled / seconds, 1) if sampled and seconds > 0 else None,
            "resumed_from_shard": len(done)}
    atomic_write_json(root / META_FILE, meta)
    log.info("sampled %d tokens from %s in %.1f s (%s tok/s) into %s", have, teacher, seconds,
             meta["new_tokens_per_s"], root)
    return root


def resolve_teacher_sources(data: PathLike, teacher: Optional[PathLike], *, temperature: Optional[float] = None,
                            top_p: Optional[float] = None, device: Union[str, torch.device, None] = None,
                            progress: bool = True, **settings: Any) -> str:
    """`data` with every `teacher:N` replaced by its folder of samples (sampled now if not cached),
    teacher samples first so a mix's held-out tail is the user's text; the other sources of the
    mix are the seed text. Unchanged when `data` names no teacher samples."""
    if not has_teacher_source(data):
        return str(data)
    if teacher is None:
        raise DataError(f"--data {data}: teacher:N samples text from a teacher, and this run has none "
                        "(pass --teacher, or give text instead)")
    parts = split_sources(data)
    others = [p for p in parts if not is_teacher_source(p)]
    seed = join_sources(others) if others else None
    if temperature is not None:
        settings["temperature"] = temperature
    if top_p is not None:
        settings["top_p"] = top_p
    dirs = []
    for i, part in enumerate(p for p in parts if is_teacher_source(p)):
        s = SamplingSettings(tokens=teacher_source_tokens(part), **settings)
        s = replace(s, seed=s.seed + i)  # a second teacher:N of the mix is other text
        dirs.append(str(sample_teacher_text(teacher, s, seed_source=seed, device=device, progress=progress)))
    return join_sources(dirs + others)
