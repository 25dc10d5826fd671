"""Heterogeneous Llama / Qwen2 models for transformers' remote code.

A pruned model whose layers each have their own widths is not a valid `LlamaConfig` /
`Qwen2Config` (their head and FFN counts are scalars), so `edgeprune` writes such a checkpoint
with `model_type: "edgeprune"`, an `auto_map` pointing here, and a copy of this file beside the
weights, as heterogeneous models on the hub do. Then

    AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)

loads it on transformers 4.57 and 5.x, and `generate`, pipelines and lm-eval's `hf` model use it.

This file is copied verbatim into checkpoints, so it imports nothing but torch and transformers.
The numerics are those of edgeprune's own model (edgeprune/shape/model.py), which equal transformers'
Llama / Qwen2 for uniform widths: RMSNorm in fp32, rotate-half RoPE, repeated KV heads, SDPA.
Per layer: `num_attention_heads[i]`, `num_key_value_heads[i]`, `intermediate_size[i]`; 0 heads
means the layer has no attention (and no `input_layernorm`), 0 FFN means no MLP (and no
`post_attention_layernorm`). `family` "qwen2" gives q/k/v biases.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
import transformers
from torch import nn
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

# Shape names in the comments below: B batch, T new tokens, T_past cached tokens; n_heads,
# n_kv_heads and ffn are the layer's own (`layer_widths()[i]`), hidden_size, head_dim and
# vocab_size are the config's.

_TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
# the output field holding the KV cache: `past_key_values` up to 5.2x, then `cache`
_CACHE_FIELD = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def _per_layer(value: Any, n_layers: int) -> list[int]:
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)] * n_layers


class EdgepruneConfig(PretrainedConfig):
    """Llama / Qwen2 shape with per-layer head, KV-head and FFN counts (lists or scalars)."""

    model_type = "edgeprune"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        family: str = "llama",  # "llama" (no biases) or "qwen2" (q/k/v biases)
        vocab_size: int = 32000,  # rows of the embedding and of the LM head
        hidden_size: int = 576,  # residual width, the same in every layer
        head_dim: int = 64,  # per-head width, the same in every layer
        num_hidden_layers: int = 1,
        num_attention_heads: Union[int, list[int]] = 9,  # per layer; 0 = no attention
        num_key_value_heads: Union[int, list[int], None] = None,  # per layer (GQA groups)
        intermediate_size: Union[int, list[int]] = 1536,  # per layer SwiGLU width; 0 = no MLP
        rms_norm_eps: float = 1e-5,
        rope_theta: float = 10000.0,
        max_position_embeddings: int = 2048,
        tie_word_embeddings: bool = True,
        hidden_act: str = "silu",  # the only activation edgeprune models use
        initializer_range: float = 0.02,
        use_cache: bool = True,
        **kwargs: Any,
    ):
        self.family = family
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.head_dim = head_dim
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.intermediate_size = intermediate_size
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.max_position_embeddings = max_position_embeddings
        self.hidden_act = hidden_act
        self.initializer_range = initializer_range
        self.use_cache = use_cache
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    def layer_widths(self) -> list[tuple[int, int, int]]:
        """(heads, kv_heads, ffn) for every layer."""
        n = self.num_hidden_layers
        return list(zip(_per_layer(self.num_attention_heads, n), _per_layer(self.num_key_value_heads, n),
                        _per_layer(self.intermediate_size, n)))


class EdgepruneRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()  # normalise in fp32, scale in the input dtype (as Llama)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., hidden_size)
        return self.weight * x.to(dtype)


def _rope(position_ids: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    # computed per call rather than held in a buffer: buffers are not in the checkpoint and
    # meta-device initialisation differs between transformers versions
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64,
                                             device=position_ids.device).float() / head_dim))
    freqs = position_ids[:, :, None].float() * inv_freq[None, None, :]  # (B, T, head_dim/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, head_dim)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # each (..., head_dim/2)
    return torch.cat((-x2, x1), dim=-1)  # (..., head_dim)


def _apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, heads, T, head_dim); cos/sin: (B, T, head_dim) broadcast over the heads
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]  # (B, heads, T, head_dim)


class EdgepruneAttention(nn.Module):
    def __init__(self, config: EdgepruneConfig, n_heads: int, n_kv_heads: int, cache_index: int):
        super().__init__()
        h, d, bias = config.hidden_size, config.head_dim, config.family == "qwen2"
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d
        # attention layers are numbered among themselves in the cache, so that cache layer 0
        # (whose length generate reads) is always a layer that really stores keys
        self.cache_index = cache_index
        self.q_proj = nn.Linear(h, n_heads * d, bias=bias)
        self.k_proj = nn.Linear(h, n_kv_heads * d, bias=bias)
        self.v_proj = nn.Linear(h, n_kv_heads * d, bias=bias)
        self.o_proj = nn.Linear(n_heads * d, h, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor],
                cache: Optional[Cache]) -> torch.Tensor:
        B, T, _ = x.shape  # x: (B, T, hidden_size)
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, n_heads, T, head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv_heads, T, head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv_heads, T, head_dim)
        q, k = _apply_rope(q, cos, sin), _apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v, self.cache_index)  # each (B, n_kv_heads, T_past + T, head_dim)
        groups = self.n_heads // self.n_kv_heads
        if groups > 1:  # repeat_kv after the cache update, so the cache holds n_kv_heads only
            k = k.repeat_interleave(groups, dim=1)  # (B, n_heads, T_past + T, head_dim)
            v = v.repeat_interleave(groups, dim=1)  # (B, n_heads, T_past + T, head_dim)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and T > 1,
                                           scale=self.head_dim ** -0.5)  # (B, n_heads, T, head_dim)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, n_heads * head_dim)
        return self.o_proj(y)  # (B, T, hidden_size)


class EdgepruneMLP(nn.Module):
    def __init__(self, hidden: int, ffn: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, ffn, bias=False)
        self.up_proj = nn.Linear(hidden, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # SwiGLU: x (B, T, hidden_size) -> gate, up (B, T, ffn) -> (B, T, hidden_size)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class EdgepruneDecoderLayer(nn.Module):
    """Pre-norm block; either half may be absent, its norm with it."""

    def __init__(self, config: EdgepruneConfig, heads: int, kv: int, ffn: int, cache_index: int):
        super().__init__()
        h = config.hidden_size
        if heads:
            self.input_layernorm = EdgepruneRMSNorm(h, config.rms_norm_eps)
            self.self_attn = EdgepruneAttention(config, heads, kv, cache_index)
        if ffn:
            self.post_attention_layernorm = EdgepruneRMSNorm(h, config.rms_norm_eps)
            self.mlp = EdgepruneMLP(h, ffn)
        self.has_attention, self.has_mlp = bool(heads), bool(ffn)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor],
                cache: Optional[Cache]) -> torch.Tensor:
        # x keeps its shape (B, T, hidden_size) through the block: every half adds to the residual
        if self.has_attention:
            x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)  # (B, T, hidden_size)
        if self.has_mlp:
            x = x + self.mlp(self.post_attention_layernorm(x))  # (B, T, hidden_size)
        return x


class EdgeprunePreTrainedModel(PreTrainedModel):
    config_class = EdgepruneConfig
    base_model_prefix = "model"
    _no_split_modules = ["EdgepruneDecoderLayer"]
    _supports_cache_class = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, std)
            elif isinstance(module, EdgepruneRMSNorm):
                module.weight.fill_(1.0)


class EdgepruneModel(EdgeprunePreTrainedModel):
    """Embeddings, decoder layers, final norm (HF's `model.` prefix)."""

    def __init__(self, config: EdgepruneConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        layers, cache_index = [], 0
        for heads, kv, ffn in config.layer_widths():
            layers.append(EdgepruneDecoderLayer(config, heads, kv, ffn, cache_index))
            cache_index += 1 if heads else 0
        self.layers = nn.ModuleList(layers)
        self.norm = EdgepruneRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.embed_tokens = value

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, past_key_values: Optional[Cache] = None,
                inputs_embeds: Optional[torch.Tensor] = None, use_cache: Optional[bool] = None,
                **kwargs: Any) -> tuple[torch.Tensor, Optional[Cache]]:
        x = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, hidden)
        B, T = x.shape[:2]
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        past_len = past_key_values.get_seq_length() if past_key_values is not None else 0
        if position_ids is None:
            if attention_mask is not None:  # left padding: count attended tokens, as generate does
                pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
                position_ids = pos[:, past_len:past_len + T]
            else:
                position_ids = torch.arange(past_len, past_len + T, device=x.device)[None].expand(B, T)
        cos, sin = _rope(position_ids, self.config.head_dim, self.config.rope_theta, x.dtype)  # each (B, T, head_dim)
        mask = _mask(attention_mask, B, T, past_len, x.device)  # (B, 1, T, T_past + T) or None
        for layer in self.layers:
            x = layer(x, cos, sin, mask, past_key_values)  # (B, T, hidden_size)
        return self.norm(x), past_key_values


