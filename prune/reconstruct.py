"""Reconstruction after a cut: refit the weights that consume what was cut, by least squares, so
the pruned model reproduces the original's hidden states on calibration tokens (no training).

The pruned model (the student) keeps every module that survives surgery, so each of its layers
knows which layer of the original (the teacher) it came from (`tag_sources`). Walking the layers
in order, with the hidden states of both models on the calibration tokens held one layer at a
time:

- **attention**: o_proj is refitted on the student's own head outputs (the kept heads) so that
  the residual stream after attention matches the teacher's after the same layer's attention;
- **MLP**: down_proj is refitted on the student's own channel activations (the kept channels) so
  that the residual stream after the block matches the teacher's **after the last layer of the
  run that ends here**. When the layers after this one were removed, that target is the hidden
  state after the removed run, and the refit is a linear map for the removed layers merged into
  this layer's down_proj (ReplaceMe, Shopkhoev et al. 2025): the file keeps its architecture.

Sequential (SparseGPT / ZipLM style): each refit sees the inputs the already-reconstructed
layers before it produce, so errors do not compound; the targets are the teacher's.

Each fit is ridge regression towards the cut weights W0:
    min_W  Σ_t w_t ‖W x_t − y_t‖² + λ ‖W − W0‖²,   W = (XᵀWY + λ W0ᵀ)ᵀ-solve of (XᵀWX + λ I)
with XᵀX and XᵀY accumulated in float64, one consumer at a time. Every consumer of the residual
stream reads it through an RMSNorm, so an error matters relative to the hidden state's norm: each
token is weighted by w_t = 1 / ‖h_t‖² of the teacher's hidden state it is fitted to. Without it a
few massive-activation tokens (attention sinks: ~25,800 against ~150 for a typical token in
SmolLM2-135M) hold almost all of the squared target and the fit serves them alone.

A cut of the hidden width (pruning-aware training's stem cut) keeps a subset of the residual
stream's channels, unscaled (surgery rescales the RMSNorms instead): given which teacher channels
were kept (`hidden_channels`), the targets are the teacher's states on those channels. Without
them such a model is left as cut (`skipped` in the record).
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from torch import nn

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import DecoderLayer, EdgeLM

log = logging.getLogger(__name__)

MODES = ("layerwise", "none")
RECONSTRUCT_MODES = MODES  # the name prune's public face gives them (pruning-aware training validates against it)
DEFAULT_MODE = "layerwise"
DEFAULT_DAMP = 0.5  # λ as a fraction of the mean diagonal of XᵀWX (see DESIGN §4: measured 0.3–1.0 best)

# attribute set on each decoder layer before a cut; surgery keeps the module objects, so after
# any number of cuts (deep copies included) a layer still names the original layer it came from
SOURCE_ATTR = "_edgeprune_source_layer"


def tag_sources(model: EdgeLM) -> None:
    """Mark every decoder layer with its index in `model` (call on the uncut model)."""
    for i, layer in enumerate(model.model.layers):
        setattr(layer, SOURCE_ATTR, i)


def source_layers(student: EdgeLM, n_teacher: int) -> list[int]:
    """The teacher layer each student layer came from, in order."""
    src = [getattr(layer, SOURCE_ATTR, None) for layer in student.model.layers]
    if any(s is None for s in src):
        if len(src) == n_teacher:
            return list(range(n_teacher))  # nothing tagged and no layer removed: the same order
        raise PruneError("reconstruction needs to know which original layer each kept layer came from: "
                         "call prune.reconstruct.tag_sources(model) before cutting layers")
    if any(b <= a for a, b in zip(src, src[1:])) or src[-1] >= n_teacher:
        raise PruneError(f"kept layers {src} are not an ordered subset of the original's {n_teacher} layers")
    return [int(s) for s in src]


@dataclass
class NormalEquations:
    """Σ w x xᵀ, Σ w x yᵀ and Σ w ‖y‖² of one linear consumer (x: its input, y: its target)."""

    xtx: torch.Tensor  # (k, k) float64
    xty: torch.Tensor  # (k, out) float64
    yty: float = 0.0
    tokens: int = 0

    @classmethod
    def of(cls, k: int, out: int) -> "NormalEquations":
        return cls(torch.zeros(k, k, dtype=torch.float64), torch.zeros(k, out, dtype=torch.float64))

    def add(self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> None:
        # x (n, k), y (n, out), w (n,): products per batch in float32 on √w-scaled rows (each
        # batch is a few thousand tokens), accumulated over batches in float64
        s = w.float().sqrt()[:, None]
        xs, ys = x.float() * s, y.float() * s
        self.xtx += (xs.T @ xs).double()
        self.xty += (xs.T @ ys).double()
        self.yty += float(ys.double().pow(2).sum())
        self.tokens += x.shape[0]

    def error(self, weight: torch.Tensor) -> float:
        """Σ w ‖W x − y‖² for W (out, k), from the accumulated moments alone."""
        wt = weight.detach().double().T  # (k, out)
        return float(self.yty - 2 * (wt * self.xty).sum() + (wt * (self.xtx @ wt)).sum())

    def solve(self, w0: torch.Tensor, damp: float) -> torch.Tensor:
        """The ridge solution towards `w0` (out, k); float64 solve, returned in w0's dtype."""
        k = self.xtx.shape[0]
        lam = damp * float(self.xtx.diagonal().mean()) + 1e-8
        a = self.xtx + lam * torch.eye(k, dtype=torch.float64)
        b = self.xty + lam * w0.detach().double().T.cpu()
        return torch.linalg.solve(a, b).T.to(w0.dtype)  # (out, k)


