"""A hostile file of a few bytes (a config.json claiming 10^9 layers, a GGUF whose header claims
2^61 array entries, a repeated key, nested arrays, a truncated header) is one line naming what is
wrong, exit 2, for every verb that reads a model: never a hang, a growing process or gguf's
internal exception text. Each run is held to 1 GB more address space and 60 s."""

from __future__ import annotations

import json
import resource
import shutil
import struct
from contextlib import contextmanager

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2


def _s(b: bytes) -> bytes:
    return struct.pack("<Q", len(b)) + b


def _kv_str(k: str, v: str) -> bytes:
    return _s(k.encode()) + struct.pack("<I", 8) + _s(v.encode())


def _hdr(n_tensors: int, n_kv: int) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv)


ARCH = _kv_str("general.architecture", "llama")
GGUFS = {  # name -> (bytes, what the line says)
    "array": (_hdr(0, 2) + ARCH + _s(b"tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**61) + _s(b"a") * 10,
              "claims 2,305,843,009,213,693,952 entries"),
    "string": (_hdr(0, 1) + _s(b"general.architecture") + struct.pack("<IQ", 8, 2**62) + b"x" * 100,
               "claims a string of"),
    "duplicate": (_hdr(0, 2) + ARCH + ARCH, "appears twice"),
    "nested": (_hdr(0, 1) + _s(b"x") + struct.pack("<I", 9) + struct.pack("<IQ", 9, 1) * 3000
               + struct.pack("<IQ", 4, 1) + b"\0" * 4, "nests arrays"),
    "truncated": (_hdr(0, 3) + ARCH, "truncated"),
    "tensors": (_hdr(2**40, 1) + ARCH, "claims 1,099,511,627,776 tensors"),
    "blocks": (_hdr(0, 2) + ARCH + _s(b"llama.block_count") + struct.pack("<II", 4, 10**9),
               "llama.block_count=1,000,000,000"),
}
CONFIGS = {"num_hidden_layers": (10**9, "num_hidden_layers=1,000,000,000"),
           "hidden_size": (2**40, "hidden_size=1,099,511,627,776"),
           "intermediate_size": (10**12, "ffn_dim=1,000,000,000,000")}
VERBS = {  # how each verb is handed a model (and data)
    "info": lambda m, d: ["info", m, "--gguf-sizes", ""],
    "prune": lambda m, d: ["prune", m, "--method", "uniform", "--ratio", "0.3", "--calib", d, "--out", "o"],
    "train": lambda m, d: ["train", m, "--data", d, "--tokens", "2000", "--out", "o"],
    "export": lambda m, d: ["export", m, "--formats", "hf", "--out", "o"],
    "eval": lambda m, d: ["eval", m, "--data", d],
    "generate": lambda m, d: ["generate", m, "-p", "hi"],
}
GGUF_VERBS = {  # verbs that take a GGUF file only
    "bench": lambda m, d: ["bench", m, "--reps", "1", "--no-progress"],
    "bench-predict": lambda m, d: ["bench", "--predict-only", m],
}


@contextmanager
def bounded(extra_bytes: int = 1 << 30):
    """At most `extra_bytes` more address space for this process while the block runs."""
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _run(argv, capsys) -> str:
    with bounded():
        rc = main(argv)
    line = one_line_exit_2(rc, capsys.readouterr().err)
    assert "out of memory" not in line and "Error:" not in line and "Duplicate" not in line, line
    return line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb", ["info", "prune", "export", "eval", "generate", *GGUF_VERBS])
@pytest.mark.parametrize("case", list(GGUFS))
def test_hostile_gguf_is_one_line(world, tmp_path, monkeypatch, capsys, verb, case):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    data, says = GGUFS[case]
    (tmp_path / "x.gguf").write_bytes(data)
    argv = {**VERBS, **GGUF_VERBS}[verb]("x.gguf", str(world["data"]))
    if verb in ("generate", "bench"):
        pytest.importorskip("llama_cpp")
    if case == "blocks" and verb in ("generate", "bench", "bench-predict"):
        # a well-formed header: llama.cpp's own loader (a child process) refuses it; bench's
        # prediction reads tensor sizes, never the block count
        pytest.skip("llama.cpp judges the hyperparameters of a well-formed GGUF")
    line = _run(argv, capsys)
    assert says in line and "x.gguf" in line, line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("key", list(CONFIGS))
def test_hostile_config_is_one_line(world, tmp_path, monkeypatch, capsys, verb, key):
    monkeypatch.chdir(tmp_path)
    shutil.copytree(world["model"], tmp_path / "m")
    (tmp_path / "m" / "edgeprune.json").unlink(missing_ok=True)  # config.json is then the spec's source
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    value, says = CONFIGS[key]
    cfg[key] = value
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    line = _run(VERBS[verb]("m", str(world["data"])), capsys)
    assert says in line and "config.json" in line, line
