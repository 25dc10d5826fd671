"""The output head's GGUF type as an axis of the search.

Decode reads every weight byte once per token, and after a cut the output head (the tied
embedding) is most of them, so under a decode-speed target a cheaper head type can buy what
would otherwise cost layers or width. The options are the preset's own head type (llama.cpp's
choice: Q6_K, or Q8_0 when the rows are not whole 256-blocks) and every cheaper type of
`gguf_types.HEAD_TYPES` that the `gguf` package can quantize here (Q8_0, Q5_0, Q4_0; it has no
Q6_K quantizer) and that a row of the hidden size really gets (no fallback).

What each option costs in quality is priced in the units the search already estimates a cut in:
the first-order Taylor change of the calibration loss, Σ|∂L/∂W ⊙ (W_q − W)| over the head, where
W_q is the head quantized to that type and back (removing a unit is the same sum with W_q = 0).
The search keeps the option whose head cost plus the least saliency any shape meeting the target
at that head type removes is smallest, and searches the body at that head type.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from edgeprune.shape.gguf_types import HEAD_TYPES, gguf_weight_bytes
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.quant_presets import GGUF_FLOAT, row_type
from edgeprune.shape.spec import ArchSpec

ROUND_TRIPPED = ("Q8_0", "Q5_0", "Q4_0")  # the head types gguf-py quantizes (it only dequantizes Q6_K)


def default_head_type(spec: ArchSpec, qtype: str) -> Optional[str]:
    """The type llama.cpp gives `spec`'s head in a `qtype` file (None for a float file)."""
    return gguf_weight_bytes(spec, qtype)["head_type"]


def head_options(spec: ArchSpec, qtype: str) -> list[Optional[str]]:
    """None (the preset's own head type) and the cheaper head types worth trying, cheapest last."""
    if qtype.upper() in GGUF_FLOAT:
        return [None]
    own = gguf_weight_bytes(spec, qtype)["head"]
    cheaper = []
    for t in HEAD_TYPES:
        if t not in ROUND_TRIPPED or row_type(t, spec.hidden_size) != t:
            continue
        b = gguf_weight_bytes(spec, qtype, t)["head"]
        if b < own:
            cheaper.append((b, t))
    return [None] + [t for _, t in sorted(cheaper, reverse=True)]


def head_weight(model: EdgeLM) -> torch.nn.Parameter:
    """The matrix a GGUF stores at the head type: the output head (the token embedding when tied)."""
    return model.lm_head.weight


def round_trip(weight: torch.Tensor, head_type: str) -> torch.Tensor:
    """`weight` (V, H) quantized to GGML `head_type` and back, as llama.cpp will read it."""
    from gguf import GGMLQuantizationType, quants

    t = GGMLQuantizationType[head_type]
    w = weight.detach().float().cpu().numpy().astype(np.float32)
    back = quants.dequantize(quants.quantize(w, t), t)
    return torch.from_numpy(np.ascontiguousarray(back)).to(weight.dtype).reshape(weight.shape)


@torch.no_grad()
def head_row_costs(model: EdgeLM, options: Sequence[Optional[str]]) -> dict[Optional[str], torch.Tensor]:
    """Per head option, Σ|∂L/∂W ⊙ (W_q − W)| of each head row (V,): what storing that row at the
    type costs to first order (zeros for the preset's own type, the baseline every option is compared
    with). Per row, so that a trimmed vocabulary pays for the rows it keeps only. Reads the
    calibration gradient, so call it before the gradients are cleared."""
    w = head_weight(model)
    g = w.grad
    out: dict[Optional[str], torch.Tensor] = {}
    for t in options:
        if t is None:
            out[t] = torch.zeros(w.shape[0], dtype=torch.float64)
            continue
        if g is None:
            raise RuntimeError("head_costs needs the calibration gradient of the head")
        out[t] = (g.float() * (round_trip(w, t).float() - w.float())).abs().sum(-1).double().cpu()
    return out


def head_costs(model: EdgeLM, options: Sequence[Optional[str]]) -> dict[Optional[str], float]:
    """Per head option, Σ|∂L/∂W ⊙ (W_q − W)| over the whole head (see `head_row_costs`)."""
    return {t: float(c.sum()) for t, c in head_row_costs(model, options).items()}


def choose_head(costs: dict[Any, float], body: dict[Any, Optional[float]]) -> Any:
    """The option with the least head cost + least body saliency (None in `body`: no shape meets the
    target at that head type); ties go to the dearer head (earlier in the options). None when only
    the preset's type has shapes, or when nothing does (the caller reports that). The keys may be
    any option (the search passes (head type, vocabulary) pairs; then None means nothing has shapes)."""
    best: tuple[float, int, Optional[str]] | None = None
    for i, t in enumerate(costs):
        b = body.get(t)
        if b is None:
            continue
        key = (costs[t] + b, i, t)
        if best is None or key[:2] < best[:2]:
            best = key
    return None if best is None else best[2]


def head_record(spec_before: ArchSpec, spec_after: ArchSpec, qtype: str, head_type: Optional[str],
                options: list[dict[str, Any]]) -> dict[str, Any]:
    """What the search decided about the head, for edgeprune.json (the export reads `type`)."""
    from edgeprune.shape.gguf_types import decode_weight_bytes

    return {"quant": qtype.upper(), "type": head_type or default_head_type(spec_after, qtype),
            "decided": head_type is not None, "preset_type": default_head_type(spec_after, qtype),
            "predicted_decode_bytes": decode_weight_bytes(spec_after, qtype, head_type),
            "predicted_decode_bytes_preset_head": decode_weight_bytes(spec_after, qtype),
            "predicted_decode_bytes_before": decode_weight_bytes(spec_before, qtype), "options": options}
