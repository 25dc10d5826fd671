"""The head's type is a decision: `head_type` reaches llama.cpp's quantizer, the GGUF holds the
head at the type the type mix predicts, and the predicted bytes and latency read that type."""

from __future__ import annotations

import pytest

from edgeprune.base.errors import ExportError
from edgeprune.cli import main
from edgeprune.devices.predict import gguf_head_type, predict
from edgeprune.devices.roofline import cost_from_gguf
from edgeprune.export.llamacpp_runner import have_llamacpp
from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.files.gguf_reader import open_gguf
from edgeprune.shape.gguf_types import decode_weight_bytes, gguf_weight_bytes, head_type_of, matrix_type
from tests.export.gguf_cases import encode, make_tokenizer, save_case, spec_of

pytestmark = pytest.mark.skipif(not have_llamacpp(), reason="needs llama-cpp-python")


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.mark.parametrize("case,head,quants", [
    ("llama-uniform-tied", None, ["Q4_0", "Q8_0"]),
    ("llama-uniform-tied", "Q4_0", ["Q4_0", "Q8_0"]),
    ("llama-uniform-tied", "Q5_0", ["Q4_0"]),
    ("llama-uniform-tied", "Q6_K", ["Q4_0"]),  # 64-wide rows are not 256-blocks: the row fallback, Q8_0
    ("qwen2-uniform-untied", "Q4_0", ["Q4_0"]),
    ("llama-hetero-tied", "Q4_0", ["Q8_0"]),
])
def test_head_type_read_back_and_predicted_bytes_equal_the_file(tmp_path, tok_dir, case, head, quants):
    from edgeprune.export.gguf_export import export_gguf

    ckpt = load_checkpoint(save_case(tmp_path, case, tok_dir))
    spec = ckpt.spec
    arts = export_gguf(ckpt, tmp_path / "out", quants, encode(tok_dir)[:48], greedy_tokens=0, progress=False,
                       head_type=head)
    for art in arts:
        want = gguf_weight_bytes(spec, art.quant, head)
        got = gguf_head_type(art.path)
        assert got == want["head_type"]
        if head in ("Q4_0", "Q5_0"):
            assert got == head
        if head is None:  # llama.cpp's own choice, as the type mix has always predicted
            assert got == matrix_type("token_embd", spec.hidden_size, art.quant, is_head=True)
        tensors = {t.name: int(t.n_bytes) for t in open_gguf(art.path).tensors}
        assert tensors["token_embd.weight" if spec.tie_word_embeddings else "output.weight"] == want["head"]
        if spec.is_uniform:  # a deci file also keeps norms beside removed blocks, which the spec does not count
            assert sum(tensors.values()) == want["total"]
            assert cost_from_gguf(art.path).weight_bytes_read == decode_weight_bytes(spec, art.quant, head)
        # the latency model prices the file by the head it holds, as it prices the spec with the decision
        by_file = predict(art.path, "local", art.quant, spec=spec)
        by_spec = predict(spec, "local", art.quant, head_type=head)
        assert by_file["model_tg_tps"] == pytest.approx(by_spec["model_tg_tps"], rel=1e-12)
        assert by_file["head_type"] == got


def test_a_cheaper_head_is_predicted_faster_by_its_bytes():
    from edgeprune.shape.arch_presets import preset_spec

    spec = preset_spec("smollm2-135m")
    q8, q4 = (gguf_weight_bytes(spec, "Q4_0", h) for h in ("Q8_0", "Q4_0"))
    assert q8["head_type"] == "Q8_0" and q4["head_type"] == "Q4_0"
    assert q8["head"] == 49152 * 576 * 34 // 32 and q4["head"] == 49152 * 576 * 18 // 32
    assert q8["total"] - q4["total"] == q8["head"] - q4["head"]
    default = predict(spec, "local", "Q4_0")
    assert default["head_type"] == "Q8_0"  # 576 is not whole 256-blocks: llama.cpp's Q6_K falls back
    assert predict(spec, "local", "Q4_0", head_type="Q8_0")["model_tg_tps"] == default["model_tg_tps"]
    assert predict(spec, "local", "Q4_0", head_type="Q4_0")["model_tg_tps"] > default["model_tg_tps"]


def test_bad_head_type_is_one_line(tmp_path, tok_dir, capsys):
    with pytest.raises(ExportError, match="Q8_0, Q6_K, Q5_0, Q4_0"):
        head_type_of("q3_k")
    src = save_case(tmp_path, "llama-uniform-tied", tok_dir)
    assert main(["export", str(src), "--quant", "Q4_0", "--head-type", "IQ2", "--out", str(tmp_path / "o")]) == 2
    assert "--head-type 'IQ2'" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_export_cli_head_type_reaches_the_file(tmp_path, tok_dir):
    src = save_case(tmp_path, "llama-uniform-tied", tok_dir)
    assert main(["export", str(src), "--quant", "Q4_0", "--head-type", "q5_0", "--greedy-tokens", "0",
                 "--no-progress", "--out", str(tmp_path / "o")]) == 0
    (path,) = (tmp_path / "o").rglob("*-Q4_0.gguf")
    assert gguf_head_type(path) == "Q5_0"


def test_the_searchs_head_decision_reaches_the_file(tmp_path, tok_dir):
    """Under a decode target only a cheaper head reaches, the search lowers the head's type; the
    pruned checkpoint records it (edgeprune.json "pruning" → "head") and the GGUF export at that
    quant stores the head at exactly that type, with the bytes the search predicted."""
    import torch

    from edgeprune.devices import load_device
    from edgeprune.export.gguf_export import export_gguf
    from edgeprune.files.checkpoint import save_checkpoint
    from edgeprune.prune import prune_model
    from edgeprune.shape.model import build_model

    calib = torch.randint(0, 320, (8, 16), generator=torch.Generator().manual_seed(3))
    res = prune_model(build_model(spec_of("llama-uniform-tied"), seed=0), method="search", calib=calib, align=8,
                      progress=False, device=load_device("raspberry-pi-5"), quant="Q4_0", speedup=1.4, steps=1,
                      finalists=2, refine=0)
    decided = res.summary()["head"]
    assert decided["decided"] and decided["type"] == "Q4_0"  # the preset's Q8_0 head cannot reach x1.4 here
    path = save_checkpoint(res.model, tmp_path / "pruned", tokenizer_dir=tok_dir,
                           config_extra={"bos_token_id": 0, "eos_token_id": 0}, meta={"pruning": res.summary()})
    ckpt = load_checkpoint(path)
    q4, q8 = export_gguf(ckpt, tmp_path / "out", ["Q4_0", "Q8_0"], encode(tok_dir)[:48], greedy_tokens=0,
                         progress=False)
    assert gguf_head_type(q4.path) == "Q4_0" and q4.details["head_type_from"] == "pruning"
    assert cost_from_gguf(q4.path).weight_bytes_read == decided["predicted_decode_bytes"]
    assert gguf_head_type(q8.path) == "Q8_0"  # the decision was priced at Q4_0: another quant keeps its preset
