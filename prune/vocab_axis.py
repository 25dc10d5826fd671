"""The vocabulary size as an axis of the search, only when the user asked for trimming.

Trimming changes what the model can emit, so it is never the search's own idea: without `--vocab`
/ `--vocab-coverage` the vocabulary stays whole. With `--vocab N` the size is N as given (one
option). With `--vocab-coverage P` and a decode-speed target, the search may also trim further,
to the coverages of `vocab_trim.COVERAGE_LADDER` below P (0.999 / 0.995 / 0.99 of the user's
text; 99% is the floor), because every head row a decoded token no longer reads can buy what would
otherwise cost layers or width. Every option is priced by the latency model with the head at its
rows (LatencyTarget.with_vocab), so the speed target counts the trimmed head.

What an option costs in quality, in the units the search estimates a cut in (a change of the mean
calibration loss, nats per token): a dropped token that the user's text holds is written in two
or more kept pieces, so the same text takes `growth` more tokens per token (vocab_trim.split_growth,
counted on --data), each predicted at about the calibration loss. Cost = growth x calibration loss.
This is a token-frequency proxy: it ignores that the pieces of a dropped token are rarer in
training than the token was (measured on SmolLM2-135M at 16,384 tokens: +7% tokens per byte,
+10.7% bits/byte), so it underestimates trimming's cost; the floor bounds how far it can mislead.
The head's quantization cost (head_axis.py) is summed over the rows an option keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from edgeprune.base.errors import PruneError
from edgeprune.data.vocab_trim import VocabTrim, coverage_ladder, plan_trim, split_growth


@dataclass(frozen=True)
class VocabOption:
    """One vocabulary the search may deliver: the trim plan and what it costs the user's text."""

    trim: VocabTrim
    growth: float  # extra tokens per token of the user's text when its dropped tokens are split into kept pieces
    coverage: Optional[float] = None  # the coverage it was planned at (None: `--vocab N`)

    @property
    def size(self) -> int:
        return self.trim.size

    def cost(self, loss: float) -> float:
        """Estimated change of the mean calibration loss: the extra tokens, each at `loss`."""
        return self.growth * float(loss)

    def record(self) -> dict[str, Any]:
        return {"size": self.size, "coverage": self.coverage, "covered": round(self.trim.covered, 6),
                "split_growth": round(self.growth, 6)}


def vocab_options(tj: Mapping[str, Any], counts: Sequence[int], *, size: Optional[int] = None,
                  coverage: Optional[float] = None, chat_template: Optional[str] = None) -> list[VocabOption]:
    """The vocabularies a prune may deliver, largest first: `size` alone, or `coverage`'s plan and the
    ladder's coverages below it (one per distinct size). The first is what the user asked for."""
    plans = ([(plan_trim(tj, counts, size=size, chat_template=chat_template), None)] if size is not None else
             [(plan_trim(tj, counts, coverage=c, chat_template=chat_template), c) for c in coverage_ladder(coverage)])
    out: list[VocabOption] = []
    for trim, c in plans:
        if all(o.size != trim.size for o in out):
            out.append(VocabOption(trim, split_growth(tj, trim, counts), c))
    return sorted(out, key=lambda o: -o.size)


def vocab_problems(size: Optional[int], coverage: Optional[float], names: tuple[str, str] = ("--vocab", "--vocab-coverage")
                   ) -> list[str]:
    """What is wrong with a trimming request (a size, a coverage), each named as the caller's
    flags or keys `names` call them; [] when nothing is."""
    out = []
    if size is not None and size < 1:
        out.append(f"{names[0]} {size} must be >= 1 (tokens to keep)")
    if coverage is not None and not 0.0 < coverage <= 1.0:
        out.append(f"{names[1]} {coverage} must be in (0, 1], e.g. 0.999")
    if size is not None and coverage is not None:
        out.append(f"{names[0]} and {names[1]}: name one")
    return out


def vocab_options_for(tokenizer_dir: Any, data: Any, *, size: Optional[int] = None,
                      coverage: Optional[float] = None) -> Optional[list[VocabOption]]:
    """`vocab_options` for a checkpoint folder's tokenizer, counted on the text `data` (as --data
    takes it); None when neither `size` nor `coverage` asks for trimming."""
    if size is None and coverage is None:
        return None
    import json
    from pathlib import Path

    from edgeprune.data.chat_template import read_chat_template
    from edgeprune.data.vocab_trim import text_token_counts

    tok_dir = Path(tokenizer_dir)
    tj = json.loads((tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    return vocab_options(tj, text_token_counts(data, tok_dir), size=size, coverage=coverage,
                         chat_template=read_chat_template(tok_dir))


def option_of_size(options: Sequence[VocabOption], size: Optional[int]) -> VocabOption:
    """The option a prune decided (its recorded size), else (None) the one the user asked for."""
    if size is None:
        return options[0]
    for o in options:
        if o.size == size:
            return o
    raise PruneError(f"the prune decided a vocabulary of {size:,} tokens, which the data no longer gives "
                     f"(it gives {', '.join(f'{o.size:,}' for o in options)}): the data changed since; prune again")


def vocab_record(options: Sequence[VocabOption], chosen: VocabOption, decided: bool, spec_after: Any,
                 qtype: Optional[str], head_type: Optional[str], rows: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """What the prune decided about the vocabulary, for edgeprune.json ("pruning" -> "vocab"); the
    kept ids themselves are in edgeprune.json's top-level "vocab"."""
    from dataclasses import replace

    from edgeprune.shape.gguf_types import decode_weight_bytes

    out: dict[str, Any] = {"size": chosen.size, "original_size": chosen.trim.original_size,
                           "decided": bool(decided), "asked": options[0].size, **chosen.record()}
    if qtype is not None:
        out["predicted_decode_bytes"] = decode_weight_bytes(replace(spec_after, vocab_size=chosen.size), qtype,
                                                            head_type)
        out["predicted_decode_bytes_untrimmed"] = decode_weight_bytes(spec_after, qtype, head_type)
    out["options"] = list(rows) or [o.record() for o in options]
    return out


__all__ = ["VocabOption", "vocab_options", "vocab_record"]
