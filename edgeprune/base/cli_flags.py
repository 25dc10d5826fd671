"""Flag helpers shared by every verb: one name per idea (`--quant`, `--device`, `--data`,
`--batch-size`), the names verbs used before kept working as hidden aliases."""

from __future__ import annotations

import argparse


def csv_list(text: str) -> list[str]:
    """`a,b, c` -> ['a', 'b', 'c'] (with action='extend': `--x a,b --x c` also works)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def hidden_alias(p: argparse.ArgumentParser, action: argparse.Action, *old: str) -> None:
    """Accept the flag names `old` for `action` (same destination and parsing) without listing
    them in --help."""
    kw: dict = {"dest": action.dest, "help": argparse.SUPPRESS, "default": argparse.SUPPRESS}
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        kw["action"] = "store_true" if isinstance(action, argparse._StoreTrueAction) else "store_false"
    else:
        if isinstance(action, argparse._ExtendAction):
            kw["action"] = "extend"
        elif isinstance(action, argparse._AppendAction):
            kw["action"] = "append"
        kw.update(type=action.type, metavar=action.metavar)
    p.add_argument(*old, **kw)


def positive_int(text: str) -> int:
    """argparse type of a count or a length (a context, tokens, repetitions): a whole number >= 1.
    A zero or negative context gives figures for no model at all (FLOPs "at ctx -1")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# every verb that takes a model reads the same three kinds (edgeprune/files/checkpoint.py's
# resolve_checkpoint_dir: a GGUF is converted once into a cached checkpoint folder)
MODEL_KINDS = ("a checkpoint folder", "a Hugging Face hub name (user/model)", "a .gguf file")


def model_help(role: str = "", extra: tuple[str, ...] = ()) -> str:
    """The help of a model argument: what it is for, then the kinds every verb accepts (and the
    verb's own `extra` kinds)."""
    kinds = [*MODEL_KINDS, *extra]
    text = ", ".join(kinds[:-1]) + " or " + kinds[-1]
    return f"{role}: {text}" if role else text
