"""A file named .onnx that is no ONNX model is told so, in one line naming it, exit 2, by every
verb that runs or measures one: a text file used to be told "no tokenizer.json beside it", as if
it were a good model missing a file."""

from __future__ import annotations

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2

FILES = {"text": b"just some notes\n", "empty": b"", "garbage": b"\x08\x07not a protobuf" * 10}
VERBS = {
    "generate": ["generate", "x.onnx", "-p", "hi"],
    "chat": ["chat", "x.onnx", "-p", "hi"],
    "bench": ["bench", "x.onnx", "--reps", "1", "--no-progress"],
    "bench-predict": ["bench", "--predict-only", "x.onnx"],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("content", list(FILES))
@pytest.mark.parametrize("verb", list(VERBS))
def test_a_file_that_is_no_onnx_model_is_told_so(tmp_path, monkeypatch, capsys, verb, content):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.onnx").write_bytes(FILES[content])
    (tmp_path / "tokenizer.json").write_text("{}")  # beside it or not, the file itself is what is wrong
    line = one_line_exit_2(main(VERBS[verb]), capsys.readouterr().err)
    assert "x.onnx" in line and "not an ONNX file" in line, line
    assert "tokenizer" not in line, line
