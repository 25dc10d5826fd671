"""The CLI feels like the tools users know: `--version`, every verb's help fast (no
torch imported for it), quiet third-party logs unless -v, docs that only point inside the repo."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from edgeprune.cli import SUMMARIES, VERBS, _logging_to_stderr, main

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "onnx", "onnxruntime", "numpy", "matplotlib", "gguf", "tokenizers")


def test_version(capsys):
    import edgeprune

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"edgeprune {edgeprune.__version__}"


def test_every_verb_has_a_summary_and_a_module():
    assert set(SUMMARIES) == set(VERBS) and {"generate", "chat"} <= set(VERBS)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_help_works_and_shows_its_one_summary(verb, capsys):
    """`edgeprune VERB --help` exits 0 and opens with the verb's summary from SUMMARIES, the one
    place it is written: a verb module holding its own copy is the drift this guards against."""
    import importlib

    assert SUMMARIES[verb].strip()
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: edgeprune {verb}") and SUMMARIES[verb] in " ".join(out.split())
    assert not hasattr(importlib.import_module(VERBS[verb]), "HELP")


def _help_in_fresh_interpreter() -> dict:
    """Each verb's parser and --help text built in a fresh interpreter: the seconds each took and
    the heavy libraries imported by then."""
    code = ("import json, sys, time\n"
            "from edgeprune.cli import VERBS, build_parser\n"
            "out = {}\n"
            "for verb in VERBS:\n"
            "    t = time.perf_counter()\n"
            "    p = build_parser(verb)\n"
            "    sub = next(a for a in p._actions if getattr(a, 'choices', None) and verb in a.choices)\n"
            "    sub.choices[verb].format_help()\n"
            "    out[verb] = time.perf_counter() - t\n"
            f"print(json.dumps({{'times': out, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n")
    return json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                     cwd=ROOT).stdout)


def test_every_verb_help_imports_nothing_heavy():
    """No heavy library imported for any verb's --help (that is what made `prune --help` take
    2.9 s): the work counted, not the seconds."""
    res = _help_in_fresh_interpreter()
    assert set(res["times"]) == set(VERBS) and res["heavy"] == []


@pytest.mark.timing
def test_every_verb_help_is_quick():
    """Each verb's parser built in < 0.5 s (a wall-clock bound: the timing lane)."""
    slow = {v: t for v, t in _help_in_fresh_interpreter()["times"].items() if t > 0.5}
    assert not slow, slow


def test_third_party_info_and_warnings_are_quiet_unless_verbose(capsys):
    def talk():
        logging.getLogger("edgeprune.pipeline.ship").info("[export] done")
        logging.getLogger().info("Ignore MatMul due to non constant B")  # ORT quantizer style
        logging.getLogger("onnxscript.optimizer").info("constant folding ...")
        logging.getLogger().warning("Please consider to run pre-processing before quantization.")
        logging.getLogger("torch.onnx._internal.exporter._registration").warning(
            "torchvision is not installed. Skipping torchvision::nms")
        logging.getLogger("onnxruntime").warning("a real problem")
        warnings.warn_explicit("axis name will not be used", UserWarning, "torch/onnx/x.py", 1,
                               module="torch.onnx._internal.exporter")

    with _logging_to_stderr(logging.INFO, verbose=False):
        with warnings.catch_warnings(record=True) as shown:  # keeps the filters our context set
            talk()
    assert not [w for w in shown if "axis name" in str(w.message)]
    err = capsys.readouterr().err
    assert "[export] done" in err and "a real problem" in err
    for noise in ("MatMul", "constant folding", "pre-processing", "torchvision", "axis name"):
        assert noise not in err, noise
    with _logging_to_stderr(logging.DEBUG, verbose=True):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            talk()
    assert [w for w in shown if "axis name" in str(w.message)]
    err = capsys.readouterr().err
    assert all(s in err for s in ("MatMul", "constant folding", "pre-processing"))


def test_docs_and_help_only_point_inside_the_repository():
    for doc in (ROOT / "README.md", ROOT / "docs" / "REFERENCE.md", ROOT / "docs" / "DESIGN.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", doc.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (doc.parent / target).exists(), f"{doc.name} links {target}, which a clone does not have"
    import edgeprune.cli

    assert "STYLE.md" not in (edgeprune.cli.__doc__ or "") and "DESIGN.md" not in (edgeprune.cli.__doc__ or "")


@pytest.mark.parametrize("verb, new, old, value, dest, expect", [
    ("ship", "--device", "--devices", "local,raspberry-pi-5", "devices", ["local", "raspberry-pi-5"]),
    ("ship", "--quant", "--quants", "Q8_0,int8", "quants", ["Q8_0", "int8"]),
    ("compare", "--quant", "--qtype", "Q8_0", "quant", "Q8_0"),
    ("compare", "--device", "--devices", "raspberry-pi-5", "device", ["raspberry-pi-5"]),
    ("bench", "--device", "--devices", "raspberry-pi-5,tensor-g3", "device", ["raspberry-pi-5", "tensor-g3"]),
    ("prune", "--data", "--calib", "corpus.txt", "data", "corpus.txt"),
    ("export", "--data", "--calib", "valid.txt", "data", "valid.txt"),
])
def test_one_name_per_idea_old_names_hidden_aliases(verb, new, old, value, dest, expect):
    from edgeprune.cli import build_parser

    positional = {"ship": [], "compare": ["m", "--data", "d"], "bench": [], "prune": ["m", "--ratio", "0.5", "--out", "o"],
                  "export": ["m", "--out", "o"]}[verb]
    for flag in (new, old):
        args = build_parser(verb).parse_args([verb, *positional, flag, value])
        assert getattr(args, dest) == expect, flag
    p = build_parser(verb)
    sub = next(a for a in p._actions if getattr(a, "choices", None) and verb in a.choices).choices[verb]
    helptext = sub.format_help()
    assert new in helptext and f"{old} " not in helptext and "(default: None)" not in helptext
    assert "(default: [" not in helptext
