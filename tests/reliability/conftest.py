"""Fixtures of the fault-injection suite: one tiny model + text (built once per session), a
snapshot of a folder's files to prove "nothing touched", and a runner of the real CLI."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """{"model": a 4-layer checkpoint with the embedded tokenizer, "data": ~60 KB of text}."""
    import edgeprune
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer

    root = tmp_path_factory.mktemp("world")
    tok_dir = embedded_tokenizer_dir()
    tok = load_tokenizer(tok_dir)
    spec = ArchSpec(family="llama", vocab_size=tok.vocab_size, hidden_size=64, head_dim=16,
                    layers=tuple(LayerSpec(4, 2, 512) for _ in range(4)), max_position_embeddings=256)
    save_checkpoint(build_model(spec, seed=0), root / "model", tokenizer_dir=tok_dir,
                    config_extra={"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id})
    src = Path(edgeprune.__file__).parent
    (root / "data.txt").write_text("\n\f\n".join(p.read_text() for p in sorted(src.rglob("*.py"))))
    return {"root": root, "model": root / "model", "data": root / "data.txt"}


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 (or 'dir', or a link's target) of everything below `folder`."""
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        rel = str(p.relative_to(folder))
        if p.is_symlink():  # a link (dangling ones too) is its target's name, not its target's bytes
            out[rel] = f"link:{os.readlink(p)}"
        else:
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`edgeprune ARGS` in a fresh process (what a user runs), in `cwd`."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "edgeprune.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line_exit_2(rc: int, err: str) -> str:
    """Assert the CLI's error contract; return the line."""
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("INFO ", "WARNING "))]
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert len(lines) == 1 and re.match(r"^edgeprune( \w+)?: error: ", lines[0]), err
    return lines[0]


@pytest.fixture(scope="session")
def world_gguf(world, tmp_path_factory) -> Path:
    """The world model as an F16 GGUF (written by the real exporter)."""
    from edgeprune.export.api import export_model

    out = tmp_path_factory.mktemp("world_gguf") / "export"
    manifest = export_model(world["model"], out, formats=("gguf",), quants=("F16",),
                            options={"gguf": {"greedy_tokens": 0}}, progress=False)
    (art,) = [a for a in manifest["artifacts"] if a["format"] == "gguf" and a["quant"] == "F16"]
    return out / art["path"]
