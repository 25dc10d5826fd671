"""Our causal LM, built from an ArchSpec by composition (docs/DESIGN.md §2).

Every block gets its own widths from `spec.layers[i]`; nothing here assumes `4 * hidden` or
equal layers. Parameter names follow Hugging Face (`model.layers.{i}.self_attn.q_proj.weight`,
...) so HF Llama / Qwen2 checkpoints load by name and uniform models save back into files
plain transformers loads. The numerics follow transformers' Llama/Qwen2 (RMSNorm in fp32,
RoPE `rotate_half`, repeat_kv GQA, SDPA) so logits agree to 1e-5 in fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.shape.spec import ArchSpec, LayerSpec

# Shape names in the comments below: B batch, T new tokens, T_past cached tokens; the widths are
# the spec's fields. n_heads, n_kv_heads and ffn_dim are the *layer's* own (`spec.layers[i]`),
# hidden_size, head_dim and vocab_size are global.
#
# One layer's cache: (key, value), each (B, n_kv_heads, T_past, head_dim); None when the layer
# has no attention. A whole-model cache is a list with one entry per layer.
LayerKV = Optional[tuple[torch.Tensor, torch.Tensor]]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # as HF: normalise in fp32 (squares overflow fp16 and lose bits in bf16), scale in the
        # input dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., hidden_size)
        return self.weight * x.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for positions, HF's default RoPE (no scaling)."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        # on the CPU even when the model is built on the meta device (a checkpoint is loaded into a
        # meta-built model by assignment): this table is computed, never read from a file
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # position_ids: (B, T) -> cos, sin: (B, T, head_dim)
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :].float()  # (B, T, head_dim/2)
        # both halves get the same frequencies: rotate_half pairs dim i with dim i + head_dim/2
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, head_dim)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # each (..., head_dim/2)
    return torch.cat((-x2, x1), dim=-1)  # (..., head_dim)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    # x: (B, heads, T, head_dim); cos/sin: (B, T, head_dim) broadcast over the heads
    return x * cos[:, None] + rotate_half(x) * sin[:, None]  # (B, heads, T, head_dim)


class Attention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, n_kv_heads: int, head_dim: int, bias: bool):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, n_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, n_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, n_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor],
                past: LayerKV) -> tuple[torch.Tensor, LayerKV]:
        B, T, _ = x.shape  # x: (B, T, hidden_size)
        q = self.q_proj(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, n_heads, T, head_dim)
        k = self.k_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv_heads, T, head_dim)
        v = self.v_proj(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, n_kv_heads, T, head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)  # (B, n_kv_heads, T_past + T, head_dim)
            v = torch.cat([past[1], v], dim=2)  # (B, n_kv_heads, T_past + T, head_dim)
        present = (k, v)  # cached before repeat_kv, so the cache holds n_kv_heads, not n_heads
        groups = self.n_heads // self.n_kv_heads
        if groups > 1:  # repeat_kv: explicit, so ONNX export needs no GQA-aware SDPA
            k = k.repeat_interleave(groups, dim=1)  # (B, n_heads, T_past + T, head_dim)
            v = v.repeat_interleave(groups, dim=1)  # (B, n_heads, T_past + T, head_dim)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None and T > 1, scale=self.head_dim ** -0.5
        )  # (B, n_heads, T, head_dim)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, n_heads * head_dim)
        return self.o_proj(y), present  # (B, T, hidden_size)


class MLP(nn.Module):
    def __init__(self, hidden: int, ffn_dim: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, ffn_dim, bias=False)
        self.up_proj = nn.Linear(hidden, ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # SwiGLU: x (B, T, hidden_size) -> gate, up (B, T, ffn_dim) -> (B, T, hidden_size)
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    """Pre-norm block; either half may be absent (its norm goes with it)."""

    def __init__(self, spec: ArchSpec, lay: LayerSpec):
        super().__init__()
        h = spec.hidden_size
        self.self_attn = self.input_layernorm = None
        self.mlp = self.post_attention_layernorm = None
        if lay.has_attention:
            self.input_layernorm = RMSNorm(h, spec.rms_norm_eps)
            self.self_attn = Attention(h, lay.n_heads, lay.n_kv_heads, spec.head_dim, spec.has_bias)
        if lay.has_mlp:
            self.post_attention_layernorm = RMSNorm(h, spec.rms_norm_eps)
            self.mlp = MLP(h, lay.ffn_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: Optional[torch.Tensor],
                past: LayerKV) -> tuple[torch.Tensor, LayerKV]:
        # x keeps its shape (B, T, hidden_size) through the block: every half adds to the residual
        present = None
        if self.self_attn is not None:
            a, present = self.self_attn(self.input_layernorm(x), cos, sin, mask, past)  # (B, T, hidden_size)
            x = x + a
        if self.mlp is not None:
            x = x + self.mlp(self.post_attention_layernorm(x))  # (B, T, hidden_size)
        return x, present


class Backbone(nn.Module):
    """HF's `model.` prefix: embeddings, layers, final norm."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(spec, lay) for lay in spec.layers)
        self.norm = RMSNorm(spec.hidden_size, spec.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(spec.head_dim, spec.rope_theta)


@dataclass
class CausalLMOutput:
    logits: torch.Tensor  # (B, T, vocab_size)
    past_key_values: Optional[list[LayerKV]] = None
    loss: Optional[torch.Tensor] = None


class EdgeLM(nn.Module):
    """Causal LM for any ArchSpec. `model.spec` always describes the current widths."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec = spec
        self.model = Backbone(spec)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        if spec.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    # -- init -----------------------------------------------------------------------------------
    def init_weights(self, std: float = 0.02, seed: Optional[int] = None) -> "EdgeLM":
        """Normal(0, std) matrices, zero biases, unit norms; output projections scaled by
        1/sqrt(2·n_layers) (GPT-2 residual scaling) so deep thin models start stable."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        resid_std = std / math.sqrt(2 * max(1, self.spec.n_layers))
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):
                    p.fill_(1.0)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    s = resid_std if name.endswith(("o_proj.weight", "down_proj.weight")) else std
                    p.copy_(torch.randn(p.shape, generator=gen) * s)
        return self

    # -- forward --------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor,  # (B, T)
        attention_mask: Optional[torch.Tensor] = None,  # (B, T_past + T), 1 = attend
        position_ids: Optional[torch.Tensor] = None,  # (B, T)
        past_key_values: Optional[list[LayerKV]] = None,
        use_cache: bool = False,
        labels: Optional[torch.Tensor] = None,  # (B, T), -100 ignored; shifted inside
    ) -> CausalLMOutput:
        B, T = input_ids.shape
        past_len = past_length(past_key_values)
        if position_ids is None:
            if attention_mask is not None:
                # left padding: positions count attended tokens, as HF generate does
                pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
                position_ids = pos[:, past_len:past_len + T]
            else:
                position_ids = torch.arange(past_len, past_len + T, device=input_ids.device)[None].expand(B, T)
        x = self.model.embed_tokens(input_ids)  # (B, T, hidden_size)
        cos, sin = self.model.rotary_emb(position_ids, x.dtype)  # each (B, T, head_dim)
        mask = build_mask(attention_mask, B, T, past_len, x.device)  # (B, 1, T, T_past + T) or None
        presents: list[LayerKV] = []
        for i, layer in enumerate(self.model.layers):
            past = past_key_values[i] if past_key_values is not None else None
            x, present = layer(x, cos, sin, mask, past)  # (B, T, hidden_size)
            presents.append(present)
        x = self.model.norm(x)  # (B, T, hidden_size)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        loss = None
        if labels is not None:
            # position t predicts token t + 1: logits (B * (T-1), vocab_size) vs labels (B * (T-1),);
            # the loss in fp32 so a bf16 model's loss is not rounded
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                   ignore_index=-100)
        return CausalLMOutput(logits=logits, past_key_values=presents if use_cache else None, loss=loss)

    # -- generation -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,  # (B, T)
        max_new_tokens: int = 20,
        temperature: float = 0.0,  # 0 = greedy
        top_k: Optional[int] = None,
        eos_token_id: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """Greedy or sampled continuation using the per-layer KV cache."""
        out = self.forward(input_ids, use_cache=True)
        past, seq = out.past_key_values, input_ids
        logits = out.logits[:, -1]  # (B, vocab_size): only the last position predicts the next token
        for _ in range(max_new_tokens):
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
            else:
                scaled = logits.float() / temperature
                if top_k:
                    kth = torch.topk(scaled, min(top_k, scaled.shape[-1])).values[:, -1:]
                    scaled = scaled.masked_fill(scaled < kth, float("-inf"))
                nxt = torch.multinomial(scaled.softmax(-1), 1, generator=generator)  # (B, 1)
            seq = torch.cat([seq, nxt], dim=1)  # (B, T + steps so far)
            if eos_token_id is not None and bool((nxt == eos_token_id).all()):
                break
            out = self.forward(nxt, past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
        return seq

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device


def past_length(past: Optional[list[LayerKV]]) -> int:
    if not past:
        return 0
    for kv in past:
        if kv is not None:
            return kv[0].shape[2]
    return 0


def build_mask(attention_mask: Optional[torch.Tensor], B: int, T: int, past_len: int,
               device: torch.device) -> Optional[torch.Tensor]:
    """Boolean SDPA mask (B, 1, T, past_len+T), True = attend; None when plain causal suffices."""
    if attention_mask is None and past_len == 0:
        return None  # SDPA's is_causal path
    total = past_len + T
    q_pos = torch.arange(past_len, total, device=device)[:, None]  # (T, 1): new tokens sit after the past
    k_pos = torch.arange(total, device=device)[None, :]  # (1, total)
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, T, total)
    if attention_mask is not None:
        mask = mask & attention_mask[:, None, None, :total].bool()  # (B, 1, T, total)
        # a query at a padded position sees no key and SDPA would return NaN: let such rows
        # attend everywhere (their outputs are ignored anyway)
        mask = mask | ~mask.any(-1, keepdim=True)
    return mask.expand(B, 1, T, total)


def build_model(spec: ArchSpec, seed: Optional[int] = 0, dtype: torch.dtype = torch.float32) -> EdgeLM:
    """A freshly initialised model for `spec` (deterministic for a seed)."""
    return EdgeLM(spec).init_weights(seed=seed).to(dtype)
