"""The app bundle's server scripts: serve.sh (llama.cpp's llama-server when it is on PATH, else
llama-cpp-python's server through serve.py) and serve.py itself.

Both must answer on the machine that made the bundle, so both do what edgeprune's own llama.cpp
children do (export/llamacpp_buffers.py): on x86 CPUs with AMX, llama.cpp repacks Q4_0 / Q8_0
weights into an AMX buffer and llama-cpp-python 0.3.x segfaults in decode, so there the model loads
with llama.cpp's extra buffer types off — llama-server through LLAMA_ARG_NO_REPACK (its
`--no-repack`, read from the environment so an older build that lacks the flag still starts),
llama-cpp-python through serve.py, which patches the model-parameter defaults the way
llamacpp_buffers does (`Llama(...)` has no argument for it). The bundle is copied to machines
without edgeprune, so serve.py carries its own copy of that patch instead of importing ours.
"""

from __future__ import annotations

import shlex
from typing import Optional, Union

from edgeprune.base.errors import ExportError

LLAMA_SERVER_PORT, PY_SERVER_PORT = 8080, 8000  # each server's own default port
SERVE_PY = "serve.py"
# what serve.sh names when neither server is installed: edgeprune's extra pins the build it tests
SERVER_INSTALL = "pip install 'edgeprune[server]' (or 'llama-cpp-python[server]')"


def server_argv(kind: str, gguf: str, n_ctx: int, host: str = "127.0.0.1",
                port: Optional[Union[int, str]] = None) -> list[str]:
    """The command line of an OpenAI-compatible server for `gguf`: kind "llama-server" (llama.cpp's
    own binary), "llama-cpp-python" (`python -m llama_cpp.server`) or "serve.py" (the bundle's
    wrapper of the latter, AMX-safe). All take the chat template from the file."""
    if kind == "llama-server":
        return ["llama-server", "-m", gguf, "-c", str(n_ctx), "--host", host, "--port",
                str(port or LLAMA_SERVER_PORT), "--jinja"]
    args = ["--model", gguf, "--n_ctx", str(n_ctx), "--host", host, "--port", str(port or PY_SERVER_PORT)]
    if kind == "llama-cpp-python":
        return ["python", "-m", "llama_cpp.server", *args]
    if kind == SERVE_PY:
        return ["python", SERVE_PY, *args]
    raise ExportError(f"unknown server kind {kind!r} (llama-server, llama-cpp-python, serve.py)")


def serve_script(default_file: str, n_ctx: int) -> str:
    """serve.sh. `default_file` is a checked file stem (export/bundle_values.py): no quote, `$` or
    backtick can reach the double-quoted default."""
    file_var = '"$FILE"'
    ports = {"llama-server": f'"${{PORT:-{LLAMA_SERVER_PORT}}}"', SERVE_PY: f'"${{PORT:-{PY_SERVER_PORT}}}"'}

    def line(kind: str) -> str:
        argv = server_argv(kind, file_var, n_ctx, port=ports[kind])
        return " ".join(a if a in (file_var, ports[kind]) else shlex.quote(a) for a in argv[1:])

    return f"""#!/bin/sh
# An OpenAI-compatible server for this model on 127.0.0.1 (http://127.0.0.1:PORT/v1).
#   ./serve.sh [--port N] [FILE.gguf]      (or PORT=N ./serve.sh)      default file: {default_file}
# llama.cpp's own llama-server (port {LLAMA_SERVER_PORT}) when it is on PATH, else llama-cpp-python's
# server through serve.py (port {PY_SERVER_PORT}; {SERVER_INSTALL}).
# On x86 CPUs with AMX llama.cpp's extra buffer types (its AMX weight repack) are turned off:
# llama-cpp-python 0.3.x segfaults with them there.
set -eu
cd "$(dirname "$0")"
FILE="{default_file}"
PORT="${{PORT:-}}"
while [ "$#" -gt 0 ]; do
  case "$1" in
    --port) [ "$#" -ge 2 ] || {{ echo "serve.sh: --port needs a number" >&2; exit 2; }}; PORT="$2"; shift 2 ;;
    --port=*) PORT="${{1#--port=}}"; shift ;;
    -h|--help) echo "usage: ./serve.sh [--port N] [FILE.gguf]   (or PORT=N ./serve.sh); default file {default_file}"; exit 0 ;;
    -*) echo "serve.sh: unknown option $1 (usage: ./serve.sh [--port N] [FILE.gguf])" >&2; exit 2 ;;
    *) FILE="$1"; shift ;;
  esac
done
case "$PORT" in
  "") ;;
  *[!0-9]* | ??????* | 0*) echo "serve.sh: port '$PORT' is not a number from 1 to 65535" >&2; exit 2 ;;
  *) [ "$PORT" -le 65535 ] || {{ echo "serve.sh: port $PORT is not a number from 1 to 65535" >&2; exit 2; }} ;;
esac
if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
  export LLAMA_ARG_NO_REPACK=1  # llama-server's --no-repack; serve.py does the same for llama-cpp-python
fi
if command -v llama-server >/dev/null 2>&1; then
  exec llama-server {line("llama-server")}
fi
PY="$(command -v python3 || command -v python || true)"
if [ -z "$PY" ] || ! "$PY" -c "import llama_cpp.server.app, uvicorn" >/dev/null 2>&1; then
  echo "serve.sh: neither llama-server nor llama-cpp-python's server is installed for ${{PY:-python3}}: {SERVER_INSTALL}" >&2
  exit 1
fi
exec "$PY" {line(SERVE_PY)}
"""


SERVE_PY_TEXT = '''"""llama-cpp-python's OpenAI-compatible server for this bundle: `python serve.py ARGS` runs
`python -m llama_cpp.server ARGS`, except that on x86 CPUs with AMX the model loads with
llama.cpp's extra buffer types off. There llama.cpp repacks Q4_0 / Q8_0 weights into an AMX
buffer and llama-cpp-python 0.3.x segfaults in decode; without them the same arithmetic runs
through the plain CPU kernels. Written by edgeprune (its llama.cpp children do the same)."""

import os
import sys


def cpu_has_amx(cpuinfo="/proc/cpuinfo"):
    try:
        with open(cpuinfo) as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        return False
    return "amx_int8" in flags.split()


def extra_buffers_off():
    """Every later Llama(...) in this process loads without extra buffer types: Llama has no
    argument for it, so the model-parameter defaults it starts from are patched."""
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params

    def plain_params():
        params = original()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = plain_params


def main(argv):
    if cpu_has_amx():
        extra_buffers_off()
        print("serve.py: this CPU has AMX: llama.cpp's extra buffer types (weight repack) are off", file=sys.stderr)
    # llama_cpp.server lets $HOST / $PORT override its flags: the command line given here decides
    os.environ.pop("HOST", None)
    os.environ.pop("PORT", None)
    from llama_cpp.server.__main__ import main as serve

    sys.argv = [sys.argv[0], *argv]
    serve()


if __name__ == "__main__":
    main(sys.argv[1:])
'''


__all__ = ["LLAMA_SERVER_PORT", "PY_SERVER_PORT", "SERVE_PY", "SERVE_PY_TEXT", "SERVER_INSTALL", "server_argv",
           "serve_script"]