def _attn_parts(layer: DecoderLayer, h: torch.Tensor, cos, sin) -> tuple[torch.Tensor, torch.Tensor]:
    """(o_proj's input, the attention's output) for hidden states h (B, T, hidden)."""
    seen: dict[str, torch.Tensor] = {}
    handle = layer.self_attn.o_proj.register_forward_pre_hook(lambda m, args: seen.__setitem__("x", args[0]))
    try:
        out, _ = layer.self_attn(layer.input_layernorm(h), cos, sin, None, None)  # (B, T, hidden)
    finally:
        handle.remove()
    return seen["x"], out


def _mlp_input(layer: DecoderLayer, h: torch.Tensor) -> torch.Tensor:
    """down_proj's input (B, T, ffn_dim) for hidden states h."""
    mlp = layer.mlp
    x = layer.post_attention_layernorm(h)
    return torch.nn.functional.silu(mlp.gate_proj(x)) * mlp.up_proj(x)


def _half(layer: DecoderLayer, h: torch.Tensor, cos, sin, part: str) -> torch.Tensor:
    """h after one half of `layer` ("attn" or "mlp"); unchanged when that half is absent."""
    if part == "attn":
        if layer.self_attn is None:
            return h
        return h + layer.self_attn(layer.input_layernorm(h), cos, sin, None, None)[0]
    return h + layer.mlp(layer.post_attention_layernorm(h)) if layer.mlp is not None else h


def _weights(target_state: torch.Tensor) -> torch.Tensor:
    """Per-token weights 1/‖h‖² (relative error: every reader of h normalises it first)."""
    sq = target_state.float().pow(2).sum(-1).reshape(-1)  # (n,)
    return 1.0 / sq.clamp(min=1e-6 * float(sq.mean()) + 1e-12)


def _refit(lin: nn.Linear, eq: NormalEquations, damp: float) -> tuple[float, float]:
    """Replace lin.weight by the ridge solution; (relative error before, after)."""
    before = eq.error(lin.weight)
    new = eq.solve(lin.weight.detach().cpu(), damp).to(lin.weight.device)
    after = eq.error(new)
    if after < before:  # never make a consumer worse on its own calibration tokens
        with torch.no_grad():
            lin.weight.copy_(new)
    scale = max(eq.yty, 1e-30)
    return before / scale, min(before, after) / scale


def peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the process's peak, a bound on what reconstruction added
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class LayerStep:
    """One student layer on the walk: its inputs (the already-reconstructed layers' outputs) and
    the teacher's states it is fitted to, one tensor (B, T, hidden) per calibration batch."""

    index: int  # the student layer
    source: int  # the teacher layer it came from
    merged: list[int]  # the removed teacher layers after it, which it now stands for
    layer: DecoderLayer
    rope: list[tuple[torch.Tensor, torch.Tensor]]  # per batch (cos, sin)
    inputs: list[torch.Tensor]  # the student's hidden states entering the layer
    mid_target: list[torch.Tensor]  # the teacher's after the source layer's attention
    end_target: list[torch.Tensor]  # the teacher's after the last layer of the run
    # the layer's outputs with its new weights, when the caller computed them on the way (the
    # walk then need not run the layer again)
    outputs: Optional[list[torch.Tensor]] = None


