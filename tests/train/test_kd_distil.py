"""Train's KD step as prune's distillation callable: the loss it records is the Trainer's own loss on
the same windows, it trains at recovery's settings, and the search ranks its finalists through it."""

import copy

import pytest
import torch

from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec
from edgeprune.train.kd_distil import TrainKD, kd_config
from edgeprune.train.loop import Trainer
from edgeprune.train.losses import kd_loss
from tests.train.helpers import pattern_data

SPEC = ArchSpec.uniform(family="llama", vocab_size=256, hidden_size=64, n_layers=4, n_heads=4, n_kv_heads=2,
                        ffn_dim=96, head_dim=16, max_position_embeddings=128)
CALIB = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(1))


def test_its_loss_is_the_trainers_kd_loss_on_the_same_batch(tmp_path):
    teacher = build_model(SPEC, seed=0).eval()
    student = build_model(SPEC, seed=5)
    cfg = kd_config(micro_batch=4, seq_len=CALIB.shape[1] - 1, progress=False, eval_every=0, ckpt_every=0)
    assert (cfg.kd_alpha, cfg.kd_temp, cfg.lr) == (1.0, 1.0, 3e-4)  # recovery's logit-only KD (recover-kd)
    batch = CALIB[:4]
    # the Trainer's step loss on these windows, from the same starting weights
    trainer = Trainer(copy.deepcopy(student), pattern_data(), cfg, tmp_path / "t", teacher=copy.deepcopy(teacher))
    trained_loss = float(trainer.forward_backward(batch)["loss"])
    with torch.no_grad():
        reference = float(kd_loss(student(batch[:, :-1]).logits, teacher(batch[:, :-1]).logits, 1.0))
    record = TrainKD(cfg)(student, teacher, [batch, CALIB[4:]], 2 * batch.numel())
    assert len(record) == 2  # one optimizer step per batch until the budget is read
    assert record[0] == pytest.approx(trained_loss, rel=1e-5) == pytest.approx(reference, rel=1e-5)
    assert record[1] != record[0]  # the first step changed the student


def test_alpha_and_temperature_come_from_the_config():
    from edgeprune.train.losses import mixed_loss

    teacher = build_model(SPEC, seed=0).eval()
    student = build_model(SPEC, seed=5)
    batch = CALIB[:4]
    with torch.no_grad():
        x, y = batch[:, :-1], batch[:, 1:]
        mixed = float(mixed_loss(student(x).logits, y, teacher(x).logits, 0.5, 2.0)[0])
        kd_only = float(kd_loss(student(x).logits, teacher(x).logits, 1.0))
    record = TrainKD(kd_config(kd_alpha=0.5, kd_temp=2.0))(student, teacher, [batch], batch.numel())
    assert record == [pytest.approx(mixed, rel=1e-5)] and mixed != pytest.approx(kd_only, rel=1e-3)


def test_the_search_through_train_kd_ranks_by_what_it_trained():
    from edgeprune.prune import prune_model

    kd = TrainKD()
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False,
                      axes="depth,ffn", ratio=0.3, steps=2, finalists=2, refine=0, distil=kd)
    assert res.log["distill"]["kind"] == "train-kd" and res.log["distill"]["kd_alpha"] == 1.0
    for r in res.log["finalists"]:
        assert len(r["distill_losses"]) == 2 and all(x >= 0 for x in r["distill_losses"])
