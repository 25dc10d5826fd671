"""The settings of teacher sampling (`--data teacher:N`, train/teacher_text.py), kept apart
from the sampler so the CLI can show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass

from edgeprune.base.errors import DataError


@dataclass(frozen=True)
class SamplingSettings:
    """How the teacher is sampled; every field is part of the cache key and recorded in meta.json."""

    tokens: int  # document tokens to produce (prompt + answer, what training reads)
    temperature: float = 0.8  # softmax temperature (< 1: fewer incoherent tails than pure sampling)
    top_p: float = 0.95  # nucleus: sample from the smallest set holding this much probability
    max_new_tokens: int = 256  # answer / continuation length cap
    prompt_tokens: int = 32  # seed-text tokens a plain continuation starts from
    chat_fraction: float = 0.5  # share of chat-turn prompts (0 when the tokenizer has no template)
    batch_size: int = 0  # prompts per batch = per shard (0: 256 on a GPU, 16 on the CPU)
    seed: int = 0

    def validate(self) -> None:
        problems = []
        if self.tokens < 1:
            problems.append(f"tokens {self.tokens} must be >= 1")
        if not self.temperature > 0:
            problems.append(f"temperature {self.temperature} must be > 0")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p {self.top_p} must be in (0, 1]")
        if self.max_new_tokens < 1 or self.prompt_tokens < 1:
            problems.append("max_new_tokens and prompt_tokens must be >= 1")
        if not 0 <= self.chat_fraction <= 1:
            problems.append(f"chat_fraction {self.chat_fraction} must be in [0, 1]")
        if self.batch_size < 0:
            problems.append(f"batch_size {self.batch_size} must be >= 0")
        if problems:
            raise DataError("teacher sampling: " + "; ".join(problems))
