"""Incremental prune→train stages: targets per stage, train callback, resume after a SIGKILL."""

import json
import subprocess
import sys
import textwrap

import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.shape.model import build_model
from edgeprune.prune import IncrementalPruner
from tests.conftest import tiny_spec

CALIB = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(2))


def test_stages_shrink_step_by_step_and_call_train(tmp_path):
    seen = []

    def train(model, stage):
        seen.append((stage, model.spec.n_params))
        with torch.no_grad():  # a visible "training" effect that the next stage must carry on
            model.model.norm.weight.add_(0.01)
        return model

    model = build_model(tiny_spec(), 0)
    p0 = model.spec.n_params
    inc = IncrementalPruner(model, out_dir=tmp_path / "run", calib=CALIB, ratio=0.2, stage_fraction=0.05,
                            train_fn=train, align=8, progress=False, method="uniform")
    assert inc.stages == 4
    final = inc.run()
    assert [s for s, _ in seen] == [1, 2, 3, 4]
    sizes = [n for _, n in seen]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] < p0
    assert abs(final.spec.n_params - inc.target) / inc.target <= 0.02
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["done"] == 4 and state["final"].endswith("stage-004")
    last = load_checkpoint(tmp_path / "run" / "stage-004")
    assert last.spec == final.spec and last.meta["pruning"]["stage"] == 4
    torch.testing.assert_close(last.model.model.norm.weight, torch.full((64,), 1.04))


SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.prune import IncrementalPruner
    src, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calib = torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(2))
    def train(model, stage):
        with open(out + ".log", "a") as f:
            f.write(f"{stage}\\n")
        if stage == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill, mid-stage, after pruning
        with torch.no_grad():
            model.model.norm.weight.mul_(1.1)
        return model
    model = load_checkpoint(src).model
    IncrementalPruner(model, out_dir=out, calib=calib, ratio=0.3, stages=3, train_fn=train, align=8,
                      method="adapt", steps=2, progress=False).run()
""")


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    src = tmp_path / "src"
    save_checkpoint(build_model(tiny_spec(), 0), src)
    script = tmp_path / "inc.py"
    script.write_text(SCRIPT)

    def run(out, kill_at):
        return subprocess.run([sys.executable, str(script), str(src), str(out), str(kill_at)],
                              capture_output=True, text=True, timeout=300)

    killed = run(tmp_path / "a", 2)
    assert killed.returncode == -9, killed.stderr
    assert json.loads((tmp_path / "a" / "state.json").read_text())["done"] == 1
    assert not (tmp_path / "a" / "stage-002").exists()
    resumed = run(tmp_path / "a", 0)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "a.log").read_text().split() == ["1", "2", "2", "3"]  # stage 1 not redone
    # the same run, uninterrupted, in this process
    def train(model, stage):
        with torch.no_grad():
            model.model.norm.weight.mul_(1.1)
        return model
    b = IncrementalPruner(load_checkpoint(src).model, out_dir=tmp_path / "b", calib=CALIB, ratio=0.3, stages=3,
                          train_fn=train, align=8, method="adapt", steps=2, progress=False).run().model
    a = load_checkpoint(tmp_path / "a" / "stage-003").model
    assert a.spec == b.spec
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), n


def test_every_stage_hands_the_supplied_trainer_to_its_pruning(tmp_path):
    """The search in each stage distils its finalists with the callable given at construction, and
    the stage count is known before the pruner is built (stage_plan), so training can be sized."""
    from edgeprune.prune import PlainDistil, PruneRequest, stage_plan

    calls = []
    inner = PlainDistil(1e-3)

    def distil(student, teacher, batches, tokens):
        calls.append(tokens)
        return inner(student, teacher, batches, tokens)

    model = build_model(tiny_spec(), 0)
    req = PruneRequest(method="search", ratio=0.2, align=8, incremental=True,
                       options={"steps": 1, "finalists": 2, "refine": 0, "axes": "ffn", "batch_size": 2})
    _, n = stage_plan(model.spec, req, stages=2)
    inc = IncrementalPruner(model, req, out_dir=tmp_path / "run", calib=CALIB, stages=n, distil=distil,
                            progress=False)
    assert n == inc.stages == 2
    res = inc.run()
    finalists = sum(len(h["pruning"]["log"]["finalists"]) for h in res.log["stage_history"])
    assert len(calls) == finalists >= 2 and set(calls) == {2 * CALIB.shape[1]}  # one batch of 2 windows each
