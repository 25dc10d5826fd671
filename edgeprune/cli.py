"""The one `edgeprune` CLI: thin subcommands over the Python API (litgpt-style).

Each verb lives in the module that owns its stage and exposes `add_arguments(parser)` and
`run(args) -> int`; its one-line summary is written here, in SUMMARIES, so that modules are
imported only for the verb being run and `edgeprune --help` and bad-input errors stay fast.
Every expected failure (an EdgepruneError, a file that cannot be read or written) becomes one
line on stderr and exit code 2; anything else is a bug and keeps its traceback. `--debug` shows
the traceback of expected failures too.

A verb that writes declares its outputs with `outputs(args) -> [(path, "dir" | "file" | "work")]`:
main() checks each (never replace what the user made; see edgeprune/base/outdir.py), locks it for the
run, and gives the verb an `--overwrite` flag.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
import traceback
from contextlib import contextmanager
from typing import Optional, Sequence

# verb -> module implementing it (add_arguments, run; outputs when it writes)
VERBS: dict[str, str] = {
    "info": "edgeprune.pipeline.cli_info",
    "devices": "edgeprune.runtime_bench.cli_devices",
    "prune": "edgeprune.pipeline.cli_prune",
    "pretrain": "edgeprune.train.cli_pretrain",
    "train": "edgeprune.train.cli_train",
    "export": "edgeprune.export.cli_export",
    "bench": "edgeprune.runtime_bench.cli_bench",
    "eval": "edgeprune.pipeline.cli_eval",
    "compare": "edgeprune.pipeline.cli_compare",
    "ship": "edgeprune.pipeline.cli_ship",
    "generate": "edgeprune.pipeline.cli_generate",
    "chat": "edgeprune.pipeline.cli_chat",
}

# One-line summaries: `edgeprune --help` lists them and each `edgeprune VERB --help` starts with its
# own. The one place they are written (the verb modules hold none) so the two never drift.
SUMMARIES: dict[str, str] = {
    "info": "per-layer table, parameter split and bytes per quant type of a model",
    "devices": "list device profiles, show one, or calibrate its latency model",
    "prune": "prune a model structurally (adapt, adapt-latency, depth, flap, search, uniform)",
    "pretrain": "train a model from scratch from a preset or spec",
    "train": "recover / continue training, distill, or pruning-aware training",
    "export": "export HF dir, GGUF and ONNX, quantized per device, validated",
    "bench": "measure latency on local / ssh / adb devices, with roofline predictions",
    "eval": "perplexity on held-out text and lm-eval tasks",
    "compare": "compare models against SmolLM / MobileLLM baselines",
    "ship": "prune -> recover -> export -> bench -> report, in one command",
    "generate": "continue a prompt with an HF dir, a GGUF or an ONNX file",
    "chat": "chat with a model through its chat template (HF dir, GGUF or ONNX)",
}

# Third-party libraries that talk at INFO (ORT's quantizer logs on the root logger) or warn about
# things a user cannot act on (torch.onnx dynamic-axis names, onnxscript constant folding): quiet
# unless -v. Our own loggers keep INFO: one line per stage.
OWN_LOGGER = "edgeprune"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fail(msg: str, code: int = 2) -> int:
    sys.stderr.write(f"edgeprune: error: {msg}\n")
    return code


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is *now* (a handler bound to the stderr of its creation
    breaks when that stream is swapped and closed, e.g. by a test harness or a pager)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


# Warnings other libraries log that a user cannot act on (quiet unless -v): ORT's quantizer
# advice on the root logger, and torch.onnx listing torchvision ops it skips (torch logs these
# through its own handler, so the filter goes on that logger).
UNACTIONABLE = ("Please consider to run pre-processing before quantization", "torchvision is not installed")
UNACTIONABLE_LOGGERS = ("torch.onnx._internal.exporter._registration",)


def _own_or_warning(record: logging.LogRecord) -> bool:
    """Quiet mode: our INFO lines, everyone's WARNING and above except the unactionable ones."""
    if record.name.split(".")[0] == OWN_LOGGER:
        return True
    return record.levelno >= logging.WARNING and not any(u in str(record.msg) for u in UNACTIONABLE)


@contextmanager
def _logging_to_stderr(level: int, verbose: bool = False):
    """Log to stderr for the duration of one command, then leave the root logger and the warning
    filters as they were (main() may run many times in one process: tests, notebooks).
    Without -v, other libraries' INFO lines and Python warnings raised outside edgeprune are
    dropped."""
    import warnings

    root = logging.getLogger()
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    quieted = [logging.getLogger(name) for name in UNACTIONABLE_LOGGERS] if not verbose else []
    if not verbose:
        handler.addFilter(_own_or_warning)
    for lg in quieted:
        lg.addFilter(_own_or_warning)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.filterwarnings("ignore")
                warnings.filterwarnings("default", module=r"edgeprune(\.|$)")
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        for lg in quieted:
            lg.removeFilter(_own_or_warning)


def _version() -> str:
    from edgeprune import __version__

    return f"edgeprune {__version__}"


