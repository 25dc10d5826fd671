"""Run under torchrun by test_ddp.py: a few DDP (or FSDP, with --fsdp) steps on CPU (gloo),
optionally resuming a checkpoint (--resume DIR); each rank writes its final weights' digest,
its loss log and its sampler position."""

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)

from edgeprune.shape.model import build_model  # noqa: E402
from edgeprune.train import distributed as D  # noqa: E402
from edgeprune.base.hashing import state_dict_digest  # noqa: E402
from edgeprune.train.loop import Trainer  # noqa: E402
from tests.conftest import hetero_spec  # noqa: E402
from tests.train.helpers import pattern_data, small_cfg  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("out", type=Path)
ap.add_argument("--fsdp", action="store_true")
ap.add_argument("--resume", default=None)
ap.add_argument("--accum", type=int, default=1, help="split each rank's 2 windows into this many micro-batches")
ap.add_argument("--ac", action="store_true", help="activation checkpointing")
args = ap.parse_args()
env = D.setup("cpu")
# 4 steps of a global batch of 4 windows: 2 per rank (tokens count across ranks)
cfg = replace(small_cfg(4, micro_batch=4, ckpt_every=2), micro_batch=2 // args.accum, grad_accum=args.accum,
              fsdp=args.fsdp, activation_checkpointing=args.ac)
trainer = Trainer(build_model(hetero_spec(), seed=0), pattern_data(), cfg, args.out / "work", env=env)
res = trainer.fit(resume=args.resume)
(args.out / f"rank{env.rank}.json").write_text(json.dumps({
    "digest": state_dict_digest(res.model.state_dict()), "world": env.world, "type": type(res.model).__name__,
    "losses": {r["step"]: r["loss"] for r in res.history if "loss" in r},
    "sampler": trainer.sampler.state_dict()}))
D.teardown(env)