def walk_layers(student: EdgeLM, teacher: EdgeLM, calib: torch.Tensor, batch_size: int = 8,
                hidden_channels: Optional[torch.Tensor] = None, sequential: bool = True) -> Iterator[LayerStep]:
    """Yield each student layer with its inputs and targets; after the caller changed the layer,
    its outputs (the next layer's inputs) are computed with the changed weights. The hidden states
    of one layer are held at a time, for both models. `hidden_channels`: the teacher's residual
    channels the student keeps (its hidden width was cut); the targets are those channels.
    `sequential=False` gives each layer the teacher's input to its source layer instead of the
    student's own (every layer fitted as if the ones before it were exact): the comparison that
    shows what the sequential walk is worth (benchmarks/reconstruct_real.md)."""
    src = source_layers(student, teacher.spec.n_layers)
    ends = src[1:] + [teacher.spec.n_layers]  # student layer j stands for teacher layers src[j]..ends[j]-1
    device = student.device
    batches = [calib[i:i + batch_size].to(device) for i in range(0, calib.shape[0], max(1, batch_size))]
    T = calib.shape[1]
    pos = torch.arange(T, device=device)[None]
    with torch.no_grad():
        h_s = [student.model.embed_tokens(ids) for ids in batches]  # each (B, T, hidden)
        h_t = [teacher.model.embed_tokens(ids) for ids in batches]
        # both models share head_dim and rope_theta; each gets its tables in its own dtype (a
        # training run holds its teacher in bf16 on CUDA beside a float32 student)
        rope = [student.model.rotary_emb(pos.expand(ids.shape[0], T), h.dtype) for ids, h in zip(batches, h_s)]
        rope_t = [student.model.rotary_emb(pos.expand(ids.shape[0], T), h.dtype) for ids, h in zip(batches, h_t)]
    t_layers = teacher.model.layers
    t_done = 0  # teacher layers h_t has passed through
    for j, layer in enumerate(student.model.layers):
        i, end = src[j], ends[j]
        mid_t, end_t, end_full, in_t = [], [], [], []
        with torch.no_grad():
            # the teacher through any removed layers before this one (a cut first layer), then
            # this layer's attention (the attention target) and the rest of the run (the MLP's)
            for b, (cos, sin) in enumerate(rope_t):
                h = h_t[b]
                for k in range(t_done, i):
                    h, _ = t_layers[k](h, cos, sin, None, None)
                if not sequential:
                    in_t.append(h if hidden_channels is None else h[..., hidden_channels])
                m = _half(t_layers[i], h, cos, sin, "attn")
                e = _half(t_layers[i], m, cos, sin, "mlp")
                for k in range(i + 1, end):
                    e, _ = t_layers[k](e, cos, sin, None, None)
                end_full.append(e)  # the teacher goes on at its full width
                if hidden_channels is not None:
                    m, e = m[..., hidden_channels], e[..., hidden_channels]
                mid_t.append(m)
                end_t.append(e)
        t_done = end
        step = LayerStep(j, i, list(range(i + 1, end)), layer, rope, h_s if sequential else in_t, mid_t, end_t)
        yield step
        # the next layer reads this one's outputs (sequential), else the teacher's states
        if sequential and step.outputs is not None:
            h_s = step.outputs
        elif sequential:
            with torch.no_grad():
                h_s = [layer(h_s[b], *rope[b], None, None)[0] for b in range(len(rope))]
        h_t = end_full


