"""A chat template is code from the model: whatever it raises, and however much work or output it
asks for, every verb that renders it (chat on a checkpoint and on a GGUF, export's probe before a
GGUF claims a template, ship's preflight before any stage) answers with one line naming the template's source and the cause or the
limit, exit 2 — never a traceback, never "out of memory", never a hang."""

from __future__ import annotations

import json
import shutil

import pytest

from .conftest import cli, one_line_exit_2
from .gguf_edit import edit_gguf

# (row id, template, what the line says)
ROWS = [
    ("division by zero", "{{ 1/0 }}", "ZeroDivisionError"),
    ("type error", "{{ messages + 1 }}", "TypeError"),
    ("sandbox range limit", "{{ range(200000)|list|length }}", "Range too big"),
    ("recursion", "{% macro f(x) %}{{ f(x) }}{% endmacro %}{{ f(1) }}", "RecursionError"),
    ("template's own refusal", "{{ raise_exception('only user turns') }}", "only user turns"),
    ("unsafe attribute", "{{ messages.__class__.__mro__ }}", "unsafe"),
    ("lipsum of 10**8", "{{ lipsum(n=10**8) }}", "exceeded its budget"),
    ("nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
     "took more than"),
    ("string doubled", "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}{{ ns.s }}", "exceeded its budget"),
    ("huge repetition", "{{ 'x' * 10**10 }}", "exceeded its budget"),
    ("huge output", "{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}", "exceeded its budget"),
    ("syntax error", "{% for x %}", "failed"),
]
VERBS = ["chat-hf", "chat-gguf", "export", "train teacher:N", "ship"]  # train samples its chat turns through it


def _model_with_template(world, root, template):
    model = root / "model"
    shutil.copytree(world["model"], model)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = template
    cfg_path.write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    return model, cfg_path


@pytest.mark.parametrize("verb", VERBS)
@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_template_failure_is_one_line(world, world_gguf, tmp_path, verb, row):
    import gguf

    _, template, needle = row
    if verb == "chat-gguf":
        src = edit_gguf(world_gguf, tmp_path / "m.gguf",
                        {gguf.Keys.Tokenizer.CHAT_TEMPLATE: (template, gguf.GGUFValueType.STRING)})
        argv, source = ["chat", src, "--prompt", "hi", "-n", "2"], str(src)
    else:
        model, source = _model_with_template(world, tmp_path, template)
        argv = {"chat-hf": ["chat", model, "--prompt", "hi", "-n", "2"],
                "export": ["export", model, "--formats", "gguf", "--quant", "F16", "--out", tmp_path / "out",
                           "--greedy-tokens", "0", "--no-progress"],
                "train teacher:N": ["train", world["model"], "--teacher", model, "--data", "teacher:2K",
                                    "--tokens", "2000", "--out", tmp_path / "out", "--no-progress"],
                "ship": ["ship", model, "--data", world["data"], "--method", "uniform", "--ratio", "0.3",
                         "--recover-tokens", "0", "--out", tmp_path / "out", "--no-progress"]}[verb]
        source = str(model) if verb in ("export", "train teacher:N", "ship") else str(source)
    r = cli(*argv, cwd=tmp_path, timeout=180)
    line = one_line_exit_2(r.returncode, r.stderr)
    assert f"the chat template of {source}" in line and needle in line, line
    assert "out of memory" not in line
    if verb in ("export", "ship"):
        assert not (tmp_path / "out").exists()  # refused before a file claimed a template / before any stage
