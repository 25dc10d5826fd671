"""A model whose parts disagree is one line in its own terms, exit 2, on every verb that reads it:
a GGUF whose token list is empty, short, or longer than its embedding / output rows (llama.cpp
refuses such a file); a tokenizer.json nested 200,000 deep; a prompt whose token ids are at or
past the embedding rows (an added token beyond the vocabulary)."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import cli, one_line_exit_2
from .gguf_edit import edit_gguf


def _tokens(src, n_keep=None, extra=0, out=None):
    import gguf

    r = gguf.GGUFReader(src)
    toks = r.fields[gguf.Keys.Tokenizer.LIST].contents()
    toks = (toks[:n_keep] if n_keep is not None else toks) + [f"<extra{i}>" for i in range(extra)]
    S, I = gguf.GGUFValueType.STRING, gguf.GGUFValueType.INT32
    return edit_gguf(src, out, {gguf.Keys.Tokenizer.LIST: (toks, S), gguf.Keys.Tokenizer.TOKEN_TYPE: ([1] * len(toks), I)})


def _deep_tokenizer(world, root):
    model = root / "deep"
    shutil.copytree(world["model"], model)
    (model / "tokenizer.json").write_text('{"a":' * 200_000 + "1" + "}" * 200_000)
    return model


def _added_token(world, root):
    model = root / "added"
    shutil.copytree(world["model"], model)
    tj = json.loads((model / "tokenizer.json").read_text())
    new_id = max(t["id"] for t in tj["added_tokens"]) + 1
    tj["added_tokens"].append({"id": max(new_id, 4096), "content": "<tool>", "single_word": False, "lstrip": False,
                               "rstrip": False, "normalized": False, "special": True})
    (model / "tokenizer.json").write_text(json.dumps(tj))
    return model


# (row id, makes the input from (world, world_gguf, tmp), the verbs, what the line says)
ROWS = [
    ("gguf empty token list", lambda w, g, t: _tokens(g, n_keep=0, out=t / "empty.gguf"), ["info", "prune", "ship"],
     "holds 0 tokens"),
    ("gguf short token list", lambda w, g, t: _tokens(g, n_keep=10, out=t / "short.gguf"), ["info", "prune", "ship"],
     "holds 10 tokens"),
    ("gguf more tokens than rows", lambda w, g, t: _tokens(g, extra=50, out=t / "long.gguf"), ["info", "prune", "ship"],
     "rows"),
    ("tokenizer.json 200,000 deep", lambda w, g, t: _deep_tokenizer(w, t), ["info", "prune", "generate", "ship"],
     "tokenizer.json"),
    ("token id past the embedding rows", lambda w, g, t: _added_token(w, t), ["generate", "chat"],
     "embedding rows"),
]
ARGV = {
    "info": lambda m, w: ["info", m],
    "prune": lambda m, w: ["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", w["data"], "--out", "o"],
    "generate": lambda m, w: ["generate", m, "--prompt", "hello <tool>", "-n", "2"],
    "chat": lambda m, w: ["chat", m, "--prompt", "hello <tool>", "-n", "2"],
    "ship": lambda m, w: ["ship", m, "--method", "uniform", "--ratio", "0.3", "--data", w["data"],
                          "--recover-tokens", "0", "--out", "o", "--no-progress"],
}


@pytest.mark.parametrize("row, verb", [(r, v) for r in ROWS for v in r[2]], ids=lambda x: x[0] if isinstance(x, tuple) else x)
def test_disagreeing_model_is_one_line(world, world_gguf, tmp_path, row, verb):
    _, make, _, needle = row
    model = make(world, world_gguf, tmp_path)
    r = cli(*ARGV[verb](model, world), cwd=tmp_path, timeout=300)
    err = "\n".join(ln for ln in r.stderr.splitlines() if "has no chat template: using" not in ln)  # chat's notice
    line = one_line_exit_2(r.returncode, err)
    assert needle in line, line
    assert not (tmp_path / "o").exists()
