"""The embedded default corpus and its tokenizer (DESIGN §8): text every Python installation
carries, so `edgeprune ship` with no model needs nothing downloaded.

Corpus: the prose of `pydoc_data.topics` (the language reference `help()` shows) and the
standard library's own `.py` sources (code plus docstrings), tests, codec tables and GUI demos
left out. Each file is cut to `PER_DOC_CHARS` at a line end and documents are ordered by a hash of
their name — deterministic, and it mixes prose and code so the held-out tail of the token stream
(`split_tokens`) looks like the rest — until `TARGET_CHARS` (~6 MB: a tiny teacher tokenizes and
trains on it in minutes on 2 cores). Built once per Python version into
`$EDGEPRUNE_CACHE/embedded/`, written atomically, documents separated by `"\\n\\f\\n"`.

Tokenizer: byte-level BPE (GPT-2 style ByteLevel pre-tokenizer and decoder), vocabulary 4096,
`<|endoftext|>` = BOS = EOS = PAD = id 0, saved as Hugging Face fast-tokenizer files. It ships
inside the package (`edgeprune/data/corpus/tokenizer.json` + config files) so token ids are the same on
every Python version; `python -m edgeprune.data.embedded --write-package` re-trains it
reproducibly from this installation's corpus. Without the shipped files it is trained on first
use (a few seconds) and cached.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sysconfig
from pathlib import Path
from typing import Iterator, Optional

from edgeprune.base.hashing import digest

log = logging.getLogger(__name__)

CORPUS_VERSION = 1  # bump when the selection rule changes
TARGET_CHARS = 6_000_000
PER_DOC_CHARS = 40_000  # one big module must not crowd out the rest
VOCAB_SIZE = 4096
EOT = "<|endoftext|>"
SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "encodings", "__pycache__",
             "lib2to3", "turtledemo", "tkinter", "ensurepip", "pydoc_data"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PACKAGE_DIR = Path(__file__).resolve().parent / "corpus"


def _cache_dir() -> Path:
    from edgeprune.base.paths import cache_root

    d = cache_root() / "embedded"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut + 1 if cut > 0 else limit]


def _stdlib_documents() -> Iterator[tuple[str, str]]:
    """(name, text) of every candidate document, in sorted file order."""
    import pydoc_data.topics

    for topic in sorted(pydoc_data.topics.topics):
        yield f"topic:{topic}", pydoc_data.topics.topics[topic]
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        try:
            yield f"py:{rel.as_posix()}", path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # a broken file in someone's stdlib is not our corpus's problem


def build_corpus_text(target_chars: int = TARGET_CHARS) -> str:
    """The corpus as one string (pure function of this Python installation's stdlib)."""
    docs = []
    for name, text in _stdlib_documents():
        # the form feed is our document separator: page-break characters inside sources go
        text = _clip(text.replace("\r\n", "\n").replace("\f", ""), PER_DOC_CHARS).strip("\n")
        if text.strip():
            docs.append((digest(name, n=None), text))
    docs.sort()
    chosen, total = [], 0
    for _, text in docs:
        if total + len(text) > target_chars:
            continue  # skip, and let a shorter later document fill the remainder
        chosen.append(text)
        total += len(text) + 3
    return "\n\f\n".join(chosen) + "\n"


def embedded_corpus_path() -> Path:
    """The embedded corpus file (built once per Python version, cached, atomic)."""
    from edgeprune.base.atomic_io import atomic_write_text

    tag = f"py{platform.python_version()}-v{CORPUS_VERSION}-{TARGET_CHARS // 1000}k"
    path = _cache_dir() / f"corpus-{tag}.txt"
    if not path.is_file():
        text = build_corpus_text()
        atomic_write_text(path, text)
        log.info("built embedded corpus %s (%.1f MB)", path, len(text.encode()) / 1e6)
    return path


# ----- tokenizer ---------------------------------------------------------------------------------

def train_tokenizer(corpus: Path, out_dir: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train the byte-level BPE on `corpus` and write HF fast-tokenizer files into `out_dir`.
    Deterministic for a corpus (the BPE trainer breaks count ties by pair order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    docs = corpus.read_text(encoding="utf-8").split("\n\f\n")
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    assert tok.token_to_id(EOT) == 0, "the end-of-text token must be id 0"
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save(str(out_dir / "tokenizer.json"))
    special = {"bos_token": EOT, "eos_token": EOT, "unk_token": EOT, "pad_token": EOT}
    # PreTrainedTokenizerFast: transformers 4.x and 5.x both load tokenizer.json as saved,
    # never re-derived from a model-specific tokenizer class (DESIGN §3)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 2048,
              "add_bos_token": False, "add_eos_token": False, "clean_up_tokenization_spaces": False,
              **special}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return out_dir


def embedded_tokenizer_dir() -> Path:
    """Directory with the embedded tokenizer's HF files: the one shipped in the package, or
    (when those files are absent) one trained on first use and cached."""
    if all((PACKAGE_DIR / f).is_file() for f in TOKENIZER_FILES):
        return PACKAGE_DIR
    from edgeprune.base.atomic_io import atomic_dir

    target = _cache_dir() / f"tokenizer-v{CORPUS_VERSION}-{VOCAB_SIZE}"
    if not (target / "tokenizer.json").is_file():
        log.info("training the embedded tokenizer (vocab %d) on %s", VOCAB_SIZE, embedded_corpus_path())
        with atomic_dir(target) as tmp:
            train_tokenizer(embedded_corpus_path(), tmp)
    return target


def _main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="build the embedded corpus / re-train the shipped tokenizer")
    ap.add_argument("--write-package", action="store_true",
                    help=f"train the tokenizer and write it into {PACKAGE_DIR}")
    args = ap.parse_args(argv)
    corpus = embedded_corpus_path()
    print(f"corpus {corpus} ({os.path.getsize(corpus) / 1e6:.2f} MB)")
    if args.write_package:
        train_tokenizer(corpus, PACKAGE_DIR)
        print(f"wrote {', '.join(TOKENIZER_FILES)} into {PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
