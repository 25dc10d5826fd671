"""Every value the app bundle writes, checked by its type before any text is made from it.

The Modelfile, serve.sh and README are line-oriented texts read by other programs (Ollama's
parser, sh, a Markdown renderer), and most of their values come from the model: its name (a
GGUF's general.name, edgeprune.json, a folder name), its generation_config.json, its tokenizer's
stop strings. A model file is data, never an instruction: a newline in a name would otherwise
write a live `FROM` / `ADAPTER` / `SYSTEM` line. So each value is made safe here, once:

- file names: `[A-Za-z0-9._-]` only, no leading dot or dash, bounded length (safe in a shell
  word, a Modelfile path and a Markdown code span alike);
- display names: one line of printable text (control and line-break characters become spaces),
  bounded length;
- numbers: parsed as numbers (a string that is one is read), finite, within the range the
  sampler takes; anything else is left out with a warning naming the key and the value;
- stop strings: quoted with every control and line-break character escaped (`\\n`, `\\u2028`, ...),
  the escapes JSON's own, so any JSON reader gets the tokenizer's text back.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from edgeprune.base.errors import ExportError

log = logging.getLogger(__name__)

NAME_MAX = 96  # file-name stem: "<stem>-<quant>.gguf" and its temporary stay far below 255 bytes
FILE_MAX = NAME_MAX + 16  # the stem, "-", the longest quant name and ".gguf"
DISPLAY_MAX = 200  # a heading and a comment line, not a paragraph
STOP_MAX = 256  # a stop string longer than this is not a token's text
SAFE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# characters that end a line for some reader (Python's splitlines, Go's bufio, a terminal) or are
# invisible: Cc (controls, NEL), Cf (format: bidi overrides), Zl / Zp (U+2028 / U+2029), Cs
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs"}

# Ollama PARAMETERs from generation_config.json: (their key, integer?, lowest, highest). The
# ranges are what a sampler can use; a value outside one is a broken file, not a preference.
SAMPLING = {"temperature": ("temperature", False, 0.0, 100.0),
            "top_p": ("top_p", False, 0.0, 1.0),
            "top_k": ("top_k", True, 0, 1_000_000),
            "repetition_penalty": ("repeat_penalty", False, 0.0, 100.0)}
N_CTX_MAX = 1 << 24  # llama.cpp's context is an int32; no edge model trains past 16M tokens


def _unsafe(c: str) -> bool:
    return unicodedata.category(c) in _UNSAFE_CATEGORIES


def _shown(value: Any) -> str:
    """A value as a warning may quote it: one line, bounded."""
    return escape_text(repr(value)[:60])


def escape_text(s: str) -> str:
    """`s` with backslash and every unsafe character written as an escape, so it stays on one line."""
    out = []
    for c in s:
        if c == "\\":
            out.append("\\\\")
        elif c in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
        elif _unsafe(c):
            units = c.encode("utf-16-be", "surrogatepass")  # beyond U+FFFF: a surrogate pair, as JSON writes it
            out.extend(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))
        else:
            out.append(c)
    return "".join(out)


def quoted(s: str) -> str:
    """A double-quoted Modelfile string: quotes, backslashes and every control character escaped."""
    return '"' + escape_text(s).replace('"', '\\"') + '"'


def file_stem(name: str, limit: int = NAME_MAX) -> str:
    """A checked file-name stem (a `--name` or a bundle name), or with `limit` FILE_MAX a file
    name; ExportError names what is wrong."""
    if not isinstance(name, str) or not SAFE_FILE.match(name) or len(name) > limit:
        raise ExportError(f"app bundle name {_shown(name)} is not a file name: use letters, digits, '.', '_' "
                          f"and '-', at most {limit} characters, not starting with '.' or '-'")
    return name


def bundle_name(display_name: str) -> str:
    """A file-name stem from a model's general.name: "SmolLM2-135M pruned 25% (adapt)" ->
    "SmolLM2-135M-pruned-25-adapt" (LM Studio lists files by it; Ollama names a model by it)."""
    stem = re.sub(r"[^A-Za-z0-9._]+", "-", str(display_name)).strip("-.")[:NAME_MAX].rstrip("-.")
    return stem or "model"


def display_name(value: Any) -> str:
    """One line of printable text: unsafe characters become spaces, runs of space one, bounded."""
    text = "".join(" " if _unsafe(c) else c for c in str(value))
    text = re.sub(r"\s+", " ", text).strip()
    return (text[:DISPLAY_MAX - 1] + "…" if len(text) > DISPLAY_MAX else text) or "model"


def number(key: str, value: Any) -> Optional[float | int]:
    """generation_config's `key` as a number within SAMPLING's range, else None (warned)."""
    _, integer, lo, hi = SAMPLING[key]
    parsed: Optional[float] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        parsed = float(value) if abs(value) < 1 << 63 else math.inf  # float() of a huge int overflows
    elif isinstance(value, str) and len(value) <= 40:
        try:
            parsed = float(value.strip())
        except ValueError:
            parsed = None
    if parsed is None or not math.isfinite(parsed) or not lo <= parsed <= hi or (integer and not parsed.is_integer()):
        kind = "a whole number" if integer else "a number"
        log.warning("generation_config.json: %s %s is not %s in [%g, %g]; the app bundle leaves it out",
                    key, _shown(value), kind, lo, hi)
        return None
    return int(parsed) if integer else parsed


def sampling(generation_config: Optional[Mapping[str, Any]], default_temperature: float) -> dict[str, Any]:
    """Ollama PARAMETERs from the source's generation_config.json (its own recommendation), every
    value checked; the common default temperature when it gives none that is usable."""
    gc = generation_config if isinstance(generation_config, Mapping) else {}
    out: dict[str, Any] = {}
    if gc.get("temperature") is not None and gc.get("do_sample", True) is not False:
        for key, (name, _, _, _) in SAMPLING.items():
            if gc.get(key) is not None:
                v = number(key, gc[key])
                if v is not None:
                    out[name] = v
    if "temperature" not in out:
        out = {"temperature": default_temperature}
    return out


def n_ctx(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= N_CTX_MAX:
        raise ExportError(f"app bundle context {_shown(value)} is not a whole number in [1, {N_CTX_MAX}]")
    return value


def stops(values: Sequence[Any]) -> list[str]:
    """Stop strings: non-empty text of bounded length (escaped when written), in order, unique."""
    out: list[str] = []
    for s in values:
        if not isinstance(s, str) or not s or len(s) > STOP_MAX:
            log.warning("stop string %s is not text of 1-%d characters; the app bundle leaves it out",
                        _shown(s), STOP_MAX)
        elif s not in out:
            out.append(s)
    return out


@dataclass(frozen=True)
class BundleValues:
    """What the Modelfile, serve.sh and README may say, every field checked."""
    name: str  # file-name stem (file_stem)
    display_name: str  # one line (display_name)
    arch: str  # one line
    default_file: str  # a file name (file_stem)
    n_ctx: int
    n_ctx_train: int
    stops: tuple[str, ...]
    sampling: Mapping[str, Any]  # Ollama key -> number


def bundle_values(*, name: str, display: Any, arch: Any, default_file: str, ctx: Any, ctx_train: Any,
                  stop: Sequence[Any], sampled: Mapping[str, Any]) -> BundleValues:
    for k, v in sampled.items():  # the only numbers that reach a PARAMETER line
        assert k in {s[0] for s in SAMPLING.values()} and isinstance(v, (int, float)) and math.isfinite(v), (k, v)
    return BundleValues(file_stem(name), display_name(display), display_name(arch), file_stem(default_file, FILE_MAX),
                        n_ctx(ctx), n_ctx(ctx_train), tuple(stops(stop)), dict(sampled))
