"""The app bundle's serve.sh starts a server that answers on this machine: started on a free port
(`--port`), with no llama-server on PATH, it runs llama-cpp-python's server through the bundle's
serve.py and answers one chat request from the official `openai` client; the port comes from
`--port` or `$PORT`; a bad port, an unknown option or a missing server extra is one line; and
serve.py turns llama.cpp's extra buffer types off on an AMX CPU, as edgeprune's own llama.cpp
children do (a Q8_0 file: the type llama.cpp repacks)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.cli import main
from edgeprune.export.llamacpp_runner import have_llamacpp
from tests.export.gguf_cases import free_port, wait_for_server

pytest.importorskip("openai")
pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server]")
pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

START_TIMEOUT_S = 90


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Path:
    """A trained tiny model (stable, non-EOS argmaxes) exported to Q8_0 with its bundle."""
    from edgeprune.shape.model import build_model
    from tests.export.gguf_cases import encode, make_tokenizer, save_case, spec_of, train_tiny

    root = tmp_path_factory.mktemp("serve")
    tok = make_tokenizer(root / "tok")
    model = train_tiny(build_model(spec_of("llama-uniform-tied"), seed=0), encode(tok), steps=80)
    ckpt = save_case(root, "llama-uniform-tied", tok, model)
    assert main(["export", str(ckpt), "--quant", "Q8_0", "--out", str(root / "out"), "--bundle",
                 "--greedy-tokens", "0", "--no-progress"]) == 0
    return root / "out" / "app"


def _bin(root: Path, python_flags: str = "") -> Path:
    """A PATH folder whose `python3` is this interpreter (the one with llama-cpp-python)."""
    d = root / "bin"
    d.mkdir(exist_ok=True)
    (d / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" {python_flags} "$@"\n')
    (d / "python3").chmod(0o755)
    return d


def _env(bin_dir: Path, **extra: str) -> dict[str, str]:
    path = [p for p in os.environ["PATH"].split(":") if p and not (Path(p) / "llama-server").exists()]
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HOST")}
    return {**env, "PATH": ":".join([str(bin_dir), *path]), **extra}


def test_serve_sh_answers_a_chat_request(app, tmp_path):
    from openai import OpenAI

    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:  # its own session: the whole process group is stopped below
        proc = subprocess.Popen(["sh", str(app / "serve.sh"), "--port", str(port)], env=_env(_bin(tmp_path)),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        wait_for_server(proc, base, log, START_TIMEOUT_S)
        client = OpenAI(base_url=base, api_key="none", timeout=60, max_retries=0)
        reply = client.chat.completions.create(model="local", messages=[{"role": "user", "content": "the cat sat"}],
                                               temperature=0, max_tokens=8)
        assert reply.choices[0].message.content.strip()
        assert reply.usage.completion_tokens > 0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def _fake_llama_server(root: Path) -> Path:
    d = _bin(root)
    (d / "llama-server").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    (d / "llama-server").chmod(0o755)
    return d


@pytest.mark.parametrize("how, argv, env, port", [
    ("default", [], {}, "8080"),
    ("flag", ["--port", "9123"], {}, "9123"),
    ("flag=", ["--port=9124"], {}, "9124"),
    ("environment", [], {"PORT": "9125"}, "9125"),
    ("flag over environment", ["--port", "9126"], {"PORT": "9125"}, "9126"),
])
def test_port_comes_from_the_flag_or_the_environment(app, tmp_path, how, argv, env, port):
    info = json.loads((app / "bundle.json").read_text())
    out = tmp_path / "argv"
    e = _env(_fake_llama_server(tmp_path), ARGS_OUT=str(out), **env)
    subprocess.run(["sh", str(app / "serve.sh"), *argv], env=e, check=True, timeout=30)
    got = out.read_text().split("\n")[:-1]
    want = info["commands"]["llama-server"][1:]
    want[want.index("--port") + 1] = port
    assert got == want


@pytest.mark.parametrize("argv, env, needle", [
    (["--port", "http"], {}, "port 'http' is not a number from 1 to 65535"),
    (["--port", "70000"], {}, "port 70000 is not a number from 1 to 65535"),
    (["--port", "0"], {}, "port '0' is not a number"),
    ([], {"PORT": "-1"}, "port '-1' is not a number"),
    (["--port"], {}, "--port needs a number"),
    (["--verbose"], {}, "unknown option --verbose"),
])
def test_bad_arguments_are_one_line(app, tmp_path, argv, env, needle):
    e = _env(_fake_llama_server(tmp_path), ARGS_OUT=str(tmp_path / "argv"), **env)
    r = subprocess.run(["sh", str(app / "serve.sh"), *argv], env=e, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and needle in r.stderr, r.stderr
    assert not (tmp_path / "argv").exists()  # no server started


def test_missing_server_extra_is_named_in_one_line(app, tmp_path):
    """No llama-server, and a python3 without llama-cpp-python (-S: no site-packages)."""
    r = subprocess.run(["sh", str(app / "serve.sh")], env=_env(_bin(tmp_path, "-S")), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "pip install 'edgeprune[server]'" in r.stderr


SERVE_PY_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import serve
from llama_cpp import Llama

cpuinfo = sys.argv[3]
open(cpuinfo, "w").write("processor : 0\\nflags : fpu sse avx512f amx_bf16 amx_tile amx_int8\\n")
assert serve.cpu_has_amx(cpuinfo) and not serve.cpu_has_amx(cpuinfo + ".missing")
before = Llama(model_path=sys.argv[2], n_ctx=64, verbose=False).model_params.use_extra_bufts
serve.extra_buffers_off()
llm = Llama(model_path=sys.argv[2], n_ctx=64, verbose=False)
print(before, llm.model_params.use_extra_bufts, len(llm.tokenize(b"the cat")) > 0)
"""


def test_serve_py_turns_extra_buffers_off(app, tmp_path):
    """In a child process, as every llama.cpp load here: the patch serve.py applies on an AMX CPU
    reaches the model llama-cpp-python loads, and the file still runs."""
    info = json.loads((app / "bundle.json").read_text())
    r = subprocess.run([sys.executable, "-c", SERVE_PY_PROBE, str(app), str(app / info["default"]),
                        str(tmp_path / "cpuinfo")], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "False", "True"]
