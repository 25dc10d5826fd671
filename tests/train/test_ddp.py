"""torchrun --nproc_per_node 2 on CPU (gloo): ranks see distinct windows, end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from edgeprune.model import build_model
from edgeprune.train.loop import train
from tests.conftest import hetero_spec
from tests.train.helpers import pattern_data, small_cfg

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_torchrun_two_ranks_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(WORKER), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["digest"] == r1["digest"]  # DDP kept the replicas identical
    assert r0["sampler"] == r1["sampler"]  # one global stream, each rank its own slice
    # the two ranks' micro-batches of 2 together are the single-process batch of 4: the logged
    # global loss matches a one-process run over the same windows
    single = train(build_model(hetero_spec(), seed=0), pattern_data(), small_cfg(4, micro_batch=4), tmp_path / "one")
    assert len(r0["losses"]) == 4
    assert r0["losses"] == pytest.approx([r["loss"] for r in single.history], abs=1e-4)
    assert (tmp_path / "work" / "latest").read_text().strip() == "step-00000004"  # rank 0 checkpointed
