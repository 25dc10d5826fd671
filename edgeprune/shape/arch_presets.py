"""Named architecture presets: published shapes of the baselines we compare against, and small
ones that fit CPU tests. A preset is data (a dict of spec fields) resolved into an ArchSpec."""

from __future__ import annotations

from typing import Any, Optional

from edgeprune.base.errors import SpecError
from edgeprune.shape.spec import ArchSpec

# the published shapes, by size (SmolLM and MobileLLM share them), and the two RoPE settings
_135M = dict(hidden_size=576, n_layers=30, n_heads=9, n_kv_heads=3, ffn_dim=1536)
_360M = dict(hidden_size=960, n_layers=32, n_heads=15, n_kv_heads=5, ffn_dim=2560)
_ROPE_2K = dict(tie_word_embeddings=True, rope_theta=10000.0, max_position_embeddings=2048)
_ROPE_8K = dict(tie_word_embeddings=True, rope_theta=100000.0, max_position_embeddings=8192)  # SmolLM2

# name -> uniform shape and the hub name of the published checkpoint (None: ours)
PRESETS: dict[str, dict[str, Any]] = {
    # HuggingFaceTB/SmolLM-135M config: 576 hidden, 30 layers, 9/3 heads, 1536 FFN, 49152 vocab
    "smollm-135m": dict(vocab_size=49152, **_135M, **_ROPE_2K, hub="HuggingFaceTB/SmolLM-135M"),
    "smollm2-135m": dict(vocab_size=49152, **_135M, **_ROPE_8K, hub="HuggingFaceTB/SmolLM2-135M"),
    "smollm-360m": dict(vocab_size=49152, **_360M, **_ROPE_2K, hub="HuggingFaceTB/SmolLM-360M"),
    "smollm2-360m": dict(vocab_size=49152, **_360M, **_ROPE_8K, hub="HuggingFaceTB/SmolLM2-360M"),
    # facebook/MobileLLM-125M / -350M (deep and thin, embedding sharing, GQA)
    "mobilellm-125m": dict(vocab_size=32000, **_135M, **_ROPE_2K, hub="facebook/MobileLLM-125M"),
    "mobilellm-350m": dict(vocab_size=32000, **_360M, **_ROPE_2K, hub="facebook/MobileLLM-350M"),
    # shared/refmodels/smol-llama-32m (our trained reference teacher)
    "smol-llama-32m": dict(vocab_size=16384, hidden_size=384, n_layers=16, n_heads=6, n_kv_heads=2,
                           ffn_dim=1024, head_dim=64, tie_word_embeddings=True,
                           max_position_embeddings=1024, hub=None),
    # small shapes for CPU: the embedded default teacher and unit tests
    # sized so the embedded default trains in ~2-3 minutes on 2 CPU cores (2.0M params) with the
    # embedding at ~26% of the parameters, so a 50% prune still leaves the layers something;
    # rows of 128 are below the 256 k-quants need: Q4_K_M falls back (the export report says so)
    "embedded-teacher": dict(vocab_size=4096, hidden_size=128, n_layers=6, n_heads=4, n_kv_heads=2,
                             ffn_dim=512, tie_word_embeddings=True, max_position_embeddings=512, hub=None),
    "tiny": dict(vocab_size=512, hidden_size=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=160,
                 tie_word_embeddings=True, max_position_embeddings=256, hub=None),
}


def preset_spec(name: str, vocab_size: Optional[int] = None, family: str = "llama") -> ArchSpec:
    """The ArchSpec of a preset; `vocab_size` overrides the preset's (to match a tokenizer)."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    kw = {k: v for k, v in PRESETS[name].items() if k != "hub"}
    if vocab_size is not None:
        kw["vocab_size"] = vocab_size
    return ArchSpec.uniform(family=family, **kw)


def preset_hub_name(name: str) -> Optional[str]:
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]["hub"]
