"""The embedded teacher (the README's first command trains it) checkpoints while it trains: a run
interrupted after a checkpoint continues from that step and ends on exactly the weights of an
uninterrupted run; checkpoints of other settings are dropped, not an error."""

from __future__ import annotations

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.pipeline.embedded import EmbeddedRecipe, embedded_teacher
from edgeprune.train.loop import Trainer
from tests.train.conftest import _one_thread  # noqa: F401 - the train tests' single-thread fixture, autouse here too

RECIPE = EmbeddedRecipe(tokens=64 * 8 * 20)  # 20 optimizer steps of 8 windows of 64 tokens: 10 checkpoints




def test_interrupted_embedded_teacher_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "ref"))
    ref = load_checkpoint(embedded_teacher(RECIPE, progress=False)).model.state_dict()

    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cut"))
    real_save, real_resume = Trainer.save, Trainer.resume
    saved, resumed_at = [], []

    def save_then_die(self):
        path = real_save(self)
        saved.append(self.step)
        if len(saved) == 3:  # the kill lands after the third checkpoint
            raise KeyboardInterrupt
        return path

    def spy(self, path):
        real_resume(self, path)
        resumed_at.append(self.step)

    monkeypatch.setattr(Trainer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        embedded_teacher(RECIPE, progress=False)
    assert saved == [2, 4, 6]
    assert not list((tmp_path / "cut" / "embedded-teacher").glob("*/config.json"))  # nothing cached yet

    monkeypatch.setattr(Trainer, "save", real_save)
    monkeypatch.setattr(Trainer, "resume", spy)
    got = load_checkpoint(embedded_teacher(RECIPE, progress=False)).model.state_dict()
    assert resumed_at == [6]  # continued at step 6 of 20, not at step 0
    assert ref.keys() == got.keys() and all(ref[k].equal(got[k]) for k in ref)
    assert not list((tmp_path / "cut" / "embedded-teacher").glob(".work-*"))  # its checkpoints are cleaned up
