"""Calibration: run the model over N×L calibration tokens and collect what scores need.

- gradients of the mean LM loss, left in `param.grad` (Taylor scores), when `grads=True`;
- per input channel of every o_proj and down_proj: mean, variance and L2 norm over all
  calibration tokens (FLAP's fluctuation, Wanda's ‖X‖), through forward hooks;
- per decoder layer: mean cosine similarity between its input and output hidden states
  (Adapt-Pruner's layer importance is its negative).

Deterministic: the batches are taken in order from the given tensor (draw them with a seed via
`edgeprune.data.tokens.calibration_batch`), no randomness here. The data loader is the caller's:
this module takes a LongTensor (ModelOpt's "calibration is passed in" rule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgeprune.base.errors import DataError
from edgeprune.shape.model import EdgeLM


@dataclass
class ChannelStats:
    """Running first/second moments of one projection's input channels."""

    total: torch.Tensor  # (in,) float64 Σx
    total_sq: torch.Tensor  # (in,) float64 Σx²
    count: int = 0  # tokens seen

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()  # (tokens, in)
        self.total += x.sum(0)
        self.total_sq += x.pow(2).sum(0)
        self.count += x.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return (self.total / max(1, self.count)).float()

    @property
    def var(self) -> torch.Tensor:
        m = self.total / max(1, self.count)
        return (self.total_sq / max(1, self.count) - m.pow(2)).clamp(min=0).float()

    @property
    def norm(self) -> torch.Tensor:
        return self.total_sq.sqrt().float()


@dataclass
class Calibration:
    """What one calibration pass measured (per current layer index)."""

    layer_cos: torch.Tensor  # (n_layers,) mean cos(x_in, x_out) per decoder layer
    o_in: dict[int, ChannelStats] = field(default_factory=dict)  # layer -> o_proj input stats
    down_in: dict[int, ChannelStats] = field(default_factory=dict)  # layer -> down_proj input stats
    loss: float = float("nan")  # mean LM loss on the calibration tokens
    has_grads: bool = False

    @property
    def layer_importance(self) -> torch.Tensor:
        """Adapt-Pruner's −mean cos(x_in, x_out), one per layer."""
        return -self.layer_cos


def check_calib(calib: torch.Tensor, vocab_size: int) -> None:
    if not isinstance(calib, torch.Tensor) or calib.dim() != 2 or calib.numel() == 0:
        raise DataError(f"calibration tokens must be a non-empty (n_samples, seq_len) LongTensor, got "
                        f"{type(calib).__name__}{tuple(calib.shape) if isinstance(calib, torch.Tensor) else ''}")
    if calib.shape[1] < 2:
        raise DataError(f"calibration windows of {calib.shape[1]} token(s) are too short (need >= 2)")
    if int(calib.max()) >= vocab_size or int(calib.min()) < 0:
        raise DataError(f"calibration token ids span [{int(calib.min())}, {int(calib.max())}] but the "
                        f"model's vocabulary has {vocab_size} entries: wrong tokenizer?")


def clear_grads(model: EdgeLM) -> None:
    for p in model.parameters():
        p.grad = None


# bytes of one vocabulary-wide float32 tensor per calibration batch (logits, their log-softmax and
# its gradient make three): a batch is cut to fit, so a 128k vocabulary does not take 1.5 GB for
# 8×128 tokens. Losses and gradients are sums weighted per sample: the same for any batch size.
LOGIT_BYTES = 64 * 2**20


LONG_PASS = 5e10  # parameters × calibration tokens from which a pass reports its progress (~1 min on a laptop CPU)


