"""Every verb that trains or evaluates takes a torch device; an unknown one (`tpu9`), or `cuda`
on a machine without CUDA, is one line on stderr and exit 2, before any model is loaded or any
file written."""

from __future__ import annotations

import pytest
import torch

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.cli import main
from edgeprune.data.tokens import embedded_tokenizer_dir
from edgeprune.shape.model import build_model
from tests.conftest import tiny_spec


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEPRUNE_DEVICE", raising=False)
    save_checkpoint(build_model(tiny_spec(vocab=4096), 0), tmp_path / "m", tokenizer_dir=embedded_tokenizer_dir())
    (tmp_path / "text.txt").write_text("the cat sat on the mat. " * 200)
    return tmp_path


def _argv(verb: str, t, device: str) -> list[str]:
    m, d, out = str(t / "m"), str(t / "text.txt"), str(t / "out")
    return {
        "train": ["train", m, "--data", d, "--tokens", "64", "--out", out, "--device", device],
        "train-prune-aware": ["train", m, "--prune-aware", "--target-params", "20k", "--data", d, "--tokens", "64",
                              "--out", out, "--device", device],
        "pretrain": ["pretrain", "--arch", "tiny", "--data", d, "--tokens", "64", "--out", out, "--device", device],
        "eval": ["eval", m, "--data", d, "--device", device],
        "prune": ["prune", m, "--ratio", "0.2", "--data", d, "--out", out, "--incremental", "--stages", "2",
                  "--tokens-per-stage", "64", "--train-device", device],
        "compare": ["compare", m, "--data", d, "--from-scratch", "64", "--out", out, "--train-device", device],
        "ship": ["ship", m, "--data", d, "--out", out, "--train-device", device],
    }[verb]


VERBS = ("train", "train-prune-aware", "pretrain", "eval", "prune", "compare", "ship")


@pytest.mark.parametrize("verb", VERBS)
def test_unknown_device_is_one_line_exit_2(files, capsys, verb):
    assert main(_argv(verb, files, "tpu9")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown device 'tpu9'" in err, err
    assert not (files / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
@pytest.mark.parametrize("verb", VERBS)
def test_cuda_without_cuda_is_one_line_exit_2(files, capsys, verb):
    assert main(_argv(verb, files, "cuda")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err, err
    assert not (files / "out").exists()
