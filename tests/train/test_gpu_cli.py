"""Every training verb from the command line on CUDA, a few steps each (no CLI path had
ever run on a GPU; `--device cuda` crashed in train/distributed.py). Skipped without CUDA;
benchmarks/gpu_check.sh runs them on a GPU machine."""

from __future__ import annotations

import json

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint
from edgeprune.cli import main
from tests.pipeline.conftest import save_tiny

pytestmark = pytest.mark.gpu

FAST = ["--seq-len", "64", "--micro-batch", "4", "--no-progress", "--eval-windows", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer

    t = tmp_path_factory.mktemp("gpu")
    d = embedded_tokenizer_dir()
    tok = load_tokenizer(d)
    save_tiny(t / "m", d, tok, [(4, 2, 128), (2, 1, 96), (4, 2, 64)], seed=0)
    lines = [f"the {w} sat on the mat and the {w} ran to the door number {i % 7}." for i, w in
             enumerate(["cat", "dog", "bird", "fox", "cow"] * 80)]
    (t / "text.txt").write_text("\n".join(lines) + "\n")
    return t


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


def _ok(rc, capsys):
    assert rc == 0, capsys.readouterr().err[-3000:]


def _cuda_log(path):
    records = [json.loads(x) for x in path.read_text().splitlines()]
    assert records and all(r.get("tokens_per_s", 1) > 0 for r in records)
    return records


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_train_with_teacher_on_cuda(files, tmp_path, capsys, device):
    out = tmp_path / "rec"
    _ok(main(["train", str(files / "m"), "--teacher", str(files / "m"), "--data", str(files / "text.txt"),
              "--tokens", "2048", "--out", str(out), "--device", device, "--compile", *FAST]), capsys)
    ck = load_checkpoint(out)
    assert ck.meta["device"] == "cuda:0" and ck.meta["train"]["kd_alpha"] == 1.0
    assert "kd" in _cuda_log(out / "train_log.jsonl")[-1]


def test_pretrain_on_cuda(files, tmp_path, capsys):
    spec = load_checkpoint(files / "m").spec
    (tmp_path / "spec.json").write_text(spec.to_json())
    _ok(main(["pretrain", "--arch", str(tmp_path / "spec.json"), "--data", str(files / "text.txt"),
              "--tokens", "2048", "--out", str(tmp_path / "pre"), "--device", "cuda", *FAST]), capsys)
    log = _cuda_log(tmp_path / "pre" / "train_log.jsonl")
    assert log[-1]["loss"] < log[0]["loss"]


def test_prune_aware_on_cuda(files, tmp_path, capsys):
    n0 = load_checkpoint(files / "m").spec.n_params
    _ok(main(["train", str(files / "m"), "--prune-aware", "--target-params", str(int(n0 * 0.85)), "--prune-events",
              "2", "--data", str(files / "text.txt"), "--tokens", "4096", "--out", str(tmp_path / "pa"),
              "--device", "cuda", "--teacher", str(files / "m"), "--kd-alpha", "0.5", "--compile", *FAST]), capsys)
    ck = load_checkpoint(tmp_path / "pa")
    assert ck.spec.n_params < n0
    # each surgery refitted towards the teacher, held in bf16 beside the float32 student
    refits = ck.meta["reconstruction"]
    cuts = [r["step"] for r in _cuda_log(tmp_path / "pa" / "train_log.jsonl") if "pruned" in r]
    assert cuts and [r["step"] for r in refits] == cuts and all("skipped" not in r for r in refits)
    assert all(r["down_proj_error"][1] <= r["down_proj_error"][0] for r in refits)


def test_prune_incremental_stages_on_cuda(files, tmp_path, capsys):
    _ok(main(["prune", str(files / "m"), "--method", "uniform", "--ratio", "0.05", "--data", str(files / "text.txt"),
              "--calib-samples", "2", "--calib-len", "32", "--align", "8", "--out", str(tmp_path / "inc"),
              "--incremental", "--stages", "2", "--tokens-per-stage", "1024", "--recover-tokens", "512",
              "--teacher", str(files / "m"), "--train-device", "cuda", "--compile", *FAST]), capsys)
    tr = load_checkpoint(tmp_path / "inc").meta["pruning"]["training"]
    assert tr["device"] == "cuda:0" and tr["total_tokens"] == 2 * 1024 + 512
    for run in ("stage-001", "stage-002", "recover"):
        _cuda_log(tmp_path / "inc.stages" / "train" / run / "train_log.jsonl")


@pytest.mark.parametrize("incremental", [False, True])
def test_ship_recovery_stage_on_cuda(files, tmp_path, incremental):
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import _prune, _recover, preflight

    r = Recipe(model=str(files / "m"), data=str(files / "text.txt"), incremental=incremental, stages=2,
               method="uniform", ratio=0.05, align=8, recover_tokens=4096, teacher_kd=True, seq_len=64, micro_batch=4,
               calib_samples=2, calib_len=32, train_device="cuda", out=str(tmp_path / "dist"))
    pruned, model_dir = tmp_path / "dist" / "work" / "pruned", tmp_path / "dist" / "model"
    p = _prune(r, preflight(r), files / "m", r.data, pruned, False)
    rec = _recover(r, files / "m", pruned, r.data, model_dir, False, p.get("stages"))
    assert rec["device"] == "cuda:0" and rec["tokens"] <= 4096
    assert load_checkpoint(model_dir).meta["recovery"]["device"] == "cuda:0"


def test_compare_from_scratch_on_cuda(files, tmp_path, capsys):
    out = tmp_path / "cmp"
    _ok(main(["compare", str(files / "m"), "--data", str(files / "text.txt"), "--device", "raspberry-pi-5",
              "--from-scratch", "4096", "--train-device", "cuda", "--eval-chars", "3000", "--seq-len", "64",
              "--out", str(out)]), capsys)
    groups = [m["group"] for m in json.loads((out / "compare.json").read_text())["models"]]
    assert groups == ["edgeprune", "from-scratch"]


def test_eval_on_cuda(files, capsys):
    _ok(main(["eval", str(files / "m"), "--data", str(files / "text.txt"), "--device", "cuda", "--seq-len", "64"]),
        capsys)
    assert "ppl" in capsys.readouterr().out


def test_cuda_resolves_with_an_index():
    from edgeprune.base.torch_device import resolve_device
    from edgeprune.train.distributed import setup

    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert setup("cuda").device == torch.device("cuda", 0)  # the crash once seen here


def test_teacher_runs_in_bf16_and_kd_step_learns_on_cuda(tmp_path):
    from edgeprune.shape.model import build_model
    from edgeprune.train.distributed import DistEnv
    from edgeprune.train.loop import Trainer
    from tests.conftest import hetero_spec
    from tests.train.helpers import pattern_data, small_cfg

    spec = hetero_spec()
    t = Trainer(build_model(spec, seed=0), pattern_data(), small_cfg(20, kd_alpha=1.0, kd_temp=1.0),
                tmp_path / "kd", env=DistEnv(device=torch.device("cuda", 0)), teacher=build_model(spec, seed=1))
    assert next(t.teacher.parameters()).dtype == torch.bfloat16
    res = t.fit()
    kd = [r["kd"] for r in res.history if "kd" in r]
    assert kd[-1] < kd[0]
