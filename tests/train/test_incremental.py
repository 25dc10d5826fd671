"""Incremental prune -> train (Adapt-Pruner stages) with the real training callback, and a crash
in the middle of a stage's training that a re-run resumes."""

from __future__ import annotations

import logging

import pytest
import torch

from edgeprune.shape.model import build_model
from edgeprune.prune import IncrementalPruner
from edgeprune.prune.request import PruneRequest
from edgeprune.base.errors import TrainError
from edgeprune.train.distributed import DistEnv
from edgeprune.pipeline.stage_training import StageBudget, build_incremental, make_train_callback
from edgeprune.train.schedule import lr_at
from tests.conftest import tiny_spec
from tests.train.helpers import pattern_data, small_cfg


class Crash(Exception):
    pass


def _pruner(out, train_fn, spec):
    calib = torch.randint(0, spec.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0))
    return IncrementalPruner(build_model(spec, seed=0), out_dir=out, calib=calib, ratio=0.2, method="uniform",
                             stages=2, train_fn=train_fn, progress=False)


def _final(out, train_fn, spec):
    return _pruner(out, train_fn, spec).run().model


def test_incremental_stages_train_and_resume_after_a_crash(tmp_path, caplog):
    spec, data = tiny_spec(), pattern_data()
    cfg = small_cfg(1, ckpt_every=2)
    tokens = 6 * cfg.seq_len * cfg.micro_batch  # 6 steps per stage

    ref = _pruner(tmp_path / "ref", make_train_callback(data, tokens, cfg, work_root=tmp_path / "ref" / "train",
                                                         stages=2), spec).run().model

    def crash_in_stage_2(trainer):
        if trainer.work_dir.name == "stage-002" and trainer.step == 5:
            raise Crash()

    out = tmp_path / "run"
    with pytest.raises(Crash):
        _pruner(out, make_train_callback(data, tokens, cfg, work_root=out / "train", on_step=crash_in_stage_2,
                                         stages=2), spec).run()
    assert (out / "stage-001").is_dir() and not (out / "stage-002").exists()
    assert (out / "train" / "stage-002" / "latest").read_text().strip() == "step-00000004"
    caplog.set_level(logging.INFO, logger="edgeprune.train.loop")
    final = _final(out, make_train_callback(data, tokens, cfg, work_root=out / "train", stages=2), spec)
    assert "stage-002/step-00000004 at step 4/6" in caplog.text
    # stage 2 continued from its step-4 checkpoint (same pruned start) and ends where the
    # uninterrupted run ended
    assert not (out / "train" / "stage-002.stale").exists()
    assert final.spec == ref.spec and final.spec.n_params < 0.85 * spec.n_params
    for (n, a), (_, b) in zip(ref.named_parameters(), final.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=n)


def test_one_schedule_spans_all_stages_and_the_final_recovery(tmp_path):
    """Warmup once, WSD decay at the end: the lr at stage k's first step continues stage k-1's
    curve; stages get the configured device and teacher."""
    spec, data = tiny_spec(), pattern_data()
    cfg = small_cfg(1, schedule="wsd", warmup_frac=0.25, decay_frac=0.25, lr=1e-2, min_lr_ratio=0.1,
                    kd_alpha=1.0, kd_temp=1.0)
    seen = []  # (run dir, step within the run, lr it used, device, has teacher)

    def record(trainer):
        seen.append((trainer.work_dir.name, trainer.step - 1, trainer.history[-1]["lr"], trainer.env.device,
                     trainer.teacher is not None))

    teacher = build_model(spec, seed=5)
    calib = torch.randint(0, spec.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0))
    pruner, training = build_incremental(
        build_model(spec, seed=0), PruneRequest(method="uniform", ratio=0.2), out_dir=tmp_path / "run", calib=calib,
        stages=3, seed=0, progress=False, data=data, cfg=cfg,
        tokens_per_stage=4 * cfg.seq_len * cfg.micro_batch, recover_tokens=4 * cfg.seq_len * cfg.micro_batch,
        teacher=teacher, env=DistEnv(device=torch.device("cpu")))
    training.on_step = record
    model = pruner.run().model
    training.recover(model)
    assert training.budget.total_steps == 16
    assert [d for d, *_ in seen] == ["stage-001"] * 4 + ["stage-002"] * 4 + ["stage-003"] * 4 + ["recover"] * 4
    lrs = [lr for _, _, lr, _, _ in seen]
    expected = [lr_at(k, 16, 1e-2, "wsd", 0.25, 0.25, 0.1) for k in range(16)]
    assert lrs == pytest.approx(expected)
    # warmup only in stage 1; stage 2 and 3 start at the peak where the previous stage ended;
    # the decay is in the final recovery
    assert lrs[0] < lrs[3] < lrs[4] == pytest.approx(1e-2)
    assert all(x == pytest.approx(1e-2) for x in lrs[4:12]) and lrs[15] < lrs[12] < 1e-2
    assert lrs[15] == pytest.approx(1e-3)
    assert all(dev == torch.device("cpu") and has_teacher for *_, dev, has_teacher in seen)


def test_ship_budget_never_exceeds_the_total():
    for stages, total in ((13, 200_000), (5, 50_000), (1, 4096)):
        b = StageBudget.split_total(stages, total, tokens_per_step=2048)
        assert b.total_tokens <= total and b.stages == stages and b.stage_steps >= 1 and b.recover_steps >= 1
        assert b.total_tokens > total - 2048  # whole steps: less than one step's tokens left unused
    with pytest.raises(TrainError, match="too few"):
        StageBudget.split_total(13, 20_000, tokens_per_step=2048)


def test_a_stage_of_another_run_is_set_aside_and_only_that(tmp_path, monkeypatch):
    """StageTraining's resume seam, by type: a ResumeMismatch moves the stage's folder aside as
    `.stale` and trains from the start; any other TrainError propagates."""
    import edgeprune.pipeline.stage_training as st
    from edgeprune.base.errors import ResumeMismatch
    from edgeprune.pipeline.stage_training import StageTraining

    runs = []

    class FakeTrainer:
        error: Exception = ResumeMismatch("resume directory was written by another run (different extra)")

        def __init__(self, model, data, cfg, work, **kw):
            self.work = work

        def fit(self, resume):
            runs.append(resume)
            if resume == "auto":
                raise FakeTrainer.error
            return "result"

    monkeypatch.setattr(st, "Trainer", FakeTrainer)
    cfg = small_cfg(1)
    per_step = cfg.seq_len * cfg.micro_batch
    training = StageTraining(pattern_data(), cfg, StageBudget.per_stage(1, per_step, 0, per_step),
                             work_root=tmp_path)
    work = tmp_path / "stage-001"
    work.mkdir()
    model = build_model(tiny_spec(), seed=0)
    assert training._run(model, work, 1, training.span(1), {}) == "result"
    assert runs == ["auto", None] and (tmp_path / "stage-001.stale").is_dir()

    FakeTrainer.error = TrainError("training checkpoint x is unreadable")
    with pytest.raises(TrainError, match="unreadable"):
        training._run(model, work, 1, training.span(1), {})
