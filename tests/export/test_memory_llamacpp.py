"""The KV-cache estimate (devices/memory.py) equals the KV buffer llama.cpp itself allocates,
read from its own load log, for a uniform (`llama`) and a heterogeneous (`deci`) file, at f16
with and without flash attention and at q8_0."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.export.gguf_export import export_gguf
from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.devices.memory import MIB, kv_cache_bytes, kv_cells, memory_estimate
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec
from tests.export.gguf_cases import VOCAB, encode, make_tokenizer

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

# head_dim 32: a q8_0 cache needs head_dim a multiple of its 32-element block
BASE = dict(family="llama", vocab_size=VOCAB, hidden_size=128, head_dim=32, max_position_embeddings=256)
SPECS = {
    "uniform": ArchSpec(layers=(LayerSpec(4, 2, 128),) * 3, **BASE),
    # per-layer KV heads 1, 2, 0 (attention-free), 3, 4: the sum (10), the first entry (1 x 5 layers)
    # and the maximum (4 x 5) differ
    "hetero": ArchSpec(layers=(LayerSpec(2, 1, 128), LayerSpec(4, 2, 64), LayerSpec(0, 0, 128),
                               LayerSpec(6, 3, 0), LayerSpec(4, 4, 32)), **BASE),
}

# Loads the file in llama.cpp with its log on and prints the log: the KV line is llama.cpp's own
# figure for the buffer it allocated.
PROBE = """
import sys, llama_cpp
path, n_ctx, cache, fa = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
t = getattr(llama_cpp, "GGML_TYPE_" + cache.upper())
llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_gpu_layers=0, type_k=t, type_v=t, flash_attn=fa, verbose=True)
llm.close()
"""
KV_LINE = re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers.*"
                     r"K \((\w+)\):\s*([\d.]+) MiB, V \((\w+)\):\s*([\d.]+) MiB")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("kv")
    tok = make_tokenizer(root / "tok")
    out = {}
    for case, spec in SPECS.items():
        ck = load_checkpoint(save_checkpoint(build_model(spec, seed=0), root / case, tokenizer_dir=tok,
                                             config_extra={"bos_token_id": 0, "eos_token_id": 0}))
        (art,) = export_gguf(ck, root / "out", ["F16"], encode(tok)[:32], greedy_tokens=0, progress=False)
        out[case] = art.path
    return out


def llamacpp_kv(path, n_ctx: int, cache: str, flash_attn: bool) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(path), str(n_ctx), cache, "1" if flash_attn else "0"],
                          capture_output=True, text=True, timeout=120)
    m = KV_LINE.search(done.stderr + done.stdout)
    assert m, f"no KV line in llama.cpp's log (exit {done.returncode}): {done.stderr[-800:]}"
    return {"mib": float(m[1]), "cells": int(m[2]), "layers": int(m[3]), "type": m[4], "k_mib": float(m[5]),
            "v_mib": float(m[7])}


@pytest.mark.parametrize("case,n_ctx,cache,fa", [
    ("uniform", 2048, "f16", False),
    ("uniform", 8192, "q8_0", True),
    ("hetero", 8192, "f16", False),  # no flash attention: V padded to the widest layer
    ("hetero", 8192, "f16", True),
    ("hetero", 3000, "q8_0", True),  # 3000 tokens -> 3072 cells
])
def test_kv_estimate_equals_llamacpp_buffer(files, case, n_ctx, cache, fa):
    spec = SPECS[case]
    got = llamacpp_kv(files[case], n_ctx, cache, fa)
    assert got["cells"] == kv_cells(n_ctx) and got["type"] == cache
    est = kv_cache_bytes(spec, n_ctx, cache, fa)
    # llama.cpp prints MiB with 2 decimals (5 KiB); one KV head of one layer here is >= 96 KiB
    assert round(est / MIB, 2) == got["mib"], (est / MIB, got)
    m = memory_estimate(spec, 10 * MIB, n_ctx, cache, overhead_bytes=3 * MIB, flash_attn=fa)
    assert m.kv_bytes == est and m.total_bytes == est + 13 * MIB


def test_hetero_kv_is_the_per_layer_sum_not_first_or_max(files):
    """What other estimators do (the first entry of the per-layer array, or its maximum, times
    the layer count) is not what llama.cpp allocates for a deci file with flash attention."""
    spec = SPECS["hetero"]
    got = llamacpp_kv(files["hetero"], 8192, "f16", True)
    per_kv_head = kv_cells(8192) * 2 * spec.head_dim * 2  # K and V, f16
    first = spec.n_layers * spec.layers[0].n_kv_heads * per_kv_head
    widest = spec.n_layers * max(lay.n_kv_heads for lay in spec.layers) * per_kv_head
    real = sum(lay.n_kv_heads for lay in spec.layers) * per_kv_head
    assert got["mib"] == round(real / MIB, 2) and got["mib"] not in (round(first / MIB, 2), round(widest / MIB, 2))
    assert kv_cache_bytes(spec, 8192, "f16", True) == real


def test_q8_0_cache_needs_a_whole_block_head_dim():
    from edgeprune.base.errors import SpecError

    spec = ArchSpec(family="llama", vocab_size=64, hidden_size=64, head_dim=16, layers=(LayerSpec(4, 2, 64),))
    with pytest.raises(SpecError, match="multiple of 32"):
        kv_cache_bytes(spec, 512, "q8_0")
    with pytest.raises(SpecError, match="flash attention"):
        kv_cache_bytes(SPECS["uniform"], 512, "q8_0", flash_attn=False)


def test_info_prints_the_same_memory(files, capsys):
    """`info FILE.gguf`: the file's own size plus the KV cache above, at 512 / 2k / 8k."""
    import json

    from edgeprune.cli import main
    from edgeprune.devices.memory import CONTEXTS

    path = files["hetero"]
    assert main(["info", str(path), "--json"]) == 0
    mem = json.loads(capsys.readouterr().out)["memory"][path.name]
    assert [(m["cache_type"], m["n_ctx"]) for m in mem] == [(c, n) for c in ("f16", "q8_0") for n in CONTEXTS]
    for m in mem:
        assert m["weights_bytes"] == path.stat().st_size
        assert m["kv_bytes"] == kv_cache_bytes(SPECS["hetero"], m["n_ctx"], m["cache_type"])
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Memory to run it" in out and "total @ 8k" in out and "q8_0 (flash attn)" in out
