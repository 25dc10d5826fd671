"""`spec_of(path)`: one answer to "what shape is this file" for every kind of model input, and one
line for anything else."""

from __future__ import annotations

import pytest

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.base.errors import EdgepruneError
from edgeprune.export.gguf_writer import write_gguf
from edgeprune.export.onnx_export import export_fp32
from edgeprune.shape.model import build_model
from edgeprune.files.spec_of import spec_of, spec_or_none
from tests.conftest import hetero_spec


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One heterogeneous, untied model as a checkpoint, a spec JSON, a GGUF and an ONNX file."""
    from edgeprune.data.tokens import embedded_tokenizer_dir

    root = tmp_path_factory.mktemp("spec_of")
    spec = hetero_spec(tie=False, vocab=4096)
    model = build_model(spec).eval()
    ckpt = save_checkpoint(model, root / "ckpt", tokenizer_dir=embedded_tokenizer_dir())
    (root / "spec.json").write_text(spec.to_json())
    ck = load_checkpoint(ckpt)
    write_gguf(ck.model, root / "m.gguf", ftype="F32", tokenizer_dir=ckpt, config=ck.config, meta=ck.meta)
    export_fp32(ck.model, root / "m.onnx")
    return spec, root


@pytest.mark.parametrize("name", ["ckpt", "spec.json", "m.gguf", "m.onnx"])
def test_every_kind_of_input_gives_the_same_spec(files, name):
    spec, root = files
    got = spec_of(root / name)
    assert got.layers == spec.layers
    assert (got.hidden_size, got.head_dim, got.vocab_size) == (spec.hidden_size, spec.head_dim, spec.vocab_size)
    assert got.tie_word_embeddings is False and got.n_params == spec.n_params


def test_files_that_are_not_models_are_one_line(files, tmp_path):
    _, root = files
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    text_onnx = tmp_path / "x.onnx"
    text_onnx.write_text("not protobuf at all")
    foreign = tmp_path / "y.onnx"
    foreign.write_bytes((root / "m.onnx").read_bytes().replace(b"edgeprune", b"someother"))
    for path, words in ((notes, "not a spec JSON file"), (text_onnx, "not an ONNX file"),
                        (foreign, "no edgeprune spec"), ("/dev/null", "not a spec JSON file"),
                        (tmp_path / "missing", "missing")):
        with pytest.raises(EdgepruneError) as e:
            spec_of(path)
        assert words in str(e.value) and "\n" not in str(e.value)
        assert spec_or_none(path) is None
