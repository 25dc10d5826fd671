"""Model FLOPs utilisation: achieved training FLOP/s over the accelerator's dense bf16 peak."""

from __future__ import annotations

from typing import Optional

import torch

from edgeprune.shape.spec import ArchSpec

# dense (no sparsity) bf16 tensor-core peaks from the vendors' datasheets, FLOP/s
PEAK_BF16 = {
    "H100": 989e12,  # SXM; PCIe/NVL parts are lower, we report against SXM (conservative MFU)
    "H200": 989e12,
    "H20": 148e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "4090": 165e12,
}


def train_flops_per_token(spec: ArchSpec, seq_len: int) -> int:
    """Forward + backward ≈ 3 × forward (PaLM appendix B: 6N + 12·L·H·Q·T per token)."""
    return 3 * spec.flops_per_token(seq_len)


def peak_flops(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16.items():
        if key in name:
            return value
    return None


def mfu(spec: ArchSpec, seq_len: int, tokens_per_s: float, peak: Optional[float], world: int = 1) -> Optional[float]:
    if not peak:
        return None
    return train_flops_per_token(spec, seq_len) * tokens_per_s / (peak * world)
