"""Memory a device must hold to run a GGUF: weights + KV cache + runtime overhead (one place).

`memory_estimate` is the one function `info`, the bench records, ship's report and the app
bundle's README call. It is pure: the caller gives the spec, the file's size and (when a bench
run measured it) the runtime overhead.

The KV cache follows llama.cpp's own allocation (src/llama-kv-cache.cpp), so the figure equals
the "llama_kv_cache: size = ..." line it logs when it loads the file:
- the context is padded to a multiple of KV_CELL_PAD cells;
- K holds n_kv_heads(l)·head_dim per layer and cell, summed over the REAL per-layer KV heads
  (a `deci` file's attention-free layers hold none) — not the first entry nor the maximum of
  the per-layer array, which other estimators take;
- V is the same with flash attention; without it V is stored transposed and every layer is
  padded to the widest layer's n_kv_heads·head_dim (llama.cpp warns "padding V cache"), so a
  heterogeneous model without flash attention pays for its widest layer in every layer;
- a quantized cache (q8_0) needs flash attention (for V) and head_dim a multiple of its block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

from edgeprune.base.errors import SpecError
from edgeprune.shape.spec import ArchSpec

CONTEXTS = (512, 2048, 8192)  # what the report, info and the bundle README show
CACHE_TYPES = ("f16", "q8_0")  # llama.cpp's default cache and the quantized one apps turn on
KV_CELL_PAD = 256  # llama.cpp pads n_ctx to a multiple of 256 cells (n_ctx 300 -> 512 cells)
# The share of a device's RAM a model may plan for: the OS (and on phones the other apps, which
# Android's low-memory killer protects before a foreground app) keep the rest.
USABLE_RAM_SHARE = 0.75
MIB = 2 ** 20


def ram_bytes(ram_gb: float) -> float:
    """A device profile's `ram_gb` in bytes: RAM is sold in binary gigabytes (a "4 GB" Pi has 4 GiB)."""
    return float(ram_gb) * 2 ** 30


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int  # context asked for (tokens)
    kv_cells: int  # cells llama.cpp allocates (n_ctx padded)
    cache_type: str  # "f16" | "q8_0" | "f32"
    flash_attn: bool  # V cache layout: unpadded with flash attention
    weights_bytes: int  # the GGUF file (llama.cpp maps it whole)
    kv_bytes: int  # K + V over every layer
    overhead_bytes: Optional[int]  # runtime overhead measured by a bench run (None: not measured)

    @property
    def total_bytes(self) -> int:
        """weights + KV + the measured overhead (weights + KV alone when none was measured)."""
        return self.weights_bytes + self.kv_bytes + (self.overhead_bytes or 0)

    def fits(self, ram_bytes: float) -> bool:
        """Whether the total stays within the usable share of `ram_bytes` (USABLE_RAM_SHARE)."""
        return self.total_bytes <= USABLE_RAM_SHARE * ram_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def kv_cells(n_ctx: int) -> int:
    """Cells llama.cpp allocates for a context of `n_ctx` tokens."""
    return -(-int(n_ctx) // KV_CELL_PAD) * KV_CELL_PAD


def _block(cache_type: str) -> tuple[int, int]:
    """(elements, bytes) of one block of GGML type `cache_type` (gguf's own table)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType[cache_type.upper()]]
    except KeyError:
        raise SpecError(f"unknown KV cache type {cache_type!r}; use one of {', '.join(CACHE_TYPES)} or f32") from None


def _row_bytes(n: int, cache_type: str) -> int:
    """Bytes of one cache row of `n` elements at GGML type `cache_type`."""
    block, size = _block(cache_type)
    return n // block * size


def kv_cache_bytes(spec: ArchSpec, n_ctx: int, cache_type: str = "f16", flash_attn: Optional[bool] = None) -> int:
    """K + V bytes llama.cpp allocates for `spec` at `n_ctx` tokens (see the module docstring).
    `flash_attn` None: off for a float cache (llama-cpp-python's default), on for a quantized one
    (llama.cpp requires it)."""
    ct = cache_type.lower()
    quantized = ct not in ("f16", "f32", "bf16")
    fa = quantized if flash_attn is None else bool(flash_attn)
    if quantized:
        block = _block(ct)[0]
        if spec.head_dim % block:
            raise SpecError(f"a {ct} KV cache needs head_dim a multiple of {block} (llama.cpp refuses "
                            f"head_dim {spec.head_dim}); use f16")
        if not fa:
            raise SpecError(f"a {ct} V cache needs flash attention (llama.cpp refuses it without)")
    widths = [lay.n_kv_heads * spec.head_dim for lay in spec.layers]
    k = sum(_row_bytes(w, ct) for w in widths)
    v = k if fa else len(widths) * _row_bytes(max(widths), ct)
    return kv_cells(n_ctx) * (k + v)


def memory_estimate(spec: ArchSpec, weights_bytes: int, n_ctx: int, cache_type: str = "f16",
                    overhead_bytes: Optional[int] = None, flash_attn: Optional[bool] = None) -> MemoryEstimate:
    """The memory a device needs to run a file of `weights_bytes` with shape `spec` at `n_ctx`
    tokens and a `cache_type` KV cache, plus the runtime overhead a bench run measured."""
    ct = cache_type.lower()
    fa = (ct not in ("f16", "f32", "bf16")) if flash_attn is None else bool(flash_attn)
    return MemoryEstimate(n_ctx=int(n_ctx), kv_cells=kv_cells(n_ctx), cache_type=ct, flash_attn=fa,
                          weights_bytes=int(weights_bytes), kv_bytes=kv_cache_bytes(spec, n_ctx, ct, fa),
                          overhead_bytes=None if overhead_bytes is None else max(0, int(overhead_bytes)))


def memory_grid(spec: ArchSpec, weights_bytes: int, contexts: Sequence[int] = CONTEXTS,
                cache_types: Sequence[str] = CACHE_TYPES, overhead_bytes: Optional[int] = None
                ) -> list[MemoryEstimate]:
    """memory_estimate at every context and cache type; a cache type the shape cannot use
    (q8_0 with head_dim not a multiple of 32) is left out."""
    out = []
    for ct in cache_types:
        for n in contexts:
            try:
                out.append(memory_estimate(spec, weights_bytes, n, ct, overhead_bytes))
            except SpecError:
                break
    return out


def context_label(n_ctx: int) -> str:
    """512, 2k, 8k: the way apps name context lengths."""
    return f"{n_ctx // 1024}k" if n_ctx % 1024 == 0 else str(n_ctx)


# ----- the tables info, ship's report and the bundle README print ---------------------------------

@dataclass(frozen=True)
class FileMemory:
    """One model file to plan for: its name, shape, size and measured runtime overhead."""

    name: str
    spec: ArchSpec
    weights_bytes: int
    overhead_bytes: Optional[int] = None  # from a bench run's peak RSS (None: not measured)


def memory_markdown(files: Sequence[FileMemory], contexts: Sequence[int] = CONTEXTS,
                    cache_types: Sequence[str] = CACHE_TYPES) -> str:
    """Per file and KV cache type: weights, overhead, and the total (KV in brackets) per context."""
    from edgeprune.base.table import human_bytes, markdown_table

    rows = []
    for f in files:
        grid = memory_grid(f.spec, f.weights_bytes, contexts, cache_types, f.overhead_bytes)
        for ct in cache_types:
            mine = [m for m in grid if m.cache_type == ct]
            if not mine:
                continue
            rows.append([f.name, f"{ct}{' (flash attn)' if mine[0].flash_attn else ''}", human_bytes(f.weights_bytes),
                         human_bytes(f.overhead_bytes) if f.overhead_bytes is not None else "not measured",
                         *[f"{human_bytes(m.total_bytes)} (KV {human_bytes(m.kv_bytes)})" for m in mine]])
    return markdown_table(["file", "KV cache", "weights", "runtime overhead",
                           *[f"total @ {context_label(n)}" for n in contexts]], rows)


def fit_markdown(files: Sequence[FileMemory], devices: Sequence[tuple[str, float]],
                 contexts: Sequence[int] = CONTEXTS) -> tuple[str, list[str]]:
    """(table, warnings): for each device (name, RAM bytes) and file, whether it fits at each
    context with llama.cpp's default f16 KV cache (else whether a q8_0 cache would make it fit),
    within USABLE_RAM_SHARE of the RAM. One warning per file and device that does not fit."""
    from edgeprune.base.table import human_bytes, markdown_table

    rows, warnings = [], []
    for dev, ram in devices:
        for f in files:
            cells, short = [], []
            for n in contexts:
                m = memory_estimate(f.spec, f.weights_bytes, n, "f16", f.overhead_bytes)
                if m.fits(ram):
                    cells.append(f"fits ({human_bytes(m.total_bytes)})")
                    continue
                try:
                    q = memory_estimate(f.spec, f.weights_bytes, n, "q8_0", f.overhead_bytes)
                except SpecError:
                    q = None
                if q is not None and q.fits(ram):
                    cells.append(f"with q8_0 KV only ({human_bytes(q.total_bytes)})")
                else:
                    cells.append(f"**does not fit** ({human_bytes(m.total_bytes)})")
                short.append(context_label(n))
            rows.append([dev, human_bytes(ram), f.name, *cells])
            if short:
                warnings.append(f"{f.name} does not fit {dev} with an f16 KV cache at context "
                                f"{', '.join(short)} (usable {human_bytes(USABLE_RAM_SHARE * ram)} of "
                                f"{human_bytes(ram)} RAM)")
    table = markdown_table(["device", "RAM", "file", *[f"@ {context_label(n)}" for n in contexts]], rows)
    return table, warnings


__all__ = ["CONTEXTS", "CACHE_TYPES", "KV_CELL_PAD", "USABLE_RAM_SHARE", "MemoryEstimate", "kv_cells",
           "kv_cache_bytes", "memory_estimate", "memory_grid", "context_label", "FileMemory", "memory_markdown",
           "fit_markdown", "ram_bytes"]
