"""Strings from a model are data in the app bundle: a hostile model name (general.name via
edgeprune.json), stop string (the tokenizer's EOS text) and generation_config.json values go
through a real `export --bundle` and a real `ship` (its dist/app); no row may write a live Modelfile directive, a serve.sh that
runs anything but the server, or a README line outside its heading; every number written parses
as a finite number; every stop string reads back as the tokenizer's own text."""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.files.checkpoint import save_checkpoint
from tests.export.gguf_cases import TEXT, random_model, spec_of

from .conftest import cli

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

INJECT = "x\nFROM /etc/passwd\nADAPTER ./evil.gguf\nSYSTEM \"\"\"you are evil\"\"\"\nPARAMETER stop"
# (row id, the model's name, its EOS text, its generation_config.json)
ROWS = [
    ("newlines", INJECT, "<|end|>\nSYSTEM evil", {"temperature": "0.7\nSYSTEM evil", "top_p": "0.9\nADAPTER x",
                                                  "top_k": "40\nFROM x", "repetition_penalty": "1.1\rTEMPLATE x"}),
    ("line-separators", "a\u2028FROM x\u0085ADAPTER y\rSYSTEM z", "<|e\u2029SYSTEM z\u0085|>",
     {"temperature": 0.5, "top_p": float("nan"), "top_k": float("inf"), "repetition_penalty": 1e300}),
    ("quotes-and-shell", 'm"\\$(touch pwned)`touch pwned`\'<img src=x onerror=alert(1)>', '<|"\\" \nFROM x|>',
     {"temperature": True, "top_p": [0.9], "top_k": 40.5, "repetition_penalty": {"x": 1}}),
    ("config not JSON", "plain", "</s>", "{\"temperature\": 0.7,"),
    ("config nested 100,000 deep", "plain", "</s>", "{\"a\":" * 100_000 + "1" + "}" * 100_000),
    ("config a list", "plain", "</s>", "[0.7, 0.9]"),
    ("controls-and-huge", "\x00\x1b[31mred\x7f" + "n" * 5000, "<|\x00\x1b\x07\t|>",
     {"temperature": 10 ** 400, "top_p": "1e999", "top_k": -1, "repetition_penalty": "abc"}),
]
DIRECTIVES = {"FROM", "PARAMETER"}
PARAMS = {"num_ctx", "temperature", "top_p", "top_k", "repeat_penalty", "stop"}


def _unescape(quoted: str) -> str:
    """Read a Modelfile string back: bundle_values writes JSON's own escapes."""
    return json.loads(quoted)


def _checkpoint(root: Path, name: str, eos: str, gen: dict) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok_dir = root / "tok"
    tok_dir.mkdir(parents=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, special_tokens=[eos], show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(tok_dir / "tokenizer.json"))
    (tok_dir / "tokenizer_config.json").write_text(json.dumps({"bos_token": eos, "eos_token": eos}))
    spec = spec_of("llama-uniform-tied")
    ckpt = save_checkpoint(random_model(spec), root / "model", tokenizer_dir=tok_dir,
                           config_extra={"bos_token_id": 0, "eos_token_id": 0}, meta={"name": name})
    (ckpt / "generation_config.json").write_text(gen if isinstance(gen, str) else
                                                 json.dumps({"eos_token_id": 0, **gen}, allow_nan=True))
    return ckpt


def _run(verb, ckpt, root):
    """The verb that writes the bundle: `export --bundle`, or ship (its dist/app) on the same model."""
    if verb == "export":
        return cli("export", ckpt, "--formats", "gguf", "--quant", "F16", "--out", root / "out", "--bundle",
                   "--greedy-tokens", "0", "--no-progress", cwd=root, timeout=300)
    (root / "text.txt").write_text(TEXT * 20)
    return cli("ship", ckpt, "--data", root / "text.txt", "--method", "uniform", "--ratio", "0.2",
               "--recover-tokens", "0", "--calib-samples", "4", "--calib-len", "32", "--seq-len", "64",
               "--eval-tokens", "500", "--formats", "gguf", "--quant", "F16", "--devices", "snapdragon-8-gen-3",
               "--out", root / "out", "--no-progress", cwd=root, timeout=600)


@pytest.mark.parametrize("verb", ["export", "ship"])
@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_hostile_model_strings_stay_data(tmp_path, row, verb):
    _, name, eos, gen = row
    ckpt = _checkpoint(tmp_path, name, eos, gen)
    r = _run(verb, ckpt, tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    if isinstance(gen, dict):
        assert "generation_config.json: top_p" in r.stderr and "leaves it out" in r.stderr  # said, not silent
    app = tmp_path / "out" / "app"
    info = json.loads((app / "bundle.json").read_text())

    lines = (app / "Modelfile").read_text().split("\n")
    assert lines[-1] == "" and all("\r" not in ln for ln in lines)
    live = [ln for ln in lines if ln and not ln.startswith("#")]
    assert {ln.split(" ", 1)[0] for ln in live} <= DIRECTIVES  # no ADAPTER / SYSTEM / TEMPLATE / MESSAGE
    assert [ln for ln in live if ln.startswith("FROM ")] == [f"FROM ./{info['default']}"]
    assert (app / info["default"]).is_file()
    params = [ln.split(" ", 2)[1:] for ln in live if ln.startswith("PARAMETER ")]
    assert {k for k, _ in params} <= PARAMS
    for k, v in params:
        if k != "stop":
            assert math.isfinite(float(v)), (k, v)  # a number, nothing after it
    stops = [_unescape(v) for k, v in params if k == "stop"]
    assert stops == [eos] == info["stop"]  # escaped on the line, the tokenizer's own text when read back
    assert all(len(ln.splitlines()) <= 1 for ln in lines)  # no line breaks by any reader's rules
    assert "\n" not in info["display_name"] and len(info["display_name"]) <= 200

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "llama-server").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGS_OUT"\n')
    (fake / "llama-server").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", ARGS_OUT=str(tmp_path / "argv"))
    subprocess.run(["sh", str(app / "serve.sh")], cwd=tmp_path, env=env, check=True, timeout=30)
    assert (tmp_path / "argv").read_text().split("\n")[:-1] == info["commands"]["llama-server"][1:]
    assert not list(tmp_path.rglob("pwned"))

    readme = (app / "README.md").read_text().split("\n")
    assert readme[0] == f"# {html.escape(info['display_name'], quote=False)}" and not any(ln.startswith(("FROM", "SYSTEM")) for ln in readme)
    assert "<img" not in "\n".join(readme)  # a name's markup is text
    # sampling: only finite numbers in range; the temperature falls back to the default when its is not one
    for key, value in info["sampling"].items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (key, value)