def _refit_layer(step: LayerStep, damp: float) -> dict[str, Any]:
    """Refit the step's o_proj, then its down_proj on the inputs the refitted attention gives; sets
    step.outputs from the inputs each fit gathered (o_proj and down_proj are linear, bias-free), so
    the attention and the MLP each run once."""
    layer, rope = step.layer, step.rope
    row: dict[str, Any] = {"layer": step.index, "source": step.source, "merged_layers": step.merged}
    h_s = step.inputs
    if layer.self_attn is not None:
        # with no MLP after it, the attention is the last consumer of this run
        goal = step.mid_target if layer.mlp is not None else step.end_target
        o = layer.self_attn.o_proj
        eq = NormalEquations.of(o.in_features, o.out_features)
        heads = []
        for b in range(len(rope)):
            x, _ = _attn_parts(layer, h_s[b], *rope[b])  # (B, T, n_heads * head_dim)
            heads.append(x)
            eq.add(x.reshape(-1, x.shape[-1]), (goal[b] - h_s[b]).reshape(-1, goal[b].shape[-1]), _weights(goal[b]))
        row["o_proj"] = [round(v, 5) for v in _refit(o, eq, damp)]
        h_s = [h + o(x) for h, x in zip(h_s, heads)]
        del heads
    if layer.mlp is not None:
        dn, goal = layer.mlp.down_proj, step.end_target
        eq = NormalEquations.of(dn.in_features, dn.out_features)
        acts = []
        for b in range(len(rope)):
            z = _mlp_input(layer, h_s[b])  # (B, T, ffn_dim)
            acts.append(z)
            eq.add(z.reshape(-1, z.shape[-1]), (goal[b] - h_s[b]).reshape(-1, goal[b].shape[-1]), _weights(goal[b]))
        row["down_proj"] = [round(v, 5) for v in _refit(dn, eq, damp)]
        h_s = [h + dn(z) for h, z in zip(h_s, acts)]
    step.outputs = h_s
    return row


def reconstruct(student: EdgeLM, teacher: EdgeLM, calib: torch.Tensor, *, mode: str = DEFAULT_MODE,
                damp: float = DEFAULT_DAMP, batch_size: int = 8, progress: bool = True,
                hidden_channels: Optional[torch.Tensor] = None, sequential: bool = True) -> dict[str, Any]:
    """Refit `student` (in place) towards `teacher` on `calib` (n, T) tokens; returns the record
    (mode, seconds, peak memory, per-layer relative errors before → after). `hidden_channels`
    (ascending teacher indices): which of the teacher's residual channels a student with a cut
    hidden width kept; without it such a student is left as cut."""
    if mode not in MODES:
        raise PruneError(f"reconstruction {mode!r}: choose from {', '.join(MODES)}")
    if mode == "none":
        return {"mode": "none"}
    t0 = time.perf_counter()
    if hidden_channels is not None:
        hidden_channels = torch.as_tensor(hidden_channels, dtype=torch.long).to(student.device)
        n_kept, top = hidden_channels.numel(), int(hidden_channels.max())
        if n_kept != student.spec.hidden_size or top >= teacher.spec.hidden_size:
            raise PruneError(f"{n_kept} kept hidden channels for a student of hidden size "
                             f"{student.spec.hidden_size} and a teacher of {teacher.spec.hidden_size}")
    elif student.spec.hidden_size != teacher.spec.hidden_size:
        return {"mode": mode, "skipped": "the hidden width was cut and which channels were kept is not known: "
                                         "no target to fit", "seconds": round(time.perf_counter() - t0, 2)}
    from edgeprune.base.progress import progress_bar

    was_training = (student.training, teacher.training)
    student.eval(), teacher.eval()
    rows = []
    try:
        steps = walk_layers(student, teacher, calib, batch_size, hidden_channels, sequential)
        for step in progress_bar(steps, total=student.spec.n_layers, desc="reconstruct", unit="layer",
                         disable=not progress):
            with torch.no_grad():
                rows.append(_refit_layer(step, damp))
    finally:
        student.train(was_training[0])
        teacher.train(was_training[1])
    return {"mode": mode, "damp": damp, "tokens": int(calib.numel()),
            "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(peak_rss_mb(), 1), "layers": rows}


# the name prune's public face gives `reconstruct`: there `edgeprune.prune.reconstruct` is this module
reconstruct_model = reconstruct


def summarise(rec: dict[str, Any]) -> dict[str, Any]:
    """A reconstruction record without its per-layer rows: mode, seconds, peak memory, and the
    mean relative error of the refitted consumers before → after their fit (`<part>_error`)."""
    rec = rec or {"mode": "none"}
    out = {k: v for k, v in rec.items() if k != "layers"}
    for part in ("o_proj", "down_proj"):
        fits = [row[part] for row in rec.get("layers", []) if part in row]
        if fits:
            out[f"{part}_error"] = [round(sum(f[0] for f in fits) / len(fits), 5),
                                    round(sum(f[1] for f in fits) / len(fits), 5)]
    return out


__all__ = ["reconstruct", "reconstruct_model", "summarise", "walk_layers", "LayerStep", "tag_sources",
           "source_layers", "NormalEquations", "peak_rss_mb", "MODES", "RECONSTRUCT_MODES", "DEFAULT_MODE"]