def _mask(attention_mask: Optional[torch.Tensor], B: int, T: int, past_len: int,
          device: torch.device) -> Optional[torch.Tensor]:
    """Boolean SDPA mask (B, 1, T, past_len + T), True = attend; None when plain causal will do."""
    if attention_mask is None and past_len == 0:
        return None
    total = past_len + T
    q_pos = torch.arange(past_len, total, device=device)[:, None]  # (T, 1): new tokens sit after the past
    k_pos = torch.arange(total, device=device)[None, :]  # (1, total)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, total)
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :total].bool()  # (B, 1, T, total)
        mask = mask | ~mask.any(-1, keepdim=True)  # fully padded query rows: avoid NaN
    return mask.expand(B, 1, T, total)


class EdgepruneForCausalLM(EdgeprunePreTrainedModel, GenerationMixin):
    # transformers 5 maps each tied parameter to its source; 4.x lists the tied names
    _tied_weights_keys = ({"lm_head.weight": "model.embed_tokens.weight"} if _TRANSFORMERS_5
                          else ["lm_head.weight"])

    def __init__(self, config: EdgepruneConfig):
        super().__init__(config)
        self.model = EdgepruneModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, past_key_values: Optional[Cache] = None,
                inputs_embeds: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                use_cache: Optional[bool] = None, cache_position: Optional[torch.Tensor] = None,
                logits_to_keep: Union[int, torch.Tensor] = 0, **kwargs: Any) -> CausalLMOutputWithPast:
        if past_key_values is None:  # transformers >= 5.2x passes the cache as `cache`
            past_key_values = kwargs.get("cache")
        hidden, cache = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=position_ids, past_key_values=past_key_values,
                                   inputs_embeds=inputs_embeds, use_cache=use_cache)
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden[:, keep, :])  # (B, T_kept, vocab_size)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, **{_CACHE_FIELD: cache})


__all__ = ["EdgepruneConfig", "EdgepruneModel", "EdgepruneForCausalLM"]
