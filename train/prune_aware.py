"""Pruning-aware training (EfficientLLM, Xing et al. 2025; docs/DESIGN.md §5).

While training runs, the first-order Taylor saliency Σ|w·g| of every minimal group (KV group,
FFN channel, hidden channel) is read off the same backward passes and smoothed with an EMA. On a
schedule from the start size to the target, the lowest-saliency units are removed a few at a
time; weights, AdamW moments and the EMAs are cut along the same indices, so the per-layer
architecture emerges from training instead of being chosen up front.

Units of different kinds are compared by saliency per parameter they carry (a hidden channel
spans the whole model, an FFN channel 3·hidden weights), so a cheap-but-useless unit and an
expensive-but-useless one are judged on the same scale.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Optional

import torch

from edgeprune.base.errors import TrainError
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec
from edgeprune.shape.units import group_sizes, taylor_saliency, unit_param_cost

log = logging.getLogger(__name__)


@dataclass
class PruneAwareConfig:
    target_params: int  # parameter count to reach (spec.n_params)
    start_frac: float = 0.1  # first removal after this fraction of the steps (saliency warm-up)
    end_frac: float = 0.6  # last removal at this fraction; the rest trains the final shape
    events: int = 10  # removal events between start and end (a few units each)
    ema: float = 0.9  # saliency EMA decay per optimizer step
    max_layer_frac: float = 0.5  # most of one layer's FFN channels / KV groups removed per event
    max_hidden_frac: float = 0.1  # most of the hidden channels removed per event
    min_hidden: int = 8  # never shrink the residual stream below this
    min_ffn: int = 1  # never shrink an MLP below this many channels
    min_kv: int = 1  # never remove a layer's last KV group
    align: int = 1  # FFN widths, hidden size and heads·head_dim stay multiples of this (GGUF quant blocks)
    # after each surgery, with a KD teacher, refit o_proj / down_proj towards the teacher's hidden
    # states (prune's reconstruction, "none" skips it): the cut is repaired in one solve instead of
    # by the next optimizer steps alone
    reconstruct: str = "layerwise"

    def validate(self, spec: ArchSpec) -> None:
        problems = []
        if self.target_params >= spec.n_params:
            problems.append(f"--target-params {self.target_params} is not below the model's "
                            f"{spec.n_params} parameters")
        floor = spec.vocab_size * self.min_hidden * (1 if spec.tie_word_embeddings else 2)
        if self.target_params <= floor:
            problems.append(f"--target-params {self.target_params} is below the embedding floor {floor} "
                            f"(vocab {spec.vocab_size} x min hidden {self.min_hidden})")
        if not 0 <= self.start_frac < self.end_frac <= 1:
            problems.append(f"need 0 <= start_frac < end_frac <= 1 (got {self.start_frac}, {self.end_frac})")
        if self.events < 1:
            problems.append(f"events={self.events} must be >= 1")
        if self.align < 1:
            problems.append(f"align={self.align} must be >= 1")
        from edgeprune.prune import RECONSTRUCT_MODES

        if self.reconstruct not in RECONSTRUCT_MODES:
            problems.append(f"reconstruct={self.reconstruct!r}: choose from {', '.join(RECONSTRUCT_MODES)}")
        if problems:
            raise TrainError("pruning-aware training: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)


def event_steps(cfg: PruneAwareConfig, total_steps: int) -> list[int]:
    """Optimizer steps (1-based, after which a removal happens); the last reaches the target."""
    a = max(1, int(round(cfg.start_frac * total_steps)))
    b = max(a, int(round(cfg.end_frac * total_steps)))
    n = max(1, min(cfg.events, b - a + 1))
    return sorted({a + round(k * (b - a) / max(1, n - 1)) for k in range(n)} if n > 1 else {b})


def desired_params(cfg: PruneAwareConfig, start_params: int, step: int, events: list[int]) -> int:
    k = events.index(step) + 1
    return int(round(start_params - (start_params - cfg.target_params) * k / len(events)))


class SaliencyTracker:
    """EMA of per-unit Taylor saliency, updated after each backward (before the optimizer step)."""

    def __init__(self, decay: float):
        self.decay = decay
        self.ema: dict[str, torch.Tensor] = {}

    def update(self, model: EdgeLM) -> None:
        named = dict(model.named_parameters())
        now = taylor_saliency(named, model.spec)
        for g, s in now.items():
            prev = self.ema.get(g)
            self.ema[g] = s if prev is None or prev.shape != s.shape else self.decay * prev + (1 - self.decay) * s

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"saliency/{g}": t for g, t in self.ema.items()}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        self.ema = {k.split("/", 1)[1]: v.to(device) for k, v in tensors.items() if k.startswith("saliency/")}

    def cut(self, keep_units: dict[str, torch.Tensor]) -> None:
        for g, units in keep_units.items():
            if g in self.ema:
                self.ema[g] = self.ema[g].index_select(0, units.to(self.ema[g].device))


def _chunk(group: str, weakest: list[int], n_now: int, floor: int, align: int, spec: ArchSpec) -> list[int]:
    """The next removal of `group` that keeps its width aligned: the weakest units down to the next
    lower multiple of `align` (FFN channels, hidden channels), or the fewest weakest KV groups
    whose query heads leave heads·head_dim a multiple of `align` (any count when no head count
    can be). Empty when the floor forbids it."""
    from edgeprune.shape.units import attn_width_reachable

    if group.startswith("kv."):
        lay = spec.layers[int(group.split(".")[1])]
        width = lay.group_size * spec.head_dim  # o_proj columns per KV group
        strict = attn_width_reachable(lay.n_heads, spec.head_dim, align)
        m = next((m for m in range(n_now - 1, floor - 1, -1) if not strict or (m * width) % align == 0), None)
    else:
        m = ((n_now - 1) // align) * align
        m = m if m >= floor else None
    return [] if m is None else weakest[: n_now - m]


def _attn_aligned(spec: ArchSpec, group: str, n_kv: int, align: int) -> bool:
    from edgeprune.shape.units import attn_width_reachable

    lay = spec.layers[int(group.split(".")[1])]
    width = n_kv * lay.group_size * spec.head_dim
    return width % align == 0 or not attn_width_reachable(lay.n_heads, spec.head_dim, align)


def choose_removals(spec: ArchSpec, ema: dict[str, torch.Tensor], goal: int,
                    cfg: PruneAwareConfig) -> dict[str, torch.Tensor]:
    """Kept unit indices per cut group so that spec.n_params drops to about `goal`.

    Greedy over *aligned chunks* (alignment is part of the shape contract, docs/DESIGN.md §1): each group
    offers its next removal that keeps the width a multiple of `cfg.align` (see `_chunk`), valued
    by saliency per parameter; the cheapest-to-lose chunk goes first. A chunk that would overshoot
    the remaining deficit by more than it helps is skipped (smaller chunks fill the rest). Per-event
    caps keep any one layer from being emptied by a single noisy estimate."""
    deficit = spec.n_params - goal
    if deficit <= 0:
        return {}
    sizes = group_sizes(spec)
    align = max(1, int(cfg.align))
    order: dict[str, list[int]] = {}  # weakest first
    sal: dict[str, list[float]] = {}
    for g, n in sizes.items():
        s = ema.get(g)
        if s is None or s.numel() != n:
            continue
        sal[g] = s.tolist()
        order[g] = sorted(range(n), key=lambda u, v=sal[g]: (v[u], u))
    cost = {g: unit_param_cost(spec, g) for g in order}
    floor = {}
    for g in order:
        if g == "hidden":
            floor[g] = max(cfg.min_hidden, min(align, sizes[g]))
        elif g.startswith("ffn"):
            floor[g] = max(cfg.min_ffn, min(align, sizes[g]))
        else:
            floor[g] = cfg.min_kv
    cap = {g: max(1, int((cfg.max_hidden_frac if g == "hidden" else cfg.max_layer_frac) * sizes[g])) for g in order}
    removed: dict[str, list[int]] = {g: [] for g in order}
    for g in order:  # an unaligned start goes onto the grid first, whatever the deficit
        aligned = (sizes[g] % align == 0) if not g.startswith("kv.") else _attn_aligned(spec, g, sizes[g], align)
        if not aligned:
            chunk = _chunk(g, order[g], sizes[g], floor[g], align, spec)
            removed[g] += chunk
            deficit -= len(chunk) * cost[g]
    blocked: set[str] = set()
    while deficit > 0:
        best = None
        for g in order:
            if g in blocked:
                continue
            taken = removed[g]
            chunk = _chunk(g, order[g][len(taken):], sizes[g] - len(taken), floor[g], align, spec)
            if not chunk or (taken and len(taken) + len(chunk) > max(cap[g], len(chunk))):
                continue
            c = len(chunk) * cost[g]
            value = sum(sal[g][u] for u in chunk) / c
            if best is None or value < best[0]:
                best = (value, g, chunk, c)
        if best is None:
            break
        _, g, chunk, c = best
        if c > deficit and c - deficit >= deficit:
            blocked.add(g)  # overshoots worse than stopping here
            continue
        removed[g] += chunk
        deficit -= c
    keep = {}
    for g, units in removed.items():
        if units:
            mask = torch.ones(sizes[g], dtype=torch.bool)
            mask[torch.tensor(units)] = False
            keep[g] = mask.nonzero().flatten()  # (kept,) sorted
    return keep


@torch.no_grad()
def cut_model(model: EdgeLM, keep_units: dict[str, torch.Tensor]) -> tuple[EdgeLM, dict]:
    """Remove every unit not kept, through prune's public surgery (`edgeprune.prune.remove_units`,
    which also keeps hidden-channel cuts exact by rescaling RMSNorm); returns the model and prune's
    CutRecord (per parameter name, the (dim, kept indices) cuts in order) to replay on AdamW's
    moments."""
    from edgeprune.prune import remove_units

    record: dict = {}
    sizes = group_sizes(model.spec)
    removed = {}
    for group, kept_units in keep_units.items():
        kept = set(kept_units.tolist())
        removed[group] = [u for u in range(sizes[group]) if u not in kept]
    return remove_units(model, removed, record=record), record


# calibration windows for the refit after a surgery: fixed, evenly spaced windows of the training
# text (not drawn from the sampler, so the data order is the same with or without it). 32 is
# prune's own default calibration count; at the training's seq_len (256 by default) that is 8,192
# tokens, ~5x the widest consumer input of SmolLM2-135M (FFN 1536) for a well-posed fit, at the
# price of ~3 forward passes over 32 windows per removal event.
RECONSTRUCT_WINDOWS = 32


def refit_after_cut(model: EdgeLM, teacher: EdgeLM, windows: torch.Tensor, mode: str,
                    hidden_kept: Optional[torch.Tensor] = None) -> dict:
    """Reconstruct the freshly cut `model` (in place) towards `teacher` on `windows` (n, T) through
    prune's public reconstruction; returns its summary (seconds, mean relative errors before →
    after). The student has trained before the cut: the ridge fit is held towards its current
    weights, so the refit keeps what training learned. The layers must correspond one to one
    (pruning-aware training never removes a layer): a teacher of another depth is not fitted to.
    `hidden_kept`: the teacher's residual channels the student still has, in order."""
    from edgeprune.prune import reconstruct_model, summarise

    if teacher.spec.n_layers != model.spec.n_layers:
        return {"mode": mode, "skipped": f"the teacher has {teacher.spec.n_layers} layers, the student "
                                         f"{model.spec.n_layers}: no layer-to-layer target"}
    if hidden_kept is not None and len(hidden_kept) == teacher.spec.hidden_size:
        hidden_kept = None  # the full width: nothing to select
    if hidden_kept is not None and len(hidden_kept) != model.spec.hidden_size:
        raise TrainError(f"{len(hidden_kept)} kept hidden channels tracked for a model of hidden size "
                         f"{model.spec.hidden_size}")  # an internal bookkeeping slip, said plainly
    return summarise(reconstruct_model(model, teacher, windows, mode=mode, progress=False,
                                       hidden_channels=hidden_kept))


def removal_summary(before: ArchSpec, after: ArchSpec) -> str:
    parts = []
    if after.hidden_size != before.hidden_size:
        parts.append(f"hidden {before.hidden_size}->{after.hidden_size}")
    for i, (a, b) in enumerate(zip(before.layers, after.layers)):
        if a.n_kv_heads != b.n_kv_heads:
            parts.append(f"L{i} heads {a.n_heads}/{a.n_kv_heads}->{b.n_heads}/{b.n_kv_heads}")
        if a.ffn_dim != b.ffn_dim:
            parts.append(f"L{i} ffn {a.ffn_dim}->{b.ffn_dim}")
    return ", ".join(parts) or "nothing"

