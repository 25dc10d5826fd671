"""Predicted GGUF sizes equal the files llama.cpp writes, for every preset: the skeleton
+ llama.cpp dry-run prediction against os.path.getsize of the real files, on a heterogeneous tiny
model whose short rows force k-quant fallbacks and with a layer without MLP (padded in GGUF)."""

from __future__ import annotations

import os

import pytest

from edgeprune.shape.quant_presets import GGUF_FLOAT, GGUF_QUANTS, gguf_ftype
from tests.pipeline.conftest import embedded_tok, save_tiny  # noqa: F401 (fixture)

pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install edgeprune[llama])")


def test_predicted_gguf_size_equals_the_written_file_for_every_preset(tmp_path, embedded_tok, capsys):
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.export.gguf_size import predict_gguf_sizes
    from edgeprune.export.gguf_writer import write_gguf
    from edgeprune.export.llamacpp_runner import llamacpp_quantize

    d, tok = embedded_tok
    model_dir = save_tiny(tmp_path / "m", d, tok, [(4, 2, 256), (2, 1, 96), (4, 2, 0)], seed=2)
    ck = load_checkpoint(model_dir)
    kw = dict(tokenizer_dir=ck.path, config=ck.config, meta=ck.meta, name=model_dir.name)
    f32 = tmp_path / "out" / "m-F32.gguf"
    write_gguf(ck.model, f32, ftype="F32", **kw)  # exactly as export_gguf writes it
    predicted = predict_gguf_sizes(model_dir, list(GGUF_QUANTS))
    real = {}
    for q in GGUF_QUANTS:
        path = tmp_path / "out" / f"m-{q}.gguf"
        if q == "F32":
            path = f32
        elif q in GGUF_FLOAT:
            write_gguf(ck.model, path, ftype=q, **kw)
        else:
            llamacpp_quantize(f32, path, gguf_ftype(q))
        real[q] = os.path.getsize(path)
    assert {q: p["bytes"] for q, p in predicted.items()} == real
    # the short rows really are fallbacks: the "Q4_K_M" file is not all Q4_K
    assert set(predicted["Q4_K_M"]["types"]) - {"Q4_K", "F32"}

    # `edgeprune info` shows the same exact sizes
    import json

    from edgeprune.cli import main

    assert main(["info", str(model_dir), "--json", "--gguf-sizes", "Q8_0,Q4_K_M"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {q: x["bytes"] for q, x in info["gguf_files"].items()} == {"Q8_0": real["Q8_0"], "Q4_K_M": real["Q4_K_M"]}
