"""Block-wise healing (train/blockwise.py): after reconstruction, training each kept layer towards
the original's hidden states brings the model closer to the original on tokens it never saw, with
no LM head in the loop; its record carries tokens/s and per-layer errors."""

from __future__ import annotations

import copy

import torch

from edgeprune.prune import surgery
from edgeprune.prune.reconstruct import reconstruct, tag_sources
from edgeprune.shape.model import build_model
from edgeprune.train.blockwise import heal_blockwise
from tests.prune.test_reconstruct import CALIB, HELD, deep_spec, rel_error


def test_healing_after_reconstruction_gets_closer_to_the_original_on_held_out_tokens():
    teacher = build_model(deep_spec(), seed=0).eval()
    student = copy.deepcopy(teacher)
    tag_sources(student)
    surgery.remove_layers(student, [2, 3])
    for i in range(4):
        surgery.remove_mlp_channels(student, i, range(0, 128, 2))
    reconstruct(student, teacher, CALIB, progress=False)
    reconstructed = rel_error(student, teacher, HELD)
    head = student.lm_head.weight.detach().clone()
    rec = heal_blockwise(student, teacher, CALIB, epochs=4, lr=1e-3, progress=False)
    assert rel_error(student, teacher, HELD) < reconstructed
    assert torch.equal(student.lm_head.weight, head)  # the head is not in the loop
    assert rec["tokens"] == CALIB.numel() and rec["tokens_per_s"] > 0
    assert len(rec["layers"]) == 4 and all(r["error"][1] <= r["error"][0] for r in rec["layers"])
    assert any(r["error"][1] < r["error"][0] for r in rec["layers"])
