"""Width plans: which units of each layer to keep, decided on scores, then applied by surgery.

A `LayerPlan` holds one layer's unit scores and what is still kept. It proposes *chunks* (the
smallest cut that keeps the widths aligned): drop the weakest KV group (with its query heads),
drop the weakest query head of every group (GQA stays integral), or drop the weakest MLP
channels down to the next multiple of `align`. Methods choose among chunks (`greedy_cut`);
`apply_plans` performs the surgery. Plans never remove a whole block: a layer keeps at least
one KV group with one query head and at least `min(align, ffn)` MLP channels.

Alignment (DESIGN §4): GGUF quantizes rows; a row of down_proj is ffn_dim long and a row of
o_proj is n_heads·head_dim long, so those are the widths rounded. q/k/v/gate/up rows are
hidden_size long and unaffected. Head counts stay integral, so an attention alignment is
honoured only where some head count reaches it (n_heads·head_dim % align == 0); with
head_dim 64 and align 256 that means multiples of 4 heads. When no head count can satisfy it,
attention is pruned at whole-head granularity and the plan says so in its log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import torch

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec, attention_params, mlp_params
from edgeprune.shape.units import attn_width_reachable, default_align

from . import surgery
from .calibration import Calibration
from .layer_scores import LayerScores

def round_width(width: int, align: int, minimum: Optional[int] = None) -> int:
    """Nearest multiple of `align` to `width`, at least `minimum` (default: align)."""
    if align < 1:
        raise PruneError(f"align must be >= 1, got {align}")
    lo = align if minimum is None else minimum
    return max(lo, int(round(width / align)) * align)


@dataclass
class Chunk:
    kind: str  # "group" | "head" | "ffn"
    units: int  # query heads (attention) or channels (ffn) removed
    score: float  # sum of the removed units' scores
    cost: int  # parameters removed
    removed: list[int]  # group indices / per-group head counts / channel indices
    seconds: float = 0.0  # decode seconds per token saved on the target device (latency-aware plans)


@dataclass
class LayerPlan:
    """One layer: scores (in the current model's indices) and what is still kept."""

    index: int
    hidden: int
    head_dim: int
    bias: bool
    align: int
    scores: LayerScores
    groups: list[int] = field(default_factory=list)  # kept KV group indices
    heads: dict[int, list[int]] = field(default_factory=dict)  # group -> kept query heads
    ffn: list[int] = field(default_factory=list)  # kept channels
    n_heads0: int = 0
    n_kv0: int = 0
    ffn0: int = 0
    # decode seconds of this layer at (n_heads, n_kv_heads, ffn_dim) on the target device; set by
    # latency-aware methods (prune/latency.py), None = parameter-driven plans
    lat: Optional[Callable[[int, int, int], float]] = None
    blocks: bool = False  # may remove the whole attention / MLP block (latency-aware methods)

    @classmethod
    def of(cls, spec: ArchSpec, index: int, scores: LayerScores, align: int) -> "LayerPlan":
        lay = spec.layers[index]
        g = lay.group_size
        p = cls(index=index, hidden=spec.hidden_size, head_dim=spec.head_dim, bias=spec.has_bias,
                align=align, scores=scores, n_heads0=lay.n_heads, n_kv0=lay.n_kv_heads, ffn0=lay.ffn_dim)
        # python lists, each kept list sorted weakest first: a chunk is then a prefix
        p._q = scores.q.tolist() if scores.q is not None else []
        p._kv = scores.kv.tolist() if scores.kv is not None else []
        p._f = scores.ffn.tolist() if scores.ffn is not None else []
        p.groups = list(range(lay.n_kv_heads))
        p.heads = {j: sorted(range(j * g, (j + 1) * g), key=lambda h: (p._q[h], h)) for j in p.groups}
        p.ffn = sorted(range(lay.ffn_dim), key=lambda c: (p._f[c], c))
        return p

    # ----- widths and parameters -----------------------------------------------------------------
    @property
    def n_kv(self) -> int:
        return len(self.groups)

    @property
    def group_size(self) -> int:
        return len(self.heads[self.groups[0]]) if self.groups else 0

    @property
    def n_heads(self) -> int:
        return self.n_kv * self.group_size

    def attn_params(self, n_heads: Optional[int] = None, n_kv: Optional[int] = None) -> int:
        nq = self.n_heads if n_heads is None else n_heads
        nkv = self.n_kv if n_kv is None else n_kv
        return attention_params(self.hidden, self.head_dim, nq, nkv, self.bias)

    def mlp_params(self, ffn: Optional[int] = None) -> int:
        return mlp_params(self.hidden, len(self.ffn) if ffn is None else ffn)

    def params(self) -> int:
        return self.attn_params() + self.mlp_params()

    def params0(self) -> int:
        return self.attn_params(self.n_heads0, self.n_kv0) + self.mlp_params(self.ffn0)

    # ----- chunks ---------------------------------------------------------------------------------
    def _aligned_heads(self, n_heads: int) -> bool:
        return (n_heads * self.head_dim) % self.align == 0

    def _attn_align_reachable(self) -> bool:
        return attn_width_reachable(self.n_heads, self.head_dim, self.align)

    def seconds(self, n_heads: Optional[int] = None, n_kv: Optional[int] = None, ffn: Optional[int] = None) -> float:
        """Decode seconds of this layer at these widths (default: as kept now); 0 without `lat`."""
        if self.lat is None:
            return 0.0
        return self.lat(self.n_heads if n_heads is None else n_heads, self.n_kv if n_kv is None else n_kv,
                        len(self.ffn) if ffn is None else ffn)

    def chunks(self, kinds: Iterable[str] = ("group", "head", "ffn", "attn_block", "mlp_block")) -> list[Chunk]:
        out = self._width_chunks(set(kinds))
        if self.lat is not None:
            now = self.seconds()
            for c in out:
                if c.kind == "group":
                    c.seconds = now - self.seconds(self.n_heads - c.units, self.n_kv - len(c.removed))
                elif c.kind == "head":
                    c.seconds = now - self.seconds(self.n_heads - c.units)
                else:
                    c.seconds = now - self.seconds(ffn=len(self.ffn) - c.units)
        if self.blocks:
            kinds = set(kinds)
            now = self.seconds()
            if "attn_block" in kinds and self.groups:
                gone = list(self.groups)
                score = sum(self._kv[j] + sum(self._q[h] for h in self.heads[j]) for j in gone)
                out.append(Chunk("attn_block", self.n_heads, score, self.attn_params(), gone,
                                 now - self.seconds(0, 0)))
            if "mlp_block" in kinds and self.ffn:
                out.append(Chunk("mlp_block", len(self.ffn), sum(self._f[c] for c in self.ffn), self.mlp_params(),
                                 list(self.ffn), now - self.seconds(ffn=0)))
        return out

    def _width_chunks(self, kinds: set) -> list[Chunk]:
        out = []
        strict = self._attn_align_reachable() if self.groups else False
        g = self.group_size
        if "group" in kinds and self.n_kv > 1:
            def gscore(j):
                return self._kv[j] + sum(self._q[h] for h in self.heads[j])
            order = sorted(self.groups, key=lambda j: (gscore(j), j))
            for k in range(1, self.n_kv):  # fewest weakest groups whose removal stays aligned
                if not strict or self._aligned_heads((self.n_kv - k) * g):
                    gone = order[:k]
                    out.append(Chunk("group", k * g, sum(gscore(j) for j in gone),
                                     self.attn_params() - self.attn_params((self.n_kv - k) * g, self.n_kv - k), gone))
                    break
        if "head" in kinds and g > 1:
            for k in range(1, g):  # the k weakest query heads of every group
                if not strict or self._aligned_heads(self.n_kv * (g - k)):
                    gone = [h for j in self.groups for h in self.heads[j][:k]]
                    out.append(Chunk("head", len(gone), sum(self._q[h] for h in gone),
                                     self.attn_params() - self.attn_params(self.n_kv * (g - k)), gone))
                    break
        if "ffn" in kinds and self.ffn:
            w = len(self.ffn)
            floor = min(self.align, self.ffn0)
            new_w = ((w - 1) // self.align) * self.align
            if floor <= new_w < w:
                gone = self.ffn[: w - new_w]
                out.append(Chunk("ffn", len(gone), sum(self._f[c] for c in gone),
                                 self.mlp_params() - self.mlp_params(new_w), gone))
        return out

    def apply(self, chunk: Chunk) -> None:
        if chunk.kind == "attn_block":
            self.groups, self.heads = [], {}
        elif chunk.kind == "mlp_block":
            self.ffn = []
        elif chunk.kind == "group":
            for j in chunk.removed:
                self.groups.remove(j)
                del self.heads[j]
        elif chunk.kind == "head":
            gone = set(chunk.removed)
            for j in self.groups:
                self.heads[j] = [h for h in self.heads[j] if h not in gone]
        else:
            gone = set(chunk.removed)
            self.ffn = [c for c in self.ffn if c not in gone]

    def keep_strongest(self, n_kv: int, group: int, ffn: int) -> None:
        """Keep exactly `n_kv` groups of `group` query heads and `ffn` channels, the strongest by
        score (uniform shapes set every layer's widths this way; which units go stays per layer)."""
        if self.groups:
            def gscore(j: int) -> float:
                return self._kv[j] + sum(self._q[h] for h in self.heads[j])
            keep = sorted(sorted(self.groups, key=lambda j: (-gscore(j), j))[:n_kv])
            self.groups = keep
            self.heads = {j: self.heads[j][len(self.heads[j]) - group:] if group else [] for j in keep}
        if self.ffn:
            self.ffn = self.ffn[len(self.ffn) - ffn:] if ffn else []

    def copy(self) -> "LayerPlan":
        c = LayerPlan(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        c._q, c._kv, c._f = self._q, self._kv, self._f
        c.groups, c.heads, c.ffn = list(self.groups), {j: list(v) for j, v in self.heads.items()}, list(self.ffn)
        return c


def chunk_value(chunk: Chunk, policy: str) -> float:
    """How costly a chunk is to lose: score per parameter (Taylor-like scores are sums, so a
    big chunk would always look important) or mean unit score (standardised FLAP scores)."""
    if policy == "per_param":
        return chunk.score / max(1, chunk.cost)
    if policy == "mean":
        return chunk.score / max(1, chunk.units)
    if policy == "per_second":  # importance per unit of decode latency saved
        return chunk.score / max(chunk.seconds, 1e-12)
    raise ValueError(policy)


def greedy_cut(plans: list[LayerPlan], to_remove: float, *, policy: str = "per_param",
               kinds: Iterable[str] = ("group", "head", "ffn"), overshoot: bool | str = True,
               measure: str = "params") -> float:
    """Remove the least valuable chunk across `plans` until about `to_remove` is gone, counted in
    parameters (`measure="params"`) or decode seconds (`"seconds"`, latency-aware plans); a chunk
    that would land further from the goal than stopping is skipped (with `overshoot=False`, any
    chunk that would pass the goal is; with `overshoot="always"` none is: the goal is a floor,
    e.g. a speed target). Returns the amount removed."""
    kinds = tuple(kinds)
    removed = 0.0 if measure == "seconds" else 0
    blocked: set[tuple[int, str]] = set()
    while removed < to_remove:
        cands = [(chunk_value(c, policy), n, c) for n, p in enumerate(plans)
                 for c in p.chunks(kinds) if (n, c.kind) not in blocked]
        if not cands:
            break
        _, n, c = min(cands, key=lambda t: (t[0], t[1], t[2].kind))
        left = to_remove - removed
        amount = c.seconds if measure == "seconds" else c.cost
        if amount <= 0 or (amount > left and overshoot != "always"
                           and (not overshoot or (amount - left) >= left)):
            blocked.add((n, c.kind))  # overshoots worse than stopping here (or saves nothing)
            continue
        plans[n].apply(c)
        removed += amount
    return removed


def apply_plans(model: EdgeLM, plans: list[LayerPlan], record: Optional[surgery.CutRecord] = None) -> EdgeLM:
    """Cut the model to the plans' kept units (indices refer to the model the plans were made on).
    A plan that kept neither attention nor MLP removes its whole layer (after every width cut, so
    the other plans' indices still hold)."""
    empty = []
    for p in plans:
        lay = model.spec.layers[p.index]
        if not p.groups and not p.ffn:  # nothing left: the layer goes
            empty.append(p.index)
            continue
        if lay.has_attention and not p.groups:
            model = surgery.remove_attention(model, p.index, record)
        elif lay.has_attention:
            g0 = lay.group_size
            g_new = p.group_size
            if g_new < g0:  # same number of query heads off every group; dropped groups arbitrary
                gone = []
                for j in range(lay.n_kv_heads):
                    kept = p.heads.get(j, list(range(j * g0, j * g0 + g_new)))
                    gone += [h for h in range(j * g0, (j + 1) * g0) if h not in kept]
                model = surgery.remove_query_heads(model, p.index, gone, record)
            drop = [j for j in range(lay.n_kv_heads) if j not in p.groups]
            if drop:
                model = surgery.remove_kv_groups(model, p.index, drop, record)
        if lay.has_mlp and not p.ffn:
            model = surgery.remove_mlp(model, p.index, record)
        elif lay.has_mlp and len(p.ffn) < lay.ffn_dim:
            keep = set(p.ffn)
            model = surgery.remove_mlp_channels(model, p.index, [c for c in range(lay.ffn_dim) if c not in keep],
                                                record)
    if empty:
        model = surgery.remove_layers(model, empty, record)
    return model


def plans_for(model: EdgeLM, kind: str, calibration: Optional[Calibration], align: int) -> list[LayerPlan]:
    """A fresh plan per layer of `model`, scored with `kind` ("taylor" needs grads)."""
    from .layer_scores import model_scores

    return [LayerPlan.of(model.spec, i, s, align) for i, s in enumerate(model_scores(model, kind, calibration))]


def min_layer_params(plan: LayerPlan) -> int:
    """The smallest this layer can get without removing a block: one group of one head and the
    smallest aligned MLP width."""
    nq = 1
    if plan.n_heads0 and plan.align > 1:
        nq = next((n for n in range(1, plan.n_heads0 + 1) if (n * plan.head_dim) % plan.align == 0), 1)
    attn = plan.attn_params(nq, 1) if plan.n_heads0 else 0
    return attn + plan.mlp_params(min(plan.align, plan.ffn0)) if plan.ffn0 else attn


def unscored(spec: ArchSpec) -> list[LayerScores]:
    """Zero scores (for feasibility arithmetic without a model)."""
    return [LayerScores(q=torch.zeros(lay.n_heads) if lay.n_heads else None,
                        kv=torch.zeros(lay.n_kv_heads) if lay.n_kv_heads else None,
                        ffn=torch.zeros(lay.ffn_dim) if lay.ffn_dim else None) for lay in spec.layers]


__all__ = ["LayerPlan", "Chunk", "greedy_cut", "apply_plans", "round_width",
           "min_layer_params", "chunk_value", "plans_for", "unscored"]
