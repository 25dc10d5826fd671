"""The one shape spec (docs/DESIGN.md §1).

`ArchSpec` is the only place a model's widths are decided. The model is built from it, surgery
returns a new one, exporters write it, the roofline reads it. It is frozen, validated on
construction (every problem reported at once, naming the layer and the field) and round-trips
through JSON and through a Hugging Face `config.json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from edgeprune.base.errors import SpecError, UnsupportedArchitecture

FAMILIES = ("llama", "qwen2")  # llama: no q/k/v bias (Llama, SmolLM, MobileLLM); qwen2: q/k/v bias

# HF model_type -> our family. Mistral-style checkpoints without sliding window are Llama-shaped.
HF_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "mistral": "llama"}

# Heterogeneous checkpoints are not valid Llama/Qwen2 configs (per-layer lists), so they carry a
# model_type of our own and an auto_map to the modeling file saved beside the weights
# (edgeprune/shape/modeling_edgeprune.py; transformers loads it with trust_remote_code=True).
REMOTE_MODEL_TYPE = "edgeprune"
REMOTE_CODE_FILE = "modeling_edgeprune.py"
# the file itself sits beside this module; exporters copy it from here
REMOTE_CODE_PATH = Path(__file__).resolve().with_name(REMOTE_CODE_FILE)
REMOTE_AUTO_MAP = {"AutoConfig": "modeling_edgeprune.EdgepruneConfig",
                   "AutoModelForCausalLM": "modeling_edgeprune.EdgepruneForCausalLM"}

# Upper bounds far above any released model (Llama-3.1-405B: 126 layers, hidden 16384, ffn 53248,
# 128 heads; the largest vocabularies ~256k), checked before anything is sized from a file's
# numbers: a config.json claiming 10^9 layers is one line, not a list of 10^9 entries.
LIMITS = {"n_layers": 1 << 12, "n_heads": 1 << 12, "n_kv_heads": 1 << 12, "ffn_dim": 1 << 21,
          "hidden_size": 1 << 18, "head_dim": 1 << 12, "vocab_size": 1 << 23,
          "max_position_embeddings": 1 << 26}


def bounded(value: Any, name: str, key: str) -> int:
    """`value` (a file's `key`) as an int within LIMITS[name]; SpecError naming the key otherwise
    (None, floats like 1e400, strings, negative or absurd sizes)."""
    try:
        n = int(value)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(f"{key}={value!r} is not an integer") from None
    if isinstance(value, bool) or (isinstance(value, float) and value != n):
        raise SpecError(f"{key}={value!r} is not an integer")
    if not 0 <= n <= LIMITS[name]:
        raise SpecError(f"{key}={n:,} is outside 0..{LIMITS[name]:,}, far beyond any model: "
                        f"the file is corrupt or not a model's")
    return n


@dataclass(frozen=True)
class LayerSpec:
    """Widths of one decoder layer."""

    n_heads: int  # query heads; 0 together with n_kv_heads = attention removed
    n_kv_heads: int  # key/value heads (GQA groups); n_heads % n_kv_heads == 0
    ffn_dim: int  # SwiGLU intermediate width; 0 = MLP removed

    @property
    def has_attention(self) -> bool:
        return self.n_heads > 0

    @property
    def has_mlp(self) -> bool:
        return self.ffn_dim > 0

    @property
    def group_size(self) -> int:
        """Query heads per KV head (0 when attention is removed)."""
        return self.n_heads // self.n_kv_heads if self.n_kv_heads else 0


@dataclass(frozen=True)
class ArchSpec:
    """Global shape plus one LayerSpec per decoder layer."""

    family: str  # "llama" or "qwen2" (the latter has q/k/v biases)
    vocab_size: int  # rows of the embedding and of the LM head
    hidden_size: int  # residual-stream width, the same in every layer
    head_dim: int  # per-head width, the same in every layer (RoPE rotates all of it)
    layers: tuple[LayerSpec, ...]  # one entry per decoder layer, in order
    rope_theta: float = 10000.0  # RoPE base frequency
    rms_norm_eps: float = 1e-5  # RMSNorm epsilon
    max_position_embeddings: int = 2048  # longest context the model was trained for
    tie_word_embeddings: bool = True  # LM head shares the embedding matrix

    def __post_init__(self) -> None:
        # JSON gives a list of dicts; a tuple of frozen LayerSpecs keeps the frozen spec hashable
        # (is_uniform puts the layers in a set).
        layers = tuple(
            lay if isinstance(lay, LayerSpec) else LayerSpec(**dict(lay)) for lay in self.layers
        )
        object.__setattr__(self, "layers", layers)
        problems = list(_problems(self))
        if problems:  # every problem, but one readable line even for a thousand bad layers
            more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
            raise SpecError("invalid spec: " + "; ".join(problems[:8]) + more)

    # ----- construction helpers -------------------------------------------------------------

    @classmethod
    def uniform(
        cls,
        *,
        family: str = "llama",
        vocab_size: int,
        hidden_size: int,
        n_layers: int,
        n_heads: int,
        n_kv_heads: int,
        ffn_dim: int,
        head_dim: int | None = None,
        **kw: Any,
    ) -> "ArchSpec":
        if head_dim is None:
            if n_heads <= 0 or hidden_size % n_heads:
                raise SpecError(
                    f"head_dim not given and hidden_size {hidden_size} is not divisible by "
                    f"n_heads {n_heads}: pass head_dim explicitly"
                )
            head_dim = hidden_size // n_heads
        layer = LayerSpec(n_heads, n_kv_heads, ffn_dim)
        return cls(family=family, vocab_size=vocab_size, hidden_size=hidden_size,
                   head_dim=head_dim, layers=(layer,) * n_layers, **kw)

    def with_layers(self, layers: Sequence[LayerSpec]) -> "ArchSpec":
        return replace(self, layers=tuple(layers))

    def with_layer(self, index: int, **changes: int) -> "ArchSpec":
        layers = list(self.layers)
        layers[index] = replace(layers[index], **changes)
        return self.with_layers(layers)

    # ----- shape facts ------------------------------------------------------------------------

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def is_uniform(self) -> bool:
        return len(set(self.layers)) <= 1

    @property
    def has_bias(self) -> bool:
        """q/k/v projections carry biases (Qwen2)."""
        return self.family == "qwen2"

    # ----- derived figures (all functions of the spec alone) ----------------------------------

    def layer_param_counts(self, i: int) -> dict[str, int]:
        lay = self.layers[i]
        return {"attention": attention_params(self.hidden_size, self.head_dim, lay.n_heads, lay.n_kv_heads,
                                              self.has_bias),
                "mlp": mlp_params(self.hidden_size, lay.ffn_dim)}

    def param_counts(self) -> dict[str, int]:
        """Parameters split into embedding / attention / mlp / norm (final) / head / total."""
        emb = self.vocab_size * self.hidden_size
        attn = mlp = 0
        for i in range(self.n_layers):
            c = self.layer_param_counts(i)
            attn += c["attention"]
            mlp += c["mlp"]
        head = 0 if self.tie_word_embeddings else emb
        norm = self.hidden_size
        return {"embedding": emb, "attention": attn, "mlp": mlp, "norm": norm, "head": head,
                "total": emb + attn + mlp + norm + head}

    @property
    def n_params(self) -> int:
        return self.param_counts()["total"]

    def matrices(self) -> list[tuple[str, int, int]]:
        """Every 2-D weight as (GGUF-style role, rows, cols): the unit quantization works on.

        Rows are output features, cols the reduction dimension (the quantized row length).
        The LM head appears once; for tied models it is the embedding matrix itself.
        """
        out = [("token_embd", self.vocab_size, self.hidden_size)]
        for lay in self.layers:
            out += self.layer_matrices(lay)
        if not self.tie_word_embeddings:
            out.append(("output", self.vocab_size, self.hidden_size))
        return out

    def layer_matrices(self, lay: LayerSpec) -> list[tuple[str, int, int]]:
        """(role, rows, cols) of one decoder layer of widths `lay` under this spec's globals
        (also for widths not in the spec: what a cut would leave)."""
        h, d = self.hidden_size, self.head_dim
        out = []
        if lay.has_attention:
            out += [("attn_q", lay.n_heads * d, h), ("attn_k", lay.n_kv_heads * d, h),
                    ("attn_v", lay.n_kv_heads * d, h), ("attn_output", h, lay.n_heads * d)]
        if lay.has_mlp:
            out += [("ffn_gate", lay.ffn_dim, h), ("ffn_up", lay.ffn_dim, h), ("ffn_down", h, lay.ffn_dim)]
        return out

    def vector_params(self) -> int:
        """1-D parameters (norms, biases): kept in F32 by llama.cpp whatever the quant type."""
        return self.n_params - sum(r * c for _, r, c in self.matrices())

    def flops_per_token(self, context: int = 0) -> int:
        """Forward FLOPs for one token: 2 per matmul weight (embedding lookup excluded,
        LM head included) plus attention scores and weighted sum over `context` keys."""
        matmul = sum(r * c for role, r, c in self.matrices() if role != "token_embd")
        if self.tie_word_embeddings:
            matmul += self.vocab_size * self.hidden_size  # the head reuses token_embd
        # q·kᵀ and the weighted sum of v: one multiply-add (2 FLOPs) each per head dim per key
        attn = sum(4 * lay.n_heads * self.head_dim * context for lay in self.layers)
        return 2 * matmul + attn

    def kv_cache_bytes_per_token(self, bytes_per_element: int = 2) -> int:
        """K and V for one token over all layers (f16 cache by default, as llama.cpp)."""
        return sum(2 * lay.n_kv_heads * self.head_dim for lay in self.layers) * bytes_per_element

    def weight_bytes(self, qtype: str = "F16") -> int:
        """Bytes of all weights with every matrix at `qtype` and 1-D tensors at F32.

        `qtype` is a GGML type name (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, ...); block sizes
        come from gguf's own constants. Real GGUF files mix types (llama.cpp keeps some tensors
        at higher precision): the exporter reports the real figure from the file.
        """
        return sum(matrix_bytes(r, c, qtype) for _, r, c in self.matrices()) + 4 * self.vector_params()

    # ----- serialisation ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(lay) for lay in self.layers]
        return d

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ArchSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise SpecError(f"unknown spec field(s) {sorted(unknown)}; known: {sorted(known)}")
        try:
            return cls(**dict(d))
        except TypeError as e:  # missing fields
            raise SpecError(f"incomplete spec: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        return cls.from_dict(json.loads(text))

    def to_hf_config(self) -> dict[str, Any]:
        """A transformers config dict. Uniform specs use scalars and the family's own model_type
        (plain AutoModel loads them); heterogeneous ones write per-layer lists for heads, KV heads
        and FFN under model_type "edgeprune" with an auto_map to our remote-code model (the
        checkpoint writer saves that file beside the weights)."""
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[self.family]
        if self.is_uniform:
            lay = self.layers[0]
            heads, kv, ffn = lay.n_heads, lay.n_kv_heads, lay.ffn_dim
        else:
            heads = [lay.n_heads for lay in self.layers]
            kv = [lay.n_kv_heads for lay in self.layers]
            ffn = [lay.ffn_dim for lay in self.layers]
        cfg: dict[str, Any] = {
            "architectures": [arch],
            "model_type": self.family,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "head_dim": self.head_dim,
            "num_hidden_layers": self.n_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": kv,
            "intermediate_size": ffn,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": None,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "use_cache": True,
            "torch_dtype": "float32",
        }
        if not self.is_uniform:
            cfg.update(architectures=["EdgepruneForCausalLM"], model_type=REMOTE_MODEL_TYPE, family=self.family,
                       auto_map=dict(REMOTE_AUTO_MAP))
            del cfg["rope_scaling"]
        elif self.family == "llama":
            cfg.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
        else:
            cfg.update(use_sliding_window=False, sliding_window=None, max_window_layers=self.n_layers)
        return cfg

    @classmethod
    def from_hf_config(cls, cfg: Mapping[str, Any]) -> "ArchSpec":
        """Read a transformers config dict (4.x `rope_theta` or 5.x `rope_parameters`)."""
        model_type = cfg.get("model_type")
        if model_type == REMOTE_MODEL_TYPE and cfg.get("family") in FAMILIES:
            model_type = cfg["family"]  # our heterogeneous checkpoints (see REMOTE_MODEL_TYPE)
        if model_type not in HF_MODEL_TYPES:
            raise UnsupportedArchitecture(
                f"model_type {model_type!r} is not supported; edgeprune handles "
                f"{sorted(HF_MODEL_TYPES)} (Llama / Qwen2 family causal LMs)"
            )
        family = HF_MODEL_TYPES[model_type]
        if cfg.get("mlp_bias") or (family == "llama" and cfg.get("attention_bias")):
            raise UnsupportedArchitecture("Llama checkpoints with attention_bias/mlp_bias are not supported")
        if cfg.get("hidden_act", "silu") != "silu":
            raise UnsupportedArchitecture(f"hidden_act {cfg.get('hidden_act')!r} is not supported (only silu)")
        if family == "qwen2" and cfg.get("use_sliding_window"):
            raise UnsupportedArchitecture("Qwen2 with use_sliding_window=true is not supported")
        rope = cfg.get("rope_parameters") or {}
        scaling = cfg.get("rope_scaling") or rope
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) not in ("default", None):
            raise UnsupportedArchitecture(
                f"rope scaling {scaling.get('rope_type', scaling.get('type'))!r} is not supported (only default RoPE)"
            )
        theta = cfg.get("rope_theta", rope.get("rope_theta", 10000.0))
        try:
            n_layers = bounded(cfg["num_hidden_layers"], "n_layers", "num_hidden_layers")
            hidden = int(cfg["hidden_size"])
            heads = _per_layer(cfg["num_attention_heads"], n_layers, "num_attention_heads")
            kv = _per_layer(cfg.get("num_key_value_heads", cfg["num_attention_heads"]), n_layers,
                            "num_key_value_heads")
            ffn = _per_layer(cfg["intermediate_size"], n_layers, "intermediate_size")
        except KeyError as e:
            raise SpecError(f"config.json lacks {e.args[0]!r}") from None
        head_dim = cfg.get("head_dim")
        if head_dim is None:
            first = next((h for h in heads if h), 0)
            if not first or hidden % first:
                raise SpecError("config.json has no head_dim and hidden_size / num_attention_heads is not whole")
            head_dim = hidden // first
        return cls(
            family=family,
            vocab_size=int(cfg["vocab_size"]),
            hidden_size=hidden,
            head_dim=int(head_dim),
            layers=tuple(LayerSpec(int(a), int(b), int(c)) for a, b, c in zip(heads, kv, ffn)),
            rope_theta=float(theta),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),  # LlamaConfig's default, not ours
            max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
            # LlamaConfig's and Qwen2Config's default: a config without the key is untied
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )


def attention_params(hidden: int, head_dim: int, n_heads: int, n_kv_heads: int, bias: bool) -> int:
    """Parameters of one attention block of these widths: q, k, v, o and its input norm (0 heads:
    the block is absent)."""
    if n_heads == 0:
        return 0
    q, kv = n_heads * head_dim, n_kv_heads * head_dim
    return 2 * hidden * q + 2 * hidden * kv + hidden + ((q + 2 * kv) if bias else 0)


def mlp_params(hidden: int, ffn_dim: int) -> int:
    """Parameters of one SwiGLU MLP: gate, up, down and its norm (0 channels: the block is absent)."""
    return 3 * hidden * ffn_dim + hidden if ffn_dim else 0


def matrix_bytes(rows: int, cols: int, qtype: str) -> int:
    """Bytes of a rows×cols matrix quantized row-wise to GGML type `qtype`."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype.upper()]]
    except KeyError:
        known = ", ".join(t.name for t in GGML_QUANT_SIZES)
        raise SpecError(f"unknown GGML type {qtype!r}; known: {known}") from None
    if cols % block:
        # llama.cpp cannot quantize a row that is not a whole number of blocks: it falls back
        from edgeprune.shape.quant_presets import row_type

        return matrix_bytes(rows, cols, row_type(qtype, cols))
    return rows * (cols // block) * size


def _per_layer(value: Any, n_layers: int, name: str) -> list[int]:
    if isinstance(value, (list, tuple)):
        if len(value) != n_layers:
            raise SpecError(f"config {name} has {len(value)} entries for {n_layers} layers")
        return [int(v) for v in value]
    return [int(value)] * n_layers


def _problems(spec: ArchSpec) -> Iterable[str]:
    """Every reason the spec is invalid (torchtune style: report them all at once)."""
    if spec.family not in FAMILIES:
        yield f"family {spec.family!r} not in {FAMILIES}"
    for name in ("vocab_size", "hidden_size", "head_dim", "max_position_embeddings"):
        v = getattr(spec, name)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            yield f"{name}={v!r} must be a positive integer"
        elif v > LIMITS[name]:
            yield f"{name}={v:,} is above {LIMITS[name]:,}, far beyond any model"
    if len(spec.layers) > LIMITS["n_layers"]:
        yield f"{len(spec.layers):,} layers is above {LIMITS['n_layers']:,}, far beyond any model"
    if isinstance(spec.head_dim, int) and spec.head_dim % 2:
        yield f"head_dim={spec.head_dim} must be even (RoPE rotates pairs)"
    if not spec.layers:
        yield "layers is empty: a model needs at least one decoder layer"
    if not (spec.rope_theta > 0):
        yield f"rope_theta={spec.rope_theta} must be > 0"
    if not (spec.rms_norm_eps > 0):
        yield f"rms_norm_eps={spec.rms_norm_eps} must be > 0"
    for i, lay in enumerate(spec.layers):
        for name in ("n_heads", "n_kv_heads", "ffn_dim"):
            v = getattr(lay, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                yield f"layer {i}: {name}={v!r} must be an integer >= 0"
            elif v > LIMITS[name]:
                yield f"layer {i}: {name}={v:,} is above {LIMITS[name]:,}, far beyond any model"
        if not all(isinstance(getattr(lay, n), int) for n in ("n_heads", "n_kv_heads")):
            continue
        if (lay.n_heads == 0) != (lay.n_kv_heads == 0):
            yield (f"layer {i}: n_heads={lay.n_heads}, n_kv_heads={lay.n_kv_heads}: "
                   "both must be 0 (attention removed) or both > 0")
        elif lay.n_kv_heads and lay.n_heads % lay.n_kv_heads:
            yield (f"layer {i}: n_heads={lay.n_heads} is not divisible by n_kv_heads={lay.n_kv_heads} "
                   "(GQA needs whole groups)")


__all__ = ["ArchSpec", "LayerSpec", "FAMILIES", "LIMITS", "bounded", "matrix_bytes", "attention_params", "mlp_params"]
