"""Recovery on the teacher's own samples: `edgeprune train PRUNED --teacher T` with no --data samples
`teacher:N` for the budget and distils on it, which lowers the pruned model's loss on held-out text
of the teacher's domain; bad teacher-data requests are one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint, save_derived
from edgeprune.cli import main
from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer, split_tokens, token_file
from edgeprune.pipeline.evaluate import sequence_nll
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec
from edgeprune.train.loop import train
from edgeprune.train.train_data import from_tokens
from tests.train.helpers import small_cfg


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny teacher trained on simple sentences, its uniform prune (30% of the parameters, 70% of the blocks), and held-out tokens."""
    from edgeprune.data.tokens import calibration_batch
    from edgeprune.prune import prune_model

    root = tmp_path_factory.mktemp("teacher-data")
    lines = [f"the {w} sat on the mat and the {w} ran to the door number {i % 7}." for i, w in
             enumerate(["cat", "dog", "bird", "fox", "cow"] * 80)]
    text = root / "text.txt"
    text.write_text("\n".join(lines) + "\n")
    tok_dir = embedded_tokenizer_dir()
    tok = load_tokenizer(tok_dir)
    tokens = np.asarray(token_file(text, tok, cache_dir=root / "tok", progress=False))
    spec = ArchSpec.uniform(family="llama", vocab_size=tok.vocab_size, hidden_size=64, n_layers=3, n_heads=4,
                            n_kv_heads=2, ffn_dim=256, head_dim=16, max_position_embeddings=128)
    res = train(build_model(spec, seed=0), from_tokens(tokens, valid_fraction=0.1),
                small_cfg(150, micro_batch=8, lr=3e-3), root / "work")
    teacher = save_checkpoint(res.model.float().cpu().eval(), root / "teacher", tokenizer_dir=tok_dir,
                              config_extra={"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id})
    ck = load_checkpoint(teacher)
    calib = calibration_batch(tokens, n_samples=4, seq_len=32)
    # the plain cut: a student with a gap for recovery to close (reconstruction would close most of it)
    pruned = prune_model(ck.model, method="uniform", ratio=0.3, calib=calib, align=8, progress=False, reconstruct="none")
    student = root / "student"
    save_derived(pruned.model, student, ck, meta={})
    _, valid = split_tokens(tokens, 0.1)
    return {"teacher": teacher, "student": student, "valid": np.asarray(valid)}


def _nll(model_dir, valid) -> float:
    return sequence_nll(load_checkpoint(model_dir).model, valid, seq_len=32).mean


def test_train_with_a_teacher_and_no_data_distils_on_teacher_samples(trained, tmp_path):
    before = _nll(trained["student"], trained["valid"])
    out = tmp_path / "recovered"
    assert main(["train", str(trained["student"]), "--teacher", str(trained["teacher"]), "--tokens", "6000",
                 "--out", str(out), "--seq-len", "32", "--micro-batch", "4", "--no-progress", "--eval-windows", "4",
                 "--lr", "3e-3", "--sample-temperature", "0.9", "--sample-top-p", "0.9"]) == 0
    after = _nll(out, trained["valid"])
    assert after < before - 0.2, (before, after)  # held-out text the student never trained on
    (samples,) = (tmp_path / "cache" / "teacher_text").iterdir()
    meta = json.loads((samples / "meta.json").read_text())
    assert meta["settings"]["temperature"] == 0.9 and meta["settings"]["top_p"] == 0.9
    assert meta["tokens"] >= 6000 / 0.95  # one pass of --tokens beside the held-out split


@pytest.mark.parametrize("argv, message", [
    (["--data", "teacher:5M"], "this run has none"),
    (["--teacher", "{teacher}", "--data", "teacher:many"], "expected teacher:N"),
    (["--teacher", "{teacher}", "--data", "teacher:1k,/no/such.txt"], "does not exist"),
    (["--teacher", "{teacher}", "--sample-top-p", "1.5"], "must be > 0 and <= 1"),
])
def test_bad_teacher_data_is_one_line_exit_2(trained, tmp_path, capsys, argv, message):
    argv = [a.replace("{teacher}", str(trained["teacher"])) for a in argv]
    code = main(["train", str(trained["student"]), "--tokens", "100", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_ship_with_a_model_and_no_data_recovers_on_teacher_samples(trained, tmp_path, monkeypatch, capsys):
    import edgeprune.pipeline.ship as ship

    monkeypatch.setattr(ship, "MIN_TEACHER_SAMPLES", 3000)  # a CPU-sized sample: 3k tokens, not 100k
    out = tmp_path / "dist"
    rc = main(["ship", str(trained["teacher"]), "--out", str(out), "--ratio", "0.3", "--method", "uniform",
               "--align", "8", "--recover-tokens", "2048", "--batch-size", "4", "--seq-len", "32",
               "--calib-samples", "4", "--calib-len", "32", "--eval-tokens", "500", "--formats", "onnx",
               "--quants", "int8", "--bench-prompt", "8", "--bench-gen", "4", "--bench-reps", "1",
               "--sample-temperature", "0.7", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    (samples,) = (tmp_path / "cache" / "teacher_text").iterdir()
    meta = json.loads((samples / "meta.json").read_text())
    assert meta["settings"]["temperature"] == 0.7 and meta["tokens"] >= 3000 / 0.95
    rep = json.loads((out / "report.json").read_text())
    assert rep["eval"]["heldout"]["text"] == str(samples)  # held out of the teacher's samples
    assert "pruned_only" in rep["eval"] and rep["eval"]["pruned"]["ppl"] > 1  # recovery ran on them
