"""A chat template rendered within a budget: time, output size and the size of every value it
builds.

A chat template is code that comes with a model. Jinja's sandbox keeps it from the machine's
files and Python's internals, but not from work: `lipsum(n=10**8)`, nested loops over the
sandbox's largest range, or a string doubled in a loop hang a run or exhaust its memory. So:

- time: a trace function counts line events of the render (templates and the Python filters it
  calls) and ends it past RENDER_SECONDS;
- output: the rendered text is streamed and ends past `max_chars`;
- values: `*`, `**`, `+`, `~` (concatenation), every filter and every call check the size of
  what they would make (strings, lists: `max_chars`; integers: VALUE_BITS) before or after making
  it. A single C-level step is therefore never larger than the budget.
Anything a template raises (ZeroDivisionError, a TypeError, the sandbox's range limit, a
RecursionError, MemoryError) becomes one ChatTemplateError naming the template's source.
"""

from __future__ import annotations

import functools
import sys
import time
from typing import Any, Callable, Mapping

from edgeprune.base.errors import ChatTemplateError

RENDER_SECONDS = 5.0  # a real template renders in milliseconds; this is a hang, not a slow one
OUTPUT_BASE = 1 << 20  # characters a render may produce beyond twice the conversation it renders
VALUE_BITS = 4096  # an integer a template computes: far past any count, far below a slow bignum
_CHECK_EVERY = 256  # line events between two clock reads


class _Exceeded(BaseException):
    """Raised inside the render when a budget is spent; carries the limit's description. A
    BaseException: no `except Exception` in a filter or in Jinja can swallow it and run on
    (the trace function is unset once it has raised)."""


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict)) else 0


def _int_too_big(value: Any) -> bool:
    return isinstance(value, int) and value.bit_length() > VALUE_BITS


def budgeted_render(template: str, context: Mapping[str, Any], source: str, max_chars: int,
                    seconds: float = RENDER_SECONDS) -> str:
    """Render `template` with `context` inside the budget; ChatTemplateError names `source`."""
    from jinja2.compiler import CodeGenerator
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def check(value: Any, what: str) -> Any:
        if _size(value) > max_chars:
            raise _Exceeded(f"{what} would hold {_size(value)} items, past the limit of {max_chars}")
        if _int_too_big(value):
            raise _Exceeded(f"{what} would be an integer of {value.bit_length()} bits, past {VALUE_BITS}")
        return value

    def check_args(args: tuple, kwargs: Mapping[str, Any], what: str) -> None:
        for a in (*args, *kwargs.values()):
            if isinstance(a, int) and not isinstance(a, bool) and abs(a) > max_chars:
                raise _Exceeded(f"{what} was given {a}, past the limit of {max_chars}")

    def guarded(name: str, f: Callable) -> Callable:
        @functools.wraps(f)  # keeps Jinja's pass_context / pass_environment marks
        def g(*args: Any, **kwargs: Any) -> Any:
            check_args(args[1:] if args else args, kwargs, f"filter {name}")  # args[0] is the value
            return check(f(*args, **kwargs), f"filter {name}")
        return g

    class Codegen(CodeGenerator):
        def visit_Concat(self, node: Any, frame: Any) -> None:  # `a ~ b`: through checked_join
            self.write("environment.checked_join((")
            for arg in node.nodes:
                self.visit(arg, frame)
                self.write(", ")
            self.write("))")

    class Sandbox(ImmutableSandboxedEnvironment):
        code_generator_class = Codegen
        intercepted_binops = frozenset({"*", "**", "+"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(left, int) and isinstance(right, int) and \
                    abs(left) > 1 and right * max(abs(left), 2).bit_length() > VALUE_BITS:
                raise _Exceeded(f"{left} ** {right} is past {VALUE_BITS} bits")
            if operator == "*" and isinstance(right, int) and _size(left) * abs(right) > max_chars or \
                    operator == "*" and isinstance(left, int) and _size(right) * abs(left) > max_chars:
                raise _Exceeded(f"a repetition would hold more than {max_chars} items")
            if operator == "+" and _size(left) + _size(right) > max_chars:
                raise _Exceeded(f"a sum would hold more than {max_chars} items")
            return check(super().call_binop(context, operator, left, right), f"`{operator}`")

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            what = f"call of {getattr(__obj, '__name__', type(__obj).__name__)}"
            check_args(args, kwargs, what)
            return check(super().call(__context, __obj, *args, **kwargs), what)

        def checked_join(self, parts: tuple) -> str:
            strs = [str(p) for p in parts]
            if sum(map(len, strs)) > max_chars:
                raise _Exceeded(f"`~` would make a string past {max_chars} characters")
            return "".join(strs)

    env = Sandbox(trim_blocks=True, lstrip_blocks=True)
    env.filters = {k: guarded(k, f) for k, f in env.filters.items()}

    def raise_exception(msg: str) -> None:  # transformers' convention for a template's own refusal
        raise TemplateError(msg)

    env.globals["raise_exception"] = raise_exception
    deadline, events = time.monotonic() + seconds, [0]

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        events[0] += 1
        if events[0] % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise _Exceeded(f"rendering took more than {seconds:g} s")
        return tracer

    outer = sys.gettrace()
    out: list[str] = []
    size = 0
    try:
        sys.settrace(tracer)
        try:
            for chunk in env.from_string(template).generate(**context):
                size += len(chunk)
                if size > max_chars:
                    raise _Exceeded(f"the output passed {max_chars} characters")
                out.append(chunk)
        finally:
            sys.settrace(outer)
    except _Exceeded as e:
        raise ChatTemplateError(f"the chat template of {source} exceeded its budget: {e}") from None
    except TemplateError as e:
        raise ChatTemplateError(f"the chat template of {source} failed: {e}") from None
    except (Exception, RecursionError, MemoryError) as e:  # the template's own bug, not ours
        raise ChatTemplateError(f"the chat template of {source} failed: {type(e).__name__}: {e}"[:500]) from None
    return "".join(out)
