"""Run under torchrun by test_ddp.py: a few DDP steps on CPU (gloo), then each rank writes
its final weights' digest and loss log."""

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)

from edgeprune.model import build_model  # noqa: E402
from edgeprune.train import distributed as D  # noqa: E402
from edgeprune.train.incremental import weights_digest  # noqa: E402
from edgeprune.train.loop import Trainer  # noqa: E402
from tests.conftest import hetero_spec  # noqa: E402
from tests.train.helpers import pattern_data, small_cfg  # noqa: E402

out = Path(sys.argv[1])
env = D.setup("cpu")
# 4 steps of a global batch of 4 windows: 2 per rank (tokens count across ranks)
cfg = replace(small_cfg(4, micro_batch=4, ckpt_every=2), micro_batch=2)
trainer = Trainer(build_model(hetero_spec(), seed=0), pattern_data(), cfg, out / "work", env=env)
res = trainer.fit()
(out / f"rank{env.rank}.json").write_text(json.dumps({
    "digest": weights_digest(res.model), "world": env.world, "losses": [r["loss"] for r in res.history if "loss" in r],
    "sampler": trainer.sampler.state_dict()}))
D.teardown(env)
