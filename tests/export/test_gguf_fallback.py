"""llama.cpp's own fallback types for rows that are not whole quant blocks, read back from files it
quantized, against the one rule edgeprune predicts sizes and type mixes with
(`edgeprune.shape.quant_presets.row_type`, read by spec.matrix_bytes and edgeprune/shape/gguf_types.py)."""

from __future__ import annotations

import pytest

from edgeprune.shape.spec import ArchSpec, LayerSpec

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def f16_file(tmp_path_factory):
    from edgeprune.runtime_bench.synthetic import write_random_gguf

    # ffn_down rows are ffn_dim long: 288 is 9 blocks of 32 but not whole 256-blocks; 300 is neither
    spec = ArchSpec(family="llama", vocab_size=1024, hidden_size=256, head_dim=64,
                    layers=(LayerSpec(4, 2, 288), LayerSpec(4, 2, 300)), max_position_embeddings=256,
                    tie_word_embeddings=True)
    return write_random_gguf(spec, tmp_path_factory.mktemp("fallback") / "m.F16.gguf", "F16", seed=0)


@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_S", "Q4_K_S", "Q6_K", "Q4_0"])
def test_fallback_types_match_llamacpp(f16_file, tmp_path, ftype):
    from gguf.constants import LlamaFileType

    from edgeprune.shape.gguf_types import matrix_type
    from edgeprune.export.llamacpp_runner import llamacpp_quantize
    from edgeprune.files.gguf_reader import open_gguf

    out = tmp_path / f"m.{ftype}.gguf"
    llamacpp_quantize(f16_file, out, int(LlamaFileType[f"MOSTLY_{ftype}"]))
    got = {t.name: t.tensor_type.name for t in open_gguf(out).tensors}
    for layer, cols in ((0, 288), (1, 300)):
        assert got[f"blk.{layer}.ffn_down.weight"] == matrix_type("ffn_down", cols, ftype), (layer, cols)
