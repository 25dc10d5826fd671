"""`prune --incremental --tokens-per-stage` and `ship --incremental` through the one stage-training
wiring (pipeline/stage_training.py): configured device, teacher and schedule reach every stage, and
ship spends its --recover-tokens budget, not a multiple of it."""

from __future__ import annotations

import json

import pytest

from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.cli import main
from tests.pipeline.conftest import save_tiny

FAST = ["--seq-len", "16", "--micro-batch", "2", "--no-progress", "--eval-windows", "2", "--log-every", "1"]


@pytest.fixture
def model(tmp_path, monkeypatch):
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer

    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    d = embedded_tokenizer_dir()
    save_tiny(tmp_path / "m", d, load_tokenizer(d), [(4, 2, 128)] * 3, seed=0)
    lines = [f"the {w} sat on the mat and the {w} ran to the door number {i % 7}." for i, w in
             enumerate(["cat", "dog", "bird", "fox", "cow"] * 60)]
    (tmp_path / "text.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def _log(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_prune_incremental_trains_stages_with_teacher_device_and_one_schedule(model, capsys):
    t = model
    rc = main(["prune", str(t / "m"), "--method", "uniform", "--ratio", "0.2", "--data", str(t / "text.txt"),
               "--calib-samples", "2", "--calib-len", "16", "--align", "8", "--out", str(t / "out"),
               "--incremental", "--stages", "2", "--tokens-per-stage", "128", "--recover-tokens", "64",
               "--teacher", str(t / "m"), "--train-device", "cpu", "--warmup-frac", "0.25", *FAST, "--json"])
    assert rc == 0, capsys.readouterr().err
    summary = load_checkpoint(t / "out").meta["pruning"]
    tr = summary["training"]
    assert tr["device"] == "cpu" and tr["teacher"] == str(t / "m")
    assert tr["stage_steps"] == 4 and tr["recover_steps"] == 2 and tr["total_tokens"] == 2 * 128 + 64
    cfg = tr["config"]
    # with a teacher the default recipe is logit-only distillation on a WSD schedule
    assert cfg["kd_alpha"] == 1.0 and cfg["schedule"] == "wsd" and cfg["seq_len"] == 16
    runs = ["stage-001", "stage-002", "recover"]
    logs = [_log(t / "out.stages" / "train" / r / "train_log.jsonl") for r in runs]
    assert [len(x) for x in logs] == [4, 4, 2] and all("kd" in rec for x in logs for rec in x)
    lrs = [rec["lr"] for x in logs for rec in x]
    from edgeprune.train.schedule import lr_at

    peak = cfg["lr"]
    assert lrs == pytest.approx([lr_at(k, 10, peak, "wsd", 0.25, cfg["decay_frac"], cfg["min_lr_ratio"])
                                 for k in range(10)], rel=1e-5)


def test_ship_incremental_spends_its_recover_tokens(model, tmp_path):
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import _prune, _recover, preflight

    t = model
    budget = 1000
    r = Recipe(model=str(t / "m"), data=str(t / "text.txt"), incremental=True, stages=3, method="uniform",
               ratio=0.2, align=8, recover_tokens=budget, teacher_kd=True, seq_len=16, micro_batch=2,
               calib_samples=2, calib_len=16, train_device="cpu", out=str(tmp_path / "dist"))
    pruned, model_dir = tmp_path / "dist" / "work" / "pruned", tmp_path / "dist" / "model"
    p = _prune(r, preflight(r), t / "m", r.data, pruned, False)
    rec = _recover(r, t / "m", pruned, r.data, model_dir, False, p["stages"])
    train_root = tmp_path / "dist" / "work" / "stages" / "train"
    spent = sum(_log(d / "train_log.jsonl")[-1]["tokens"] for d in sorted(train_root.iterdir()))
    assert spent == rec["tokens"] == p["budget"]["total_tokens"]
    assert budget - 32 < spent <= budget  # whole steps of 32 tokens, never more than the budget
    assert rec["device"] == "cpu" and load_checkpoint(model_dir).meta["recovery"]["kd"]
