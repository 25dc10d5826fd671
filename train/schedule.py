"""Learning-rate schedules as pure functions of the step (so a resume needs only the step).

- cosine: linear warmup, then cosine from the peak to `min_lr_ratio * peak`.
- wsd: warmup-stable-decay (Hu et al. 2024, MiniCPM): linear warmup, constant peak, then a
  linear decay to the floor over the last `decay_frac` of the steps. Good for continued
  training and pruning-aware runs whose length is not known in advance.
- constant: linear warmup, then the peak.
"""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, peak: float, schedule: str = "cosine",
          warmup_frac: float = 0.05, decay_frac: float = 0.2, min_lr_ratio: float = 0.1) -> float:
    """Learning rate used for optimizer step `step` (0-based) of `total_steps`."""
    total = max(1, total_steps)
    warmup = int(round(warmup_frac * total))
    floor = peak * min_lr_ratio
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    if schedule == "constant":
        return peak
    if schedule == "cosine":
        span = max(1, total - warmup)
        progress = min(1.0, (step - warmup) / span)
        return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * progress))
    if schedule == "wsd":
        decay = int(round(decay_frac * total))
        start = total - decay
        if step < start or decay == 0:
            return peak
        progress = min(1.0, (step - start + 1) / decay)
        return peak - (peak - floor) * progress
    raise ValueError(f"unknown schedule {schedule!r}")