def build_parser(verb: Optional[str] = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeprune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, including other libraries' messages and warnings")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of expected failures too (for bug reports)")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for name, summary in SUMMARIES.items():
        p = sub.add_parser(name, help=summary, description=summary)
        if name == verb:
            module = importlib.import_module(VERBS[name])
            module.add_arguments(p)
            if hasattr(module, "outputs"):
                p.add_argument("--overwrite", action="store_true",
                               help="replace an output folder/file edgeprune did not write (default: refuse)")
    return parser


def _is_rank0() -> bool:
    """Under torchrun every rank runs main(); only rank 0 holds the output lock."""
    return os.environ.get("RANK", "0") == "0"


# OSErrors that are the environment's doing (permissions, full or read-only disk, a path of the
# wrong type), not edgeprune's: one line naming the path.
_EXPECTED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                    errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG, errno.ENOTEMPTY,
                    errno.EXDEV, errno.EMFILE, errno.ELOOP}


def _expected(e: BaseException) -> str | None:
    """The one line for an expected failure, or None for a bug."""
    from edgeprune.base.errors import EdgepruneError

    if isinstance(e, EdgepruneError):
        return str(e)
    if isinstance(e, FileNotFoundError):
        return f"no such file: {e.filename or e}"
    if isinstance(e, OSError) and e.errno in _EXPECTED_ERRNOS:
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror or e}{where}"
    if isinstance(e, MemoryError):
        return "out of memory: use a smaller model, batch or sequence length"
    return None


# argparse destinations that name what a verb reads: an output may not be one of them, lie inside
# one or hold one (outdir.check_not_input). A verb whose inputs also come from elsewhere (ship's
# recipe file) adds them with `inputs(args) -> [(path, label)]`. --resume is left out: it names a
# step inside the run's own work folder, which is an output by design.
INPUT_ARGS = ("model", "models", "artifacts", "data", "train_data", "teacher", "recipe", "tokenizer",
              "spec", "arch", "baseline_dir", "include_path", "device_profile", "key", "known_hosts", "vs", "gguf")


def _flag_of(parser: argparse.ArgumentParser, dest: str) -> str:
    """The option a user types for `dest` (`--calib` and `--data` share one: the first is named),
    or the name of a positional."""
    for action in _verb_actions(parser):
        if action.dest == dest:
            return action.option_strings[-1] if action.option_strings else dest.rstrip("s")
    return dest


def _verb_actions(parser: argparse.ArgumentParser) -> list:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    verb_parsers = [p for s in subs for p in s.choices.values() if p._actions]
    return [a for p in verb_parsers for a in p._actions]


def _paths_in(value) -> list[str]:
    """The existing paths an argument names (a data spec may list several sources, comma-separated;
    hf:NAME, teacher:N and other non-path sources are skipped)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    parts = [part for v in values if isinstance(v, (str, os.PathLike)) for part in str(v).split(",")]
    return [p for p in parts if p and os.path.lexists(p)]


def _inputs(module, args, parser) -> list[tuple[str, str]]:
    found = [(p, _flag_of(parser, dest)) for dest in INPUT_ARGS for p in _paths_in(getattr(args, dest, None))]
    if hasattr(module, "inputs"):
        found += [(str(p), label) for p, label in module.inputs(args) if p and os.path.lexists(p)]
    return found


def _with_flags(outs, args, parser) -> list[tuple]:
    """(path, kind, flag): the flag the user named each output with (--json, --out, --work-dir);
    an output derived from another (train's `OUT.train` beside --out) is told as that flag's work
    folder, since the user never typed its name; any other is called "output"."""
    named = {}
    for action in _verb_actions(parser):
        value = getattr(args, action.dest, None)
        if action.option_strings and isinstance(value, (str, os.PathLike)) and action.dest not in INPUT_ARGS:
            named.setdefault(os.path.normpath(str(value)), (action.option_strings[-1], str(value)))

    def flag_of(path) -> str:
        p = os.path.normpath(str(path))
        if p in named:
            return named[p][0]
        base = next((n for n in named if p.startswith(n + ".")), None)  # OUT.train, OUT.stages
        return f"{named[base][0]} {named[base][1]}: its work folder" if base else "output"

    return [o if len(o) > 2 else (o[0], o[1], flag_of(o[0])) for o in outs]


def _run_verb(module, args, parser: Optional[argparse.ArgumentParser] = None) -> int:
    from contextlib import nullcontext

    from edgeprune.base.outdir import claim_outputs

    parser = parser or build_parser(args.verb)
    outs = _with_flags(module.outputs(args), args, parser) if hasattr(module, "outputs") else []
    guard = claim_outputs(outs, overwrite=getattr(args, "overwrite", False), lock=_is_rank0(),
                          inputs=_inputs(module, args, parser)) if outs else nullcontext()
    try:
        with guard:
            return int(module.run(args) or 0)
    except Exception as e:
        from edgeprune.base.disk_full import disk_full_line, is_disk_full
        from edgeprune.base.errors import OutputError

        if is_disk_full(e):  # whichever writer hit it, one line naming the user's output
            raise OutputError(disk_full_line(e, outs)) from e
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb is not None and verb not in VERBS:
        return _fail(f"unknown command {verb!r}; choose from {', '.join(VERBS)}")
    parser = build_parser(verb)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or argparse's own one-line usage error (exit 2)
        return int(e.code or 0)
    if args.verb is None:
        parser.print_help()
        return 0
    with _logging_to_stderr(logging.DEBUG if args.verbose else logging.INFO, args.verbose):
        try:
            return _run_verb(importlib.import_module(VERBS[args.verb]), args, parser)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        except Exception as e:
            line = _expected(e)
            if line is None:
                raise  # a bug in edgeprune: its traceback is the useful report
            if args.debug:
                traceback.print_exc()
            return _fail(line, getattr(e, "exit_code", 2))


if __name__ == "__main__":
    sys.exit(main())
