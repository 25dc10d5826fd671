"""Fault-tolerant training checkpoints: no pickles, atomic, exact resume.

A work directory holds `step-NNNNNNNN/` directories and a `latest` file naming the newest.
Each step directory is written through `atomic_dir` (temporary sibling + rename) and `latest`
through `atomic_write_text` after it, so a SIGKILL at any moment leaves either the previous
complete checkpoint or the new one, never a half-written one that `latest` points at.

A step directory holds
- `model.safetensors`: the weights (tied head stored once, as in HF checkpoints);
- `optimizer.safetensors`: AdamW `exp_avg`, `exp_avg_sq`, `step` keyed `<param name>/<field>`
  (names, not positions: the state survives pruning surgery and re-wrapping);
- `extra.safetensors`: RNG states (torch CPU / CUDA) and pruning-aware saliency EMAs;
- `state.json`: step, tokens seen, sampler position, current spec, run fingerprint, config,
  Python / NumPy RNG states, and the optimizer hyper-parameters.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from edgeprune.base.atomic_io import atomic_dir, atomic_write_text
from edgeprune.files.checkpoint import state_dict_for_save
from edgeprune.base.errors import ResumeMismatch, TrainError
from edgeprune.shape.model import EdgeLM

log = logging.getLogger(__name__)

LATEST = "latest"
STATE_FORMAT = 1


@dataclass
class TrainState:
    """Everything a resumed run needs besides the tensors."""

    step: int  # optimizer steps completed
    tokens_seen: int  # training tokens consumed (all ranks)
    sampler: dict[str, int]  # WindowSampler.state_dict()
    spec: dict[str, Any]  # current ArchSpec (pruning-aware runs change it)
    fingerprint: str  # identity of the run (spec at start, data, config, teacher)
    fingerprint_parts: dict[str, str]  # the same, per component (to say what differs)
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict() for humans
    extra: dict[str, Any] = field(default_factory=dict)  # mode-specific JSON (prune-aware events ...)


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def save_train_checkpoint(work_dir: Path, state: TrainState, model_state: dict[str, torch.Tensor],
                          optimizer_tensors: dict[str, torch.Tensor], optimizer_hyper: list[dict[str, Any]],
                          extra_tensors: Optional[dict[str, torch.Tensor]] = None, keep: int = 2) -> Path:
    """Write one step directory atomically, point `latest` at it, prune old ones. The tensors
    are whole (CPU) ones: `plain_snapshot` here, or train/sharded.py's gather under FSDP."""
    from safetensors.torch import save_file

    work_dir = Path(work_dir)
    target = work_dir / step_dir_name(state.step)
    tensors = dict(extra_tensors or {})
    tensors.update(_rng_tensors())
    payload = {"format": STATE_FORMAT, "step": state.step, "tokens_seen": state.tokens_seen,
               "sampler": state.sampler, "spec": state.spec, "fingerprint": state.fingerprint,
               "fingerprint_parts": state.fingerprint_parts, "config": state.config,
               "extra": state.extra, "optimizer": optimizer_hyper, "rng": _rng_json()}
    with atomic_dir(target) as tmp:
        save_file(model_state, str(tmp / "model.safetensors"))
        save_file(optimizer_tensors, str(tmp / "optimizer.safetensors"))
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                  str(tmp / "extra.safetensors"))
        (tmp / "state.json").write_text(json.dumps(payload, indent=1))
    atomic_write_text(work_dir / LATEST, target.name + "\n")
    old = sorted(p for p in work_dir.glob("step-*") if p.is_dir() and p.name != target.name)
    for p in old[:max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return target


def plain_snapshot(model: EdgeLM, optimizer: torch.optim.Optimizer, param_names: dict[torch.nn.Parameter, str]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]]]:
    """(weights, "<param name>/<field>" optimizer tensors, param-group hyper-parameters) of an
    unsharded model, as CPU copies."""
    tensors: dict[str, torch.Tensor] = {}
    for p, st in optimizer.state.items():
        name = param_names[p]
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"{name}/{key}"] = value.detach().to("cpu").contiguous().clone()
    return state_dict_for_save(model), tensors, group_hyper(optimizer)


