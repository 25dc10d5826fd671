"""`edgeprune pretrain` / `edgeprune train` end to end on tiny models, and bad input -> exit 2."""

from __future__ import annotations

import json

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.cli import main
from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec

FAST = ["--seq-len", "32", "--micro-batch", "2", "--no-progress", "--eval-windows", "4", "--lr", "3e-3"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    lines = [f"the {w} sat on the mat and the {w} ran to the door number {i % 7}." for i, w in
             enumerate(["cat", "dog", "bird", "fox", "cow"] * 60)]
    (d / "text.txt").write_text("\n".join(lines) + "\n")
    return d / "text.txt"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def small_spec_file(tmp_path_factory):
    vocab = load_tokenizer(embedded_tokenizer_dir()).vocab_size
    spec = ArchSpec(family="llama", vocab_size=vocab, hidden_size=32, head_dim=16,
                    layers=(LayerSpec(2, 1, 64), LayerSpec(0, 0, 48), LayerSpec(2, 2, 0)),
                    max_position_embeddings=128)
    path = tmp_path_factory.mktemp("spec") / "spec.json"
    path.write_text(spec.to_json())
    return path


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_pretrain_then_train_with_teacher(tmp_path, corpus, small_spec_file, capsys):
    out = tmp_path / "pre"
    rc = main(["pretrain", "--arch", str(small_spec_file), "--data", str(corpus), "--tokens", "2560",
               "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    ck = load_checkpoint(out)
    assert (out / "tokenizer.json").is_file() and (out / "train_log.jsonl").is_file()
    assert ck.spec == ArchSpec.from_json(small_spec_file.read_text())
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 2560 // 64 and log[-1]["loss"] < log[0]["loss"]
    assert "valid ppl" in capsys.readouterr().out
    # recovery with distillation from the pretrained model into a narrower copy of itself
    from edgeprune.prune.surgery import remove_mlp_channels

    student = remove_mlp_channels(load_checkpoint(out).model, 0, list(range(32)))
    from edgeprune.files.checkpoint import save_derived

    save_derived(student, tmp_path / "student", ck)
    rc = main(["train", str(tmp_path / "student"), "--teacher", str(out), "--kd-alpha", "0.5",
               "--data", str(corpus), "--tokens", "640", "--out", str(tmp_path / "rec"), *FAST])
    assert rc == 0, capsys.readouterr().err
    rec = load_checkpoint(tmp_path / "rec")
    assert rec.spec == student.spec and rec.meta["teacher"] == str(out)
    assert "kd" in json.loads((tmp_path / "rec" / "train_log.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--arch", "tiny", "--tokens", "100", "--out", "X"], "no training data"),
    (["pretrain", "--arch", "tiny", "--data", "/nonexistent/x.txt", "--tokens", "100", "--out", "X"], "does not exist"),
    (["pretrain", "--arch", "tiny", "--data", "D", "--tokens", "0", "--out", "X"], "--tokens 0 must be > 0"),
    (["pretrain", "--arch", "tiny", "--data", "D", "--tokens", "-5", "--out", "X"], "must be > 0"),
    (["pretrain", "--arch", "tiny", "--data", "D", "--tokens", "lots", "--out", "X"], "is not a count"),
    (["pretrain", "--arch", "nosuch", "--data", "D", "--tokens", "100", "--out", "X"], "neither a preset"),
])
def test_bad_input_is_one_line_exit_2(argv, message, corpus, tmp_path, capsys):
    argv = [str(corpus) if a == "D" else str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    assert message in _err(capsys)


def test_teacher_with_another_vocabulary_is_refused(tmp_path, corpus, capsys):
    vocab = load_tokenizer(embedded_tokenizer_dir()).vocab_size
    spec = ArchSpec.uniform(vocab_size=vocab, hidden_size=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32)
    save_checkpoint(build_model(spec), tmp_path / "student", tokenizer_dir=embedded_tokenizer_dir())
    other = ArchSpec.uniform(vocab_size=300, hidden_size=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=32)
    save_checkpoint(build_model(other), tmp_path / "teacher")
    rc = main(["train", str(tmp_path / "student"), "--teacher", str(tmp_path / "teacher"), "--data", str(corpus),
               "--tokens", "100", "--out", str(tmp_path / "o"), *FAST])
    assert rc == 2
    assert "vocabulary of 300 tokens" in _err(capsys)


def test_resume_dir_from_another_run_is_refused(tmp_path, corpus, small_spec_file, capsys):
    common = ["pretrain", "--arch", str(small_spec_file), "--data", str(corpus), *FAST]
    assert main([*common, "--tokens", "128", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    rc = main([*common, "--tokens", "256", "--out", str(tmp_path / "b"), "--resume", str(tmp_path / "a.train")])
    assert rc == 2
    assert "written by another run (different config)" in _err(capsys)


def test_prune_aware_cli_reaches_target(tmp_path, corpus, small_spec_file, capsys):
    assert main(["pretrain", "--arch", str(small_spec_file), "--data", str(corpus), "--tokens", "64",
                 "--out", str(tmp_path / "base"), *FAST]) == 0
    n0 = load_checkpoint(tmp_path / "base").spec.n_params
    target = int(n0 * 0.85)
    prune_args = ["train", str(tmp_path / "base"), "--prune-aware", "--target-params", str(target),
                  "--prune-events", "3", "--data", str(corpus), "--tokens", "1280",
                  "--align", "1"]  # hidden 32: an 8-channel hidden chunk is a quarter of the model
    # surgery needs whole tensors: sharding is refused in one line, before any training
    capsys.readouterr()
    assert main([*prune_args, "--fsdp", "--out", str(tmp_path / "sharded"), *FAST]) == 2
    assert "cannot run under FSDP" in _err(capsys)
    # --reconstruct is pruning-aware training's own flag (prune's name for the same switch)
    assert main(["train", str(tmp_path / "base"), "--reconstruct", "none", "--data", str(corpus), "--tokens", "64",
                 "--out", str(tmp_path / "plain"), *FAST]) == 2
    assert "only apply with --prune-aware" in _err(capsys)
    # with the original as a KD teacher, every surgery is reconstructed towards it (the default)
    rc = main([*prune_args, "--teacher", str(tmp_path / "base"), "--kd-alpha", "0.5", "--out", str(tmp_path / "small"),
               *FAST])
    assert rc == 0, capsys.readouterr().err
    ck = load_checkpoint(tmp_path / "small")
    assert abs(ck.spec.n_params - target) <= 0.02 * target
    assert ck.meta["prune_aware"]["target_params"] == target and ck.meta["prune_aware"]["reconstruct"] == "layerwise"
    log = [json.loads(line) for line in (tmp_path / "small" / "train_log.jsonl").read_text().splitlines()]
    cuts = [r["step"] for r in log if "pruned" in r]
    refits = ck.meta["reconstruction"]
    assert cuts and [r["step"] for r in refits] == cuts
    assert all(r["mode"] == "layerwise" and "seconds" in r for r in refits)
    done = [r for r in refits if "skipped" not in r]  # the hidden width is cut here too: fitted on its kept channels
    assert done == refits and all(r["down_proj_error"][1] <= r["down_proj_error"][0] for r in done)
    with torch.no_grad():
        assert torch.isfinite(ck.model(torch.tensor([[1, 2, 3]])).logits).all()


def test_training_states_its_plan_then_an_eta_and_logs_plain_progress_lines(tmp_path, corpus, small_spec_file,
                                                                            capsys, monkeypatch):
    """Into a log (stderr not a terminal): the plan before the first step, the measured rate and
    ETA after the first logged steps, and one plain progress line per step (interval 0), no \\r."""
    import re

    monkeypatch.setenv("EDGEPRUNE_PROGRESS_EVERY", "0")
    fast = [a for a in FAST if a != "--no-progress"]
    rc = main(["pretrain", "--arch", str(small_spec_file), "--data", str(corpus), "--tokens", "640",
               "--log-every", "2", "--out", str(tmp_path / "m"), *fast])
    assert rc == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    plan = [ln for ln in lines if "train plan:" in ln]
    assert len(plan) == 1 and re.search(r"train plan: 10 steps of 64 tokens \(640 tokens\) on cpu, a checkpoint", plan[0])
    eta = [ln for ln in lines if re.search(r"train: [\d,]+ tokens/s over the first steps: ETA \d+s for the 8 steps "
                                           r"left \(512 tokens\)", ln)]
    assert len(eta) == 1 and lines.index(eta[0]) > lines.index(plan[0])
    steps = [ln for ln in lines if re.match(r"train: \d+/10 step \(\d+%\), \d+s elapsed", ln)]
    assert len(steps) == 11 and all("ETA" in ln for ln in steps[1:-1])
