"""The one place a `--device` string becomes a torch.device (every verb that runs a model).

    resolve_device(None)      -> cuda:LOCAL_RANK when CUDA is available, else cpu
    resolve_device("cuda")    -> cuda:LOCAL_RANK (cuda:0 outside torchrun): an index is always set,
                                 because torch.cuda.set_device and DDP's device_ids need one
    resolve_device("cuda:1")  -> cuda:1 (checked against the visible GPUs)
    resolve_device("cpu")     -> cpu

Anything a user can get wrong (`cuda` on a machine without CUDA, `cuda:3` with two GPUs, `tpu9`)
raises DeviceError: one line and exit 2 in the CLI, before any model is loaded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from edgeprune.base.errors import DeviceError

if TYPE_CHECKING:
    import torch

AUTO = ("", "auto")
KNOWN_TYPES = ("cpu", "cuda", "mps")
ENV_VAR = "EDGEPRUNE_DEVICE"  # default device when no --device is given (e.g. set once in a job script)


def local_rank() -> int:
    """This process's GPU index on its host under torchrun (0 otherwise)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def resolve_device(name: Optional[str] = None, rank: Optional[int] = None) -> torch.device:
    """A torch.device with an index for CUDA, or DeviceError naming the problem and the remedy.
    `name` None / "" / "auto": $EDGEPRUNE_DEVICE if set, else the local GPU if any, else cpu."""
    import torch

    rank = local_rank() if rank is None else rank
    text = (name if name is not None else os.environ.get(ENV_VAR, "")).strip().lower()
    if text in AUTO:
        return torch.device(f"cuda:{rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use cpu, cuda or cuda:N (a GPU index)") from None
    if dev.type not in KNOWN_TYPES:
        raise DeviceError(f"unsupported device {name!r}; use cpu, cuda or cuda:N (a GPU index)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch has no CUDA build" if torch.version.cuda is None else "no GPU is visible"
            raise DeviceError(f"--device {name}: CUDA is not available here ({why}); use --device cpu")
        index = rank if dev.index is None else dev.index
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(f"--device {name}: GPU index {index} does not exist ({count} visible: "
                              f"cuda:0..cuda:{count - 1})")
        return torch.device("cuda", index)
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {name}: MPS is not available here; use --device cpu")
    return dev