def group_hyper(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each param group's hyper-parameters (lr, betas, decay ...), without its params."""
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


def fields_by_param(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """"<param name>/<field>" -> tensor, regrouped as param name -> {field: tensor}."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        name, field_ = key.split("/", 1)
        out.setdefault(name, {})[field_] = t
    return out


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"rng/torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda{i}"] = s
    return out


def _rng_json() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def resolve_resume_dir(path: Path) -> Path:
    """A work directory (its `latest`) or one step directory -> the step directory."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    latest = path / LATEST
    if latest.is_file():
        step = path / latest.read_text().strip()
        if (step / "state.json").is_file():
            return step
    if not path.exists():
        raise TrainError(f"resume directory {str(path)!r} does not exist")
    steps = sorted(p for p in path.glob("step-*") if (p / "state.json").is_file())
    if steps:  # killed between writing a step and naming it `latest`, or `latest` deleted by hand
        raise TrainError(f"{path} holds step checkpoints ({', '.join(p.name for p in steps[-3:])}) but no "
                         f"'{LATEST}' file naming the newest; to continue from it pass --resume {steps[-1]}")
    raise TrainError(f"{path} holds no training checkpoint (no state.json, no '{LATEST}' file); "
                     f"pass the work directory a previous run wrote its step-* checkpoints into")


@dataclass
class LoadedState:
    state: TrainState
    model_state: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]  # "<param name>/<field>" -> tensor
    hyper: list[dict[str, Any]]  # param-group hyper-parameters
    extra_tensors: dict[str, torch.Tensor]
    rng: dict[str, Any]
    path: Path


def load_train_checkpoint(step_dir: Path) -> LoadedState:
    from safetensors.torch import load_file

    try:
        payload = json.loads((step_dir / "state.json").read_text())
        model_state = load_file(str(step_dir / "model.safetensors"))
        opt = load_file(str(step_dir / "optimizer.safetensors"))
        extra = load_file(str(step_dir / "extra.safetensors"))
    except Exception as e:  # corrupt / foreign files all end the same way for a user
        raise TrainError(f"training checkpoint {step_dir} is unreadable ({type(e).__name__}: {e})") from None
    state = TrainState(step=int(payload["step"]), tokens_seen=int(payload["tokens_seen"]),
                       sampler=payload["sampler"], spec=payload["spec"], fingerprint=payload["fingerprint"],
                       fingerprint_parts=payload.get("fingerprint_parts", {}), config=payload.get("config", {}),
                       extra=payload.get("extra", {}))
    return LoadedState(state=state, model_state=model_state, optimizer=opt, hyper=payload.get("optimizer", []),
                       extra_tensors=extra, rng=payload.get("rng", {}), path=step_dir)


def check_fingerprint(loaded: LoadedState, fingerprint: str, parts: dict[str, str]) -> None:
    """Refuse to resume a checkpoint written by another run, naming what differs."""
    if loaded.state.fingerprint == fingerprint:
        return
    old = loaded.state.fingerprint_parts
    differ = sorted(k for k in set(old) | set(parts) if old.get(k) != parts.get(k)) or ["fingerprint"]
    raise ResumeMismatch(f"resume directory {loaded.path.parent} was written by another run "
                     f"(different {', '.join(differ)}); resume with the same model, data and "
                     f"settings, or start a new run in another --out directory")


def restore_rng(loaded: LoadedState) -> None:
    t = loaded.extra_tensors
    if "rng/torch_cpu" in t:
        torch.set_rng_state(t["rng/torch_cpu"])
    if torch.cuda.is_available():
        states = [t[k] for k in sorted(k for k in t if k.startswith("rng/cuda"))]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
    rng = loaded.rng
    if "python" in rng:
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in rng:
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def optimizer_state_dict(optimizer: torch.optim.Optimizer, names: list[str],
                         tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The torch optimizer state_dict for `optimizer` (whose params, in group order, are named
    `names`) holding `tensors` ("<name>/<field>"), ready for `optimizer.load_state_dict`
    (which moves / casts each field as the optimizer's own policy wants: fused, capturable)."""
    by_name = fields_by_param(tensors)
    state = {i: by_name[name] for i, name in enumerate(names) if name in by_name}
    sd = optimizer.state_dict()
    return {"state": state, "param_groups": sd["param_groups"]}
