"""FSDP2 (`fully_shard`) under torchrun: shard each decoder layer and the root, and move whole
tensors in and out of the sharded model, so a run under FSDP keeps the one checkpoint format
(name-keyed full tensors, state.py): it resumes under DDP or on one process and the other way round.

Gathering is collective: every rank calls these functions; with `cpu_offload` only rank 0 ends
up holding the full tensors (on CPU), which is what a checkpoint write needs.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from edgeprune.files.checkpoint import load_weights, tensors_for_save
from edgeprune.shape.model import EdgeLM
from edgeprune.train.state import fields_by_param, group_hyper


def shard(model: EdgeLM) -> EdgeLM:
    """Shard in place: one FSDP unit per decoder layer (its all-gather overlaps the previous
    layer's compute), the root unit holding embeddings, final norm and (tied) head. Parameter
    names do not change, so optimizer state and checkpoints stay keyed as without FSDP."""
    from torch.distributed.fsdp import fully_shard

    # each layer also returns its (k, v) for the KV cache, views that nothing modifies in place:
    # FSDP2's warning about in-place ops on returned views does not apply
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def _full(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model_state(model: EdgeLM, everywhere: bool = False) -> dict[str, torch.Tensor]:
    """Whole weights (tied head dropped, as saved checkpoints hold them): on rank 0 only (CPU)
    unless `everywhere`, then on every rank (on the model's device)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full(cpu_offload=not everywhere))
    return tensors_for_save(state, model.spec) if state else {}


def full_optimizer_state(model: EdgeLM, optimizer: torch.optim.Optimizer
                         ) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """("<param name>/<field>" -> whole tensor on rank 0, param-group hyper-parameters)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    osd = get_optimizer_state_dict(model, optimizer, options=_full(cpu_offload=True))
    tensors = {f"{name}/{k}": v.detach().cpu().contiguous()
               for name, fields in osd.get("state", {}).items() for k, v in fields.items() if torch.is_tensor(v)}
    return tensors, group_hyper(optimizer)


def load_optimizer_state(model: EdgeLM, optimizer: torch.optim.Optimizer, names: list[str],
                         tensors: dict[str, torch.Tensor]) -> None:
    """Put whole-tensor moments ("<name>/<field>", read by every rank from the checkpoint) into
    the sharded optimizer: each rank keeps its own shard of each."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    groups, i = [], 0
    for g, hyper in zip(optimizer.param_groups, group_hyper(optimizer)):  # its params, in order, are `names`
        groups.append({**hyper, "params": names[i:i + len(g["params"])]})
        i += len(g["params"])
    set_optimizer_state_dict(model, optimizer, {"state": fields_by_param(tensors), "param_groups": groups},
                             options=_full())


def plain_copy(model: EdgeLM, device: torch.device) -> EdgeLM:
    """An ordinary (unsharded) EdgeLM with the sharded model's weights, on every rank: what a
    finished run returns, so saving / evaluating / exporting it needs no process group."""
    state = full_model_state(model, everywhere=True)
    plain = EdgeLM(model.spec).to(device=device, dtype=next(iter(state.values())).dtype)
    load_weights(plain, state, where="FSDP-gathered weights")
    return plain.train(model.training)
