"""Our GGUF files through a real serving stack: llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server` through the bundle's serve.py, started with the bundle's own command line) queried with the
official `openai` client — a chat completion, a streamed one and a plain completion, greedy —
give exactly the text `edgeprune chat` / `edgeprune generate` give on the same file, for a
uniform (`llama`) and a heterogeneous (`deci`) file."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edgeprune.cli import main
from edgeprune.export.bundle_serve import SERVE_PY, SERVE_PY_TEXT, server_argv
from edgeprune.export.llamacpp_runner import have_llamacpp
from tests.export.gguf_cases import free_port, wait_for_server

pytest.importorskip("openai")
pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

N_NEW = 12
PROMPT = "the cat sat on"
# greedy as edgeprune decodes: temperature 0, and no repeat penalty (the server's default is 1.1)
GREEDY = dict(temperature=0, max_tokens=N_NEW, extra_body={"repeat_penalty": 1.0})
START_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from tests.export.gguf_cases import make_tokenizer

    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module", params=["llama-uniform-tied", "llama-hetero-tied"])
def gguf(request, tmp_path_factory, tok_dir):
    """A trained tiny model (peaked, stable argmaxes) exported to F16."""
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.export.gguf_export import export_gguf
    from edgeprune.shape.model import build_model
    from tests.export.gguf_cases import encode, save_case, spec_of, train_tiny

    root = tmp_path_factory.mktemp(request.param)
    ids = encode(tok_dir)
    model = train_tiny(build_model(spec_of(request.param), seed=0), ids, steps=80)
    ckpt = load_checkpoint(save_case(root, request.param, tok_dir, model))
    (art,) = export_gguf(ckpt, root / "out", ["F16"], ids[-64:], greedy_tokens=0, progress=False)
    assert art.details["arch"] == ("llama" if "uniform" in request.param else "deci")
    return art.path


@pytest.fixture(scope="module")
def server(gguf, tmp_path_factory):
    """The server on 127.0.0.1 at a free port; stopped in the finalizer whatever the test did."""
    port = free_port()
    here = tmp_path_factory.mktemp("server")
    (here / SERVE_PY).write_text(SERVE_PY_TEXT)  # the bundle's wrapper: AMX-safe on any x86 CPU
    argv = server_argv(SERVE_PY, str(gguf), n_ctx=256, port=port)
    argv[0] = sys.executable  # "python" in the bundle: this interpreter here
    log = here / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=here)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_for_server(proc, base, log, START_TIMEOUT_S)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server, api_key="not-needed", timeout=60, max_retries=0)


def _cli(capsys, *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_chat_completion_equals_edgeprune_chat(client, gguf, capsys):
    ours = _cli(capsys, "chat", str(gguf), "--prompt", PROMPT, "--max-new-tokens", str(N_NEW)).strip()
    reply = client.chat.completions.create(model="local", messages=[{"role": "user", "content": PROMPT}], **GREEDY)
    assert reply.choices[0].message.content.strip() == ours and ours
    assert reply.usage.completion_tokens <= N_NEW


def test_streamed_chat_completion_equals_edgeprune_chat(client, gguf, capsys):
    ours = _cli(capsys, "chat", str(gguf), "--prompt", PROMPT, "--max-new-tokens", str(N_NEW)).strip()
    stream = client.chat.completions.create(model="local", messages=[{"role": "user", "content": PROMPT}],
                                            stream=True, **GREEDY)
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) > 1  # it really streamed, token by token
    assert "".join(pieces).strip() == ours


def test_completion_equals_edgeprune_generate(client, gguf, capsys):
    out = _cli(capsys, "generate", str(gguf), "--prompt", PROMPT, "--max-tokens", str(N_NEW))
    assert out.startswith(PROMPT) and out.endswith("\n")
    ours = out[len(PROMPT):-1]
    reply = client.completions.create(model="local", prompt=PROMPT, **GREEDY)
    assert reply.choices[0].text == ours and ours.strip()
