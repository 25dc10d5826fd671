"""Bad GGUF files fail with a clear ExportError and the calling process survives (llama.cpp runs
in a child: a GGML_ASSERT abort kills only the child)."""

from __future__ import annotations

import os

import pytest

from edgeprune.base.errors import ExportError
from edgeprune.export import gguf_writer
from edgeprune.export.gguf_writer import write_gguf
from edgeprune.export.llamacpp_runner import have_llamacpp, llamacpp_logits
from edgeprune.shape.spec import LayerSpec
from tests.export.gguf_cases import random_model, spec_of

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")

TOKENS = [1, 2, 3, 4, 5, 6, 7, 8]


def _good(tmp_path):
    path = tmp_path / "good.gguf"
    write_gguf(random_model(spec_of("llama-uniform-tied")), path)
    return path


def test_truncated_gguf(tmp_path):
    good = _good(tmp_path)
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    pid = os.getpid()
    with pytest.raises(ExportError, match="truncated.gguf"):
        llamacpp_logits(bad, TOKENS)
    assert os.getpid() == pid and llamacpp_logits(good, TOKENS).shape == (len(TOKENS), 320)  # caller alive


class _Mismatched:
    """Metadata of one spec, tensors of another: a GGUF with a wrong tensor shape."""

    def __init__(self, spec, other):
        self.spec, self._state = spec, random_model(other).state_dict()

    def state_dict(self):
        return self._state


def test_wrong_tensor_shape(tmp_path):
    spec = spec_of("llama-uniform-tied")
    bad = tmp_path / "wrong-shape.gguf"
    write_gguf(_Mismatched(spec, spec.with_layers([LayerSpec(4, 2, 80)] * 3)), bad)
    with pytest.raises(ExportError, match="wrong shape|wrong-shape.gguf"):
        llamacpp_logits(bad, TOKENS)
    assert llamacpp_logits(_good(tmp_path), TOKENS).shape[0] == len(TOKENS)


def test_llamacpp_abort_is_contained(tmp_path, monkeypatch):
    """Without our zero-FFN stand-in, llama.cpp's deci graph aborts on an MLP-free last layer:
    the abort must surface as an ExportError (signal named), not kill pytest."""
    real = gguf_writer.gguf_layout

    def unpadded(spec):
        lay = real(spec)
        return gguf_writer.GGUFLayout(lay.arch, lay.permute_qk, spec.layers, (), lay.padded_attn)

    spec = spec_of("llama-hetero-tied").with_layer(4, ffn_dim=0)
    monkeypatch.setattr(gguf_writer, "gguf_layout", unpadded)
    bad = tmp_path / "unpadded.gguf"
    write_gguf(random_model(spec), bad)
    monkeypatch.undo()
    with pytest.raises(ExportError, match="unpadded.gguf"):
        llamacpp_logits(bad, TOKENS)
