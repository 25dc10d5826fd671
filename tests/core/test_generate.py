"""`edgeprune generate` / `chat` on the three kinds of output: an HF dir (PyTorch), a GGUF
(llama.cpp in a subprocess) and an ONNX file (onnxruntime) of one tiny model. Greedy decoding of
the same float weights gives the same text in every runtime."""

from __future__ import annotations

import json
import sys

import pytest

from edgeprune.cli import main
from edgeprune.pipeline.generate import PLAIN_CHAT_TEMPLATE, open_lm, render_chat
from tests.pipeline.conftest import embedded_tok, save_tiny  # noqa: F401 (fixture)

PROMPT = "def load_tokenizer(path"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, embedded_tok):
    """A tiny heterogeneous model as HF dir, F32 GGUF and fp32 ONNX."""
    from edgeprune.export.api import export_model

    root = tmp_path_factory.mktemp("gen")
    d, tok = embedded_tok
    model = save_tiny(root / "model", d, tok, [(4, 2, 128), (2, 1, 96)], seed=5)
    formats = ["onnx"] + (["gguf"] if _have_llamacpp() else [])
    man = export_model(model, root / "out", formats=formats, quants=[], progress=False,
                       options={"gguf": {"greedy_tokens": 0}})
    arts = {a["format"]: root / "out" / a["path"] for a in man["artifacts"]}
    return {"hf": model, **arts}


def _have_llamacpp() -> bool:
    from edgeprune.export.llamacpp_runner import have_llamacpp

    return have_llamacpp()


def _kinds():
    return ["hf", "onnx", pytest.param("gguf", marks=pytest.mark.skipif(not _have_llamacpp(),
                                                                          reason="llama-cpp-python missing"))]


@pytest.mark.parametrize("kind", _kinds())
def test_generate_cli_on_each_runtime(outputs, kind, capsys):
    assert main(["generate", str(outputs[kind]), "--prompt", PROMPT, "-n", "12"]) == 0
    cap = capsys.readouterr()
    assert cap.out.startswith(PROMPT) and len(cap.out) > len(PROMPT) + 1
    runtime = {"hf": "pytorch", "onnx": "onnxruntime", "gguf": "llama.cpp"}[kind]
    assert f"[{runtime}]" in cap.err and "12 generated" in cap.err


def test_greedy_text_is_the_same_in_every_runtime(outputs):
    texts = {k: open_lm(str(p)).complete(PROMPT, max_new_tokens=10, stop_at_eos=False).text
             for k, p in outputs.items()}
    assert len(set(texts.values())) == 1, texts
    # sampling is seeded: same seed, same text; the text differs from greedy for some seed
    lm = open_lm(str(outputs["hf"]))
    a = lm.complete(PROMPT, max_new_tokens=10, temperature=1.0, seed=1, stop_at_eos=False).text
    assert a == lm.complete(PROMPT, max_new_tokens=10, temperature=1.0, seed=1, stop_at_eos=False).text


@pytest.mark.parametrize("kind", _kinds())
def test_generation_stops_at_the_models_context_on_each_runtime(outputs, kind):
    """-n far past the context: each runtime stops when the context is full and says where."""
    from edgeprune.files.spec_of import spec_of

    context = spec_of(outputs["hf"]).max_position_embeddings
    res = open_lm(str(outputs[kind])).complete(PROMPT, max_new_tokens=10**9, stop_at_eos=False)
    assert res.context == context, res
    assert context - res.prompt_tokens <= res.new_tokens <= context - res.prompt_tokens + 1, res
    assert open_lm(str(outputs[kind])).complete(PROMPT, max_new_tokens=3, stop_at_eos=False).context is None


@pytest.mark.parametrize("kind", _kinds())
def test_chat_reads_turns_from_stdin(outputs, kind, capsys, monkeypatch):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\nhow are you?\n\n"))
    assert main(["chat", str(outputs[kind]), "-n", "6"]) == 0
    cap = capsys.readouterr()
    assert len(cap.out.splitlines()) == 2  # one answer per turn
    assert "no chat template" in cap.err  # the tiny model has none: said once, plain prompt used


def test_chat_uses_the_models_template(outputs, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(outputs["hf"], d)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["chat_template"] = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{{ eos_token }}{% endfor %}"
                            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    lm = open_lm(str(d))
    assert lm.has_chat_template
    assert lm.chat_prompt([{"role": "user", "content": "hi"}]) == "<|user|>hi<|endoftext|><|assistant|>"
    assert render_chat(None, [{"role": "user", "content": "hi"}]) == "User: hi\nAssistant:"
    assert PLAIN_CHAT_TEMPLATE


def test_generate_bad_input_is_one_line(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nope.txt"), "--prompt", "x"]) == 2
    assert main(["generate", str(tmp_path / "missing.gguf"), "--prompt", "x"]) == 2
    assert main(["generate", str(tmp_path), "--prompt", "x", "-n", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("edgeprune: error:") for line in err)
