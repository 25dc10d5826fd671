"""`generate -n 1000000000` generates up to the model's context, prints what it generated and says
it stopped there, exit 0, on every runtime: PyTorch used to generate to the context and then exit
2 printing none of the text, and llama.cpp was asked for a context of a billion tokens."""

from __future__ import annotations

import pytest

from edgeprune.cli import main

CONTEXT = 256  # the world model's max_position_embeddings


@pytest.fixture(scope="module")
def gguf_model(world, tmp_path_factory):
    pytest.importorskip("llama_cpp")
    out = tmp_path_factory.mktemp("gguf") / "ex"
    assert main(["export", str(world["model"]), "--formats", "gguf", "--greedy-tokens", "0", "--out", str(out)]) == 0
    return next(out.glob("gguf/*.gguf"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["hf", "gguf"])
def test_generate_beyond_the_context_prints_the_text_and_says_so(world, request, capsys, kind):
    model = world["model"] if kind == "hf" else request.getfixturevalue("gguf_model")
    capsys.readouterr()
    rc = main(["generate", str(model), "-p", "Once upon a time", "-n", "1000000000"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith("Once upon a time") and len(out) > len("Once upon a time\n") + 20, out
    note = [ln for ln in err.splitlines() if "context" in ln]
    assert len(note) == 1 and f"{CONTEXT}" in note[0] and "1,000,000,000" in note[0], err
    generated = int(err.split(" generated")[0].rsplit(", ", 1)[1])
    assert 0 < generated <= CONTEXT and generated >= CONTEXT - 16, err  # the prompt's few tokens aside


def test_generate_within_the_context_says_nothing_about_it(world, capsys):
    assert main(["generate", str(world["model"]), "-p", "Once upon a time", "-n", "5"]) == 0
    assert "context" not in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_chat_past_the_context_answers_and_says_so(world, capsys):
    rc = main(["chat", str(world["model"]), "-p", "Once upon a time", "-n", "1000000000"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.strip(), err  # the answer, cut at the context, is printed
    assert f"stopped at the model's context of {CONTEXT} tokens" in err, err
