"""Incremental prune -> train (Adapt-Pruner stages) with the real training callback, and a crash
in the middle of a stage's training that a re-run resumes."""

from __future__ import annotations

import logging

import pytest
import torch

from edgeprune.model import build_model
from edgeprune.prune import IncrementalPruner
from edgeprune.train.incremental import make_train_callback
from tests.conftest import tiny_spec
from tests.train.helpers import pattern_data, small_cfg


class Crash(Exception):
    pass


def _pruner(out, train_fn, spec):
    calib = torch.randint(0, spec.vocab_size, (4, 32), generator=torch.Generator().manual_seed(0))
    return IncrementalPruner(build_model(spec, seed=0), out_dir=out, calib=calib, ratio=0.2, method="uniform",
                             stages=2, train_fn=train_fn, progress=False)


def test_incremental_stages_train_and_resume_after_a_crash(tmp_path, caplog):
    spec, data = tiny_spec(), pattern_data()
    cfg = small_cfg(1, ckpt_every=2)
    tokens = 6 * cfg.seq_len * cfg.micro_batch  # 6 steps per stage

    ref = _pruner(tmp_path / "ref", make_train_callback(data, tokens, cfg, work_root=tmp_path / "ref" / "train"),
                  spec).run()

    def crash_in_stage_2(trainer):
        if trainer.work_dir.name == "stage-002" and trainer.step == 5:
            raise Crash()

    out = tmp_path / "run"
    with pytest.raises(Crash):
        _pruner(out, make_train_callback(data, tokens, cfg, work_root=out / "train", on_step=crash_in_stage_2),
                spec).run()
    assert (out / "stage-001").is_dir() and not (out / "stage-002").exists()
    assert (out / "train" / "stage-002" / "latest").read_text().strip() == "step-00000004"
    caplog.set_level(logging.INFO, logger="edgeprune.train.loop")
    final = _pruner(out, make_train_callback(data, tokens, cfg, work_root=out / "train"), spec).run()
    assert "stage-002/step-00000004 at step 4/6" in caplog.text
    # stage 2 continued from its step-4 checkpoint (same pruned start) and ends where the
    # uninterrupted run ended
    assert not (out / "train" / "stage-002.stale").exists()
    assert final.spec == ref.spec and final.spec.n_params < 0.85 * spec.n_params
    for (n, a), (_, b) in zip(ref.named_parameters(), final.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=n)
