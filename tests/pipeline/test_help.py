"""--help is the first reference: every pruning method (search included) is described where
--method is listed, every model argument names the three kinds every verb reads (folder, hub
name, .gguf), and no help says "required" of an argument its usage line shows as optional (or
the other way round)."""

from __future__ import annotations

import argparse

import pytest

from edgeprune.cli import VERBS, build_parser


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    parser = build_parser(verb)
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[verb]


def test_method_descriptions_cover_the_registry():
    from edgeprune.pipeline.method_help import METHOD_HELP
    from edgeprune.prune import METHODS

    assert sorted(METHOD_HELP) == sorted(METHODS)


@pytest.mark.parametrize("verb", ["prune", "ship"])
def test_every_method_is_described_where_method_is(verb):
    from edgeprune.pipeline.method_help import METHOD_HELP

    (action,) = [a for a in _verb_parser(verb)._actions if "--method" in a.option_strings]
    text = action.help
    for name, what in METHOD_HELP.items():
        assert f"{name}: {what}" in text, (verb, name)
    assert "search: searches depth, heads, KV groups" in text


MODEL_ARGS = {"info": "model", "prune": "model", "train": "model", "export": "model", "eval": "models",
              "compare": "models", "ship": "model", "generate": "model", "chat": "model", "bench": "model"}


@pytest.mark.parametrize("verb, dest", MODEL_ARGS.items())
def test_every_model_argument_names_folder_hub_name_and_gguf(verb, dest):
    (action,) = [a for a in _verb_parser(verb)._actions if a.dest == dest and a.help is not argparse.SUPPRESS]
    text = " ".join(action.help.split())
    assert "checkpoint folder" in text and "hub name" in text and ".gguf file" in text, (verb, text)


def test_the_teacher_argument_too():
    (action,) = [a for a in _verb_parser("train")._actions if a.dest == "teacher"]
    assert ".gguf file" in action.help and "hub name" in action.help


@pytest.mark.parametrize("verb", list(VERBS))
def test_no_help_contradicts_its_usage_line(verb):
    p = _verb_parser(verb)
    required_groups = {id(a) for g in p._mutually_exclusive_groups if g.required for a in g._group_actions}
    for a in p._actions:
        if not a.option_strings or a.help in (None, argparse.SUPPRESS):
            continue
        required = a.required or id(a) in required_groups
        says = "(required)" in a.help or "required:" in a.help.lower()
        assert says <= required, f"{verb} {a.option_strings[0]}: help says required, usage shows it optional"
        if required:  # the usage line shows a required flag without brackets
            usage = " ".join(p.format_usage().split())
            assert f"[{a.option_strings[0]} " not in usage, f"{verb} {a.option_strings[0]}"


def test_prune_data_is_required_and_its_older_name_still_answers(capsys):
    from edgeprune.cli import main

    assert main(["prune", "m", "--ratio", "0.3", "--out", "o"]) == 2
    assert "--data is required" in capsys.readouterr().err
    args = build_parser("prune").parse_args(["prune", "m", "--ratio", "0.3", "--calib", "d.txt", "--out", "o"])
    assert args.data == "d.txt"
