"""Docs cannot rot: the README's test command is the one CI runs, and every `edgeprune` command
in the README parses with the real CLI (flags that exist, values of the right type). The commands
themselves run in the stage tests (tests/pipeline/test_ship.py runs `ship`, the embedded default
shortened; tests/*/test_cli*.py run prune/train/export/bench/eval/compare)."""

import re
import shlex
from pathlib import Path

import pytest

from edgeprune.cli import VERBS, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("edgeprune ") or "-m edgeprune.cli " in part:
                    cmds.append(part)
    return cmds


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    ci_cmd = ci.split("# TEST-COMMAND-BEGIN\n")[1].split("\n# TEST-COMMAND-END")[0].strip()
    assert f"```bash\n{ci_cmd}\n```" in README


def test_readme_names_every_verb():
    cmds = readme_commands()
    used = {argv_of(c)[0] for c in cmds}
    assert {"ship", "prune", "train", "pretrain", "export", "bench", "eval", "compare", "info"} <= used


def argv_of(cmd: str) -> list[str]:
    """The CLI arguments after `edgeprune` (or `python -m edgeprune.cli`), comments dropped."""
    if "-m edgeprune.cli " in cmd:
        return shlex.split(cmd.split("-m edgeprune.cli ")[-1], comments=True)
    return shlex.split(cmd, comments=True)[1:]


@pytest.mark.parametrize("cmd", readme_commands())
def test_readme_command_parses(cmd):
    argv = argv_of(cmd)
    verb = argv[0]
    assert verb in VERBS
    args = build_parser(verb).parse_args(argv)  # argparse exits (SystemExit) on a bad flag
    assert args.verb == verb
