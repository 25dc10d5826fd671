"""`--device` resolution (edgeprune.base.torch_device) without a GPU: CUDA is faked where a test needs
it to exist, so `cuda` -> `cuda:0` / the LOCAL_RANK GPU is checked on any machine, and the
`torch.cuda.set_device(torch.device("cuda"))` crash once seen here cannot come back."""

from __future__ import annotations

import pytest
import torch

from edgeprune.base.errors import DeviceError
from edgeprune.base.torch_device import resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("EDGEPRUNE_DEVICE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch believes two GPUs exist; set_device records what it was given."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(d))
    monkeypatch.delenv("EDGEPRUNE_DEVICE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return calls


def test_default_is_cpu_without_cuda(no_cuda):
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")


def test_cuda_gets_an_index(two_gpus, monkeypatch):
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device(None) == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")  # under torchrun, `cuda` is this rank's GPU
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is honoured


def test_env_var_is_the_default(two_gpus, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_DEVICE", "cuda:1")
    assert resolve_device(None) == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


def test_setup_passes_an_indexed_device_to_set_device(two_gpus):
    """The issue-13 crash: setup gave set_device a device without an index."""
    from edgeprune.train.distributed import setup

    env = setup("cuda")
    assert env.device == torch.device("cuda", 0) and two_gpus == [torch.device("cuda", 0)]
    assert not env.distributed


@pytest.mark.parametrize("name, message", [
    ("tpu9", "unknown device 'tpu9'"),
    ("cuda", "CUDA is not available"),
    ("cuda:0", "CUDA is not available"),
    ("meta", "unsupported device"),
])
def test_bad_devices_are_device_errors(no_cuda, name, message):
    with pytest.raises(DeviceError, match=message):
        resolve_device(name)


def test_missing_gpu_index_is_an_error(two_gpus):
    with pytest.raises(DeviceError, match="index 5 does not exist"):
        resolve_device("cuda:5")
