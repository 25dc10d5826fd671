"""ship's recovery stage writes training checkpoints and continues from them after a kill
; checkpoints of other settings are discarded, not an error."""

from __future__ import annotations

import pytest

from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.pipeline.ship import _train_resuming
from edgeprune.train.config import TrainConfig
from edgeprune.train.train_data import load_data
from edgeprune.train.loop import train


def test_recovery_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(world, tmp_path, monkeypatch):
    from edgeprune.train.loop import Trainer

    resumed_from = []
    real_resume = Trainer.resume

    def spy(self, path):
        resumed_from.append(path)
        return real_resume(self, path)

    monkeypatch.setattr(Trainer, "resume", spy)
    data = load_data(str(world["data"]), world["model"], progress=False)
    cfg = TrainConfig(tokens=64 * 4 * 8, seq_len=64, micro_batch=4, lr=1e-3, eval_every=0, ckpt_every=2,
                      progress=False)
    ref = train(load_checkpoint(world["model"]).model, data, cfg, tmp_path / "ref")

    def die_at_5(trainer):
        if trainer.step == 5:
            raise KeyboardInterrupt  # a kill after the step-4 checkpoint

    work = tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):
        train(load_checkpoint(world["model"]).model, data, cfg, work, on_step=die_at_5)
    res = _train_resuming(load_checkpoint(world["model"]).model, data, cfg, work, None)
    assert resumed_from == [work]  # continued from step 4, not from token 0
    steps_seen = sorted(p.name for p in work.glob("step-*"))
    assert res.steps == ref.steps == 8 and steps_seen[-1] == "step-00000008"
    a, b = ref.model.state_dict(), res.model.state_dict()
    assert all(a[k].equal(b[k]) for k in a)  # exactly the uninterrupted result
    # the recipe changed (another lr): its old checkpoints cannot be resumed and are dropped
    cfg2 = TrainConfig(tokens=64 * 4 * 4, seq_len=64, micro_batch=4, lr=5e-4, eval_every=0, ckpt_every=2,
                       progress=False)
    res2 = _train_resuming(load_checkpoint(world["model"]).model, data, cfg2, work, None)
    assert res2.steps == 4


def test_only_a_resume_mismatch_discards_the_recovery_checkpoints(tmp_path, monkeypatch):
    """The seam by type: ResumeMismatch -> start over in an emptied folder; any other TrainError
    propagates and leaves the folder alone."""
    import edgeprune.train.loop as loop
    from edgeprune.base.errors import ResumeMismatch, TrainError

    work = tmp_path / "work"
    work.mkdir()
    (work / "latest").write_text("step-00000002\n")
    calls = []

    def fake_train(model, data, cfg, work_dir, teacher=None, resume=None, env=None, on_step=None):
        calls.append((resume, sorted(p.name for p in work_dir.iterdir()) if work_dir.exists() else None))
        if resume == "auto":
            raise ResumeMismatch("resume directory was written by another run (different config)")
        return "trained"

    monkeypatch.setattr(loop, "train", fake_train)
    assert _train_resuming(None, None, None, work, None) == "trained"
    assert calls == [("auto", ["latest"]), (None, None)]  # the second run starts from an empty folder

    def failing_train(*a, **k):
        raise TrainError("resume directory 'x' does not exist")

    work.mkdir()
    (work / "latest").write_text("step-00000002\n")
    monkeypatch.setattr(loop, "train", failing_train)
    with pytest.raises(TrainError, match="does not exist"):
        _train_resuming(None, None, None, work, None)
    assert (work / "latest").is_file()