def calibration_batch_size(batch_size: int, seq_len: int, vocab_size: int) -> int:
    """`batch_size`, lowered so one batch's logits fit LOGIT_BYTES (at least one window)."""
    return max(1, min(batch_size, LOGIT_BYTES // max(1, seq_len * vocab_size * 4)))


def taylor_scored(name: str) -> bool:
    """Parameters whose gradients a score reads (Taylor: the projections' weights)."""
    return name.endswith("_proj.weight")


def calibrate(model: EdgeLM, calib: torch.Tensor, *, grads: bool = True, activations: bool = True,
              batch_size: int = 8, all_grads: bool = False, progress: bool = False) -> Calibration:
    """One pass over `calib` (n_samples, seq_len). With `grads`, the projections' param.grad holds
    ∂(mean loss)/∂W afterwards (previous grads are cleared first; call `clear_grads` when done);
    the embedding, head, norms and biases get none (no score reads them, and the embedding's
    gradient alone is a fifth of a small model's weights) — unless `all_grads`: every parameter
    keeps its gradient (the search's hidden-width saliency sums them all, its head-type cost reads
    the head's)."""
    check_calib(calib, model.spec.vocab_size)
    batch_size = calibration_batch_size(batch_size, calib.shape[1], model.spec.vocab_size)
    n_layers = len(model.model.layers)
    cos_sum = torch.zeros(n_layers, dtype=torch.float64)
    cos_count = torch.zeros(n_layers, dtype=torch.float64)
    calibration = Calibration(layer_cos=torch.zeros(n_layers))
    handles = []

    def layer_hook(i):
        def hook(module, args, output):
            x_in, x_out = args[0].detach(), output[0].detach()  # (B, T, hidden)
            cos = torch.nn.functional.cosine_similarity(x_in.float(), x_out.float(), dim=-1)  # (B, T)
            cos_sum[i] += cos.double().sum()
            cos_count[i] += cos.numel()
        return hook

    def input_hook(store, i, width):
        def hook(module, args):
            if i not in store:
                store[i] = ChannelStats(torch.zeros(width, dtype=torch.float64),
                                        torch.zeros(width, dtype=torch.float64))
            store[i].add(args[0])
        return hook

    was_training = model.training
    model.eval()
    clear_grads(model)
    # the parameters whose gradients a score reads get one, whatever their requires_grad said (a
    # teacher frozen for distillation is a model one prunes too); the others none; both restored
    wanted = {n for n, _ in model.named_parameters() if all_grads or taylor_scored(n)} if grads else set()
    frozen = [p for n, p in model.named_parameters() if p.requires_grad and grads and n not in wanted]
    thawed = [p for n, p in model.named_parameters() if not p.requires_grad and n in wanted]
    for p in frozen:
        p.requires_grad_(False)
    for p in thawed:
        p.requires_grad_(True)
    try:
        for i, block in enumerate(model.model.layers):
            handles.append(block.register_forward_hook(layer_hook(i)))
            if activations and block.self_attn is not None:
                o = block.self_attn.o_proj
                handles.append(o.register_forward_pre_hook(input_hook(calibration.o_in, i, o.in_features)))
            if activations and block.mlp is not None:
                dn = block.mlp.down_proj
                handles.append(dn.register_forward_pre_hook(input_hook(calibration.down_in, i, dn.in_features)))
        device = model.device
        losses = []
        from edgeprune.base.progress import progress_bar

        starts = range(0, calib.shape[0], batch_size)
        # a pass long enough to be silent for minutes (a 1B model) says where it is; a small one does not
        shown = progress and model.spec.n_params * calib.numel() >= LONG_PASS
        with torch.set_grad_enabled(grads):
            for start in progress_bar(starts, total=len(starts), desc="calibration pass", unit="batch",
                                      disable=not shown):
                ids = calib[start:start + batch_size].to(device)  # (b, L)
                out = model(ids, labels=ids)
                if grads:
                    # weight each batch by its share of samples: grads of the mean loss overall
                    (out.loss * ids.shape[0] / calib.shape[0]).backward()
                losses.append(out.loss.item() * ids.shape[0])
        calibration.loss = sum(losses) / calib.shape[0]
        calibration.has_grads = grads
    finally:
        for h in handles:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)
        for p in thawed:
            p.requires_grad_(False)
        model.train(was_training)
    calibration.layer_cos = (cos_sum / cos_count.clamp(min=1)).float()
    return calibration


__all__ = ["Calibration", "ChannelStats", "calibrate", "calibration_batch_size", "clear_grads", "check_calib",
           "taylor_scored", "LOGIT_BYTES"]
