"""What a user reads in an export folder: a model converted from a GGUF is re-exported under the
GGUF's own stem (`SmolLM2.Q4_1-Q8_0.gguf`, not `SmolLM2.Q4_1-<16 hex of its sha256>-Q8_0.gguf`),
the hash kept in the manifest; and every file written has the modes umask gives any new file
(model.safetensors was 0600: safetensors writes through mkstemp)."""

from __future__ import annotations

import json
import os

import pytest

from edgeprune.base.hashing import file_sha256
from edgeprune.cli import main
from edgeprune.export.llamacpp_runner import have_llamacpp
from tests.export.gguf_cases import make_tokenizer, save_case

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_reexported_gguf_keeps_a_readable_name_and_ordinary_modes(tmp_path, monkeypatch, umask_022):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    ckpt = save_case(tmp_path, "llama-uniform-tied", make_tokenizer(tmp_path / "tok"))
    assert main(["export", str(ckpt), "--quant", "F16", "--out", str(tmp_path / "first"), "--greedy-tokens", "0",
                 "--no-progress"]) == 0
    (first,) = (tmp_path / "first" / "gguf").glob("*.gguf")
    src = tmp_path / "Smol.Q4_1.gguf"  # a published file's kind of name: dots, its own quant
    first.rename(src)

    out = tmp_path / "second"
    assert main(["export", str(src), "--formats", "hf,gguf", "--quant", "Q8_0", "--out", str(out),
                 "--greedy-tokens", "0", "--no-progress"]) == 0
    names = sorted(p.name for p in out.rglob("*.gguf"))
    assert names == ["Smol.Q4_1-Q8_0.gguf"], names
    assert not [p for p in out.rglob("*") if file_sha256(src)[:16] in p.name]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source_gguf"]["file"] == src.name
    assert manifest["source_gguf"]["sha256"] == file_sha256(src)  # the hash, where programs look

    written = [p for p in out.rglob("*") if not p.is_symlink()]
    assert any(p.name == "model.safetensors" for p in written)
    for p in written:
        want = 0o755 if p.is_dir() else 0o644
        assert p.stat().st_mode & 0o777 == want, (p, oct(p.stat().st_mode & 0o777))
    # the converted checkpoint in the cache too: a user may copy it out
    (cached,) = (tmp_path / "cache" / "gguf-input").iterdir()
    assert (cached / "model.safetensors").stat().st_mode & 0o777 == 0o644
