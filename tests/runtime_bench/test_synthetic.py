"""Random-weight GGUFs are laid out as export lays out real models, so llama.cpp loads every spec."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgeprune.files.gguf_reader import read_metadata
from edgeprune.export.llamacpp_runner import have_llamacpp, llamacpp_logits
from edgeprune.shape.arch_presets import preset_spec
from edgeprune.runtime_bench.synthetic import write_random_gguf
from tests.conftest import hetero_spec

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")


@pytest.mark.parametrize("name, spec, arch", [
    ("uniform", preset_spec("tiny"), "llama"),
    # per-layer widths, an attention-free layer and a layer without MLP: llama.cpp's deci arch
    ("hetero", dataclasses.replace(hetero_spec(), vocab_size=512), "deci"),
])
def test_random_gguf_loads_in_llamacpp(tmp_path, name, spec, arch):
    path = write_random_gguf(spec, tmp_path / f"{name}.Q8_0.gguf", "Q8_0")
    assert read_metadata(path)["general.architecture"] == arch
    logits = llamacpp_logits(path, [1, 5, 7])
    assert logits.shape == (3, spec.vocab_size) and np.isfinite(logits).all()
