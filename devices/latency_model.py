"""A measured latency model per device: decode and prefill time per token as a function
of the per-layer shape and the quant type, fitted to real llama.cpp runs on the device itself.

Why not the roofline alone: for the small models edgeprune ships, decode is not bandwidth-bound.
Every layer costs a fixed number of graph ops (norms, RoPE, softmax, residual adds, thread
barriers between ops) whatever its width, and weights of a few MB sit in the caches. The
roofline predicted 10-50x the measured speed for such models. So the time per token is
modelled as a non-negative sum of what a shape makes the engine do:

    t_decode  = c0 + c_layer·layers + c_attn·attention blocks + c_q·query heads
                + c_mlp·MLP blocks + c_w·layer weight bytes + c_out·output-matrix bytes
                + c_kvb·KV bytes read (at depth + n_gen/2) + c_deci·layers of a `deci` file
    t_prefill = d0 + d_layer·layers + d_attn·attention blocks + d_q·query heads + d_mlp·MLP blocks
                + d_mm·layer matmul FLOPs + d_att·attention FLOPs (at depth + n_prompt/2)
                + d_out·output matmul FLOPs + d_deci·layers of a `deci` file

Heads and layers are their own terms because on CPU they cost far more than their bytes: at ~50%
of SmolLM2-135M's parameters, removing 19 of 30 layers decoded 2.5x faster, cutting heads + FFN
1.8x, FFN alone 1.4x, where bytes alone would give ~2x.

per token, one set of coefficients per GGUF quant type (dequantisation costs differ), fitted by
non-negative least squares on relative error. Bytes are the real type mix llama.cpp writes
(edgeprune/shape/gguf_types.py). The fit uses synthetic GGUFs (runtime_bench/synthetic.py: random
weights, real layouts, quantized by llama.cpp) of varied uniform and heterogeneous shapes, and
reports its error on shapes held out of the fit. The bandwidth roofline stays beside it as the
physical bound. Devices without a table fall back to the roofline plus documented default
overheads (`RooflineModel`), marked as such wherever a prediction is shown.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from edgeprune.base.atomic_io import atomic_write_json
from edgeprune.base.errors import BenchError
from edgeprune.shape.spec import ArchSpec, LayerSpec

log = logging.getLogger(__name__)

# KV heads cost through their bytes (weights and cache): with head_dim fixed, a separate KV-head
# count would be the KV-byte column again and not identifiable
DECODE_FEATURES = ("const", "layers", "attn_blocks", "q_heads", "mlp_blocks", "layer_bytes",
                   "output_bytes", "kv_bytes", "deci_layers", "dram_bytes")
PREFILL_FEATURES = ("const", "layers", "attn_blocks", "q_heads", "mlp_blocks", "matmul_flops", "attn_flops",
                    "output_flops", "deci_layers")
N_PROMPT, N_GEN = 512, 128  # llama-bench's pp512 / tg128: what the predictions are of
TABLE_VERSION = 3  # 2: per-head, output-matrix, context-depth and deci terms; 3: the cache knee
# Candidate sizes of the cache a device's weights stream from (bytes): the fit keeps the one whose
# "bytes beyond it" term explains its points best (the whole model at most: a device whose cache
# holds every shape measured gets no knee).
CACHE_SIZES = tuple(int(m * 2 ** 20) for m in (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256))


def _is_deci(spec: ArchSpec) -> bool:
    """Whether the file of `spec` is llama.cpp's `deci` arch (per-layer widths): its graph reads
    per-layer head arrays, measured ~5-10% slower than `llama` at an equal shape."""
    from edgeprune.files.gguf_format import gguf_layout

    return gguf_layout(spec).arch_name == "deci"


def _layer_counts(spec: ArchSpec) -> tuple[int, int, int, int]:
    """(attention blocks, MLP blocks, query heads, KV heads) summed over the layers."""
    return (sum(1 for lay in spec.layers if lay.has_attention), sum(1 for lay in spec.layers if lay.has_mlp),
            sum(lay.n_heads for lay in spec.layers), sum(lay.n_kv_heads for lay in spec.layers))


def decode_features(spec: ArchSpec, qtype: str, n_gen: int = N_GEN, depth: int = 0,
                    cache_bytes: float = 0.0, head_type: Optional[str] = None) -> np.ndarray:
    """Per-token decode workload of `spec` at GGUF type `qtype` (order: DECODE_FEATURES), for
    `n_gen` tokens generated after `depth` tokens already in the cache. Query heads are their own
    term: each head is a separate attention op (scores, softmax, weighted sum) whose cost at a
    small context is far more than its bytes. The output matrix is apart from the layers' bytes
    (it is read at its own type, Q6_K / Q8_0, and its vocabulary-wide matmul has no per-layer
    overheads). `dram_bytes` are the weight bytes beyond `cache_bytes` (0: no knee), the cache the device's
    weights stream from: measured on a shared x86 VM, a model past ~32 MB decodes at a lower
    bandwidth per byte than one that fits (a linear model without the knee was 60-70% fast on
    100-400M shapes and 15% slow on 40-70M ones). The output matrix is priced by its rows (the
    vocabulary, trimmed or not) and its type (`head_type` when decided, else the preset's): the
    coefficient is per byte, fitted on heads at the presets' Q6_K / Q8_0, so a Q4_0 head is
    priced by its bytes (its dequantization cost per byte is assumed the same)."""
    from edgeprune.shape.gguf_types import gguf_weight_bytes

    n_attn, n_mlp, n_q, _ = _layer_counts(spec)
    b = gguf_weight_bytes(spec, qtype, head_type)
    total = b["total"] - (0 if spec.tie_word_embeddings else b["token_embd"])  # = decode_weight_bytes
    head = b["head"]
    kv = spec.kv_cache_bytes_per_token(2) * (depth + n_gen / 2)  # f16 cache, average context of tg
    return np.array([1.0, spec.n_layers, n_attn, n_q, n_mlp, total - head, head, kv,
                     spec.n_layers * _is_deci(spec), max(0.0, total - cache_bytes) if cache_bytes else 0.0],
                    dtype=np.float64)


def prefill_features(spec: ArchSpec, qtype: str, n_prompt: int = N_PROMPT, depth: int = 0) -> np.ndarray:
    """Per-token prefill workload of `spec` (order: PREFILL_FEATURES); `qtype` is unused by the
    FLOP counts but kept for symmetry (the coefficients are per type)."""
    n_attn, n_mlp, n_q, _ = _layer_counts(spec)
    ctx = depth + n_prompt / 2
    attn = sum(4 * lay.n_heads * spec.head_dim for lay in spec.layers) * ctx
    out = 2 * spec.vocab_size * spec.hidden_size
    return np.array([1.0, spec.n_layers, n_attn, n_q, n_mlp, spec.flops_per_token(0) - out, attn, out,
                     spec.n_layers * _is_deci(spec)], dtype=np.float64)


# ----- fitting ----------------------------------------------------------------------------------------

def nnls(a: np.ndarray, b: np.ndarray, iters: int = 500) -> np.ndarray:
    """Non-negative least squares min ||a·x - b|| s.t. x >= 0 (Lawson-Hanson active set). Small
    problems only (a handful of columns): the per-device fit."""
    m, n = a.shape
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    for _ in range(iters):
        w = a.T @ (b - a @ x)
        if passive.all() or (w[~passive] <= 1e-12).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


def fit_coefficients(features: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """Coefficients (s per unit of each feature) minimising the *relative* error of the time per
    token: rows are divided by the measured time, columns scaled to unit size for conditioning."""
    rows = features / seconds[:, None]
    scale = np.abs(rows).max(axis=0)
    scale[scale == 0] = 1.0
    x = nnls(rows / scale, np.ones(len(seconds)))
    return x / scale


@dataclass
class Point:
    """One measured shape: its spec, quant type and tokens/s (median over repetitions)."""

    spec: dict  # ArchSpec.to_dict()
    qtype: str
    tg_tps: float
    pp_tps: float
    tg_spread: float = 0.0  # (max - min) / median over repetitions
    pp_spread: float = 0.0
    held_out: bool = False  # not used by the fit: measures the model's error
    contended: bool = False  # measured while other processes kept the CPUs busy: neither fitted nor tested


@dataclass
class LatencyTable:
    """A device's fitted latency model: coefficients per quant type, the points it came from and
    its error on held-out shapes. Stored as JSON (no pickles)."""

    device: str
    machine: str  # what it was measured on (CPU, threads, runtime version): a table is only valid there
    n_prompt: int
    n_gen: int
    threads: int
    coefficients: dict  # qtype -> {"decode": [..DECODE_FEATURES], "prefill": [..PREFILL_FEATURES]}
    error: dict  # qtype -> {"decode_mape", "decode_max", "prefill_mape", "prefill_max", "held_out"}
    points: list = field(default_factory=list)  # [Point as dict]
    created: str = ""
    seconds: float = 0.0  # how long the calibration took
    cache_bytes: dict = field(default_factory=dict)  # qtype -> the fitted cache knee (bytes; see decode_features)
    version: int = TABLE_VERSION

    @property
    def quants(self) -> list[str]:
        return sorted(self.coefficients)

    def _coef(self, qtype: str, kind: str) -> np.ndarray:
        q = qtype.upper()
        if q not in self.coefficients:
            raise BenchError(f"the latency table of {self.device} has no {q} (calibrated: {', '.join(self.quants)}); "
                             f"run `edgeprune devices calibrate {self.device} --quant {q}`")
        return np.array(self.coefficients[q][kind])

    def knee(self, qtype: str) -> float:
        return float(self.cache_bytes.get(qtype.upper(), 0.0))

    def decode_tps(self, spec: ArchSpec, qtype: str, depth: int = 0, head_type: Optional[str] = None) -> float:
        f = decode_features(spec, qtype, self.n_gen, depth, self.knee(qtype), head_type)
        return 1.0 / float(f @ self._coef(qtype, "decode"))

    def prefill_tps(self, spec: ArchSpec, qtype: str, depth: int = 0) -> float:
        return 1.0 / float(prefill_features(spec, qtype, self.n_prompt, depth) @ self._coef(qtype, "prefill"))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyTable":
        if d.get("version") != TABLE_VERSION:
            raise BenchError(f"latency table version {d.get('version')} is not {TABLE_VERSION}: recalibrate")
        return cls(**d)


def fit_table(points: Sequence[Point], *, device: str, machine: str, threads: int,
              n_prompt: int = N_PROMPT, n_gen: int = N_GEN, seconds: float = 0.0) -> LatencyTable:
    """Fit one coefficient set per quant type on the non-held-out points; report the relative
    error of tokens/s on the held-out ones (mean absolute and max). Points measured under
    contention are kept in the table but left out of both: a neighbour's load is no cost of
    the shape, and one such point can bend every coefficient."""
    coefficients, error, knees = {}, {}, {}
    for q in sorted({p.qtype for p in points}):
        every = [p for p in points if p.qtype == q]
        pts = [p for p in every if not p.contended]
        fit = [p for p in pts if not p.held_out]
        test = [p for p in pts if p.held_out] or fit
        if len(fit) < len(DECODE_FEATURES):
            raise BenchError(f"{q}: {len(fit)} calibration shapes are too few to fit {len(DECODE_FEATURES)} "
                             "coefficients; use more --shapes")
        specs = {id(p): ArchSpec.from_dict(p.spec) for p in pts}
        knee, dec = fit_decode(fit, specs, q, n_gen)
        pre = fit_coefficients(np.stack([prefill_features(specs[id(p)], q, n_prompt) for p in fit]),
                               np.array([1.0 / p.pp_tps for p in fit]))
        coefficients[q] = {"decode": dec.tolist(), "prefill": pre.tolist()}
        knees[q] = knee
        de = [abs(1.0 / float(decode_features(specs[id(p)], q, n_gen, cache_bytes=knee) @ dec) / p.tg_tps - 1)
              for p in test]
        pe = [abs(1.0 / float(prefill_features(specs[id(p)], q, n_prompt) @ pre) / p.pp_tps - 1) for p in test]
        error[q] = {"decode_mape": float(np.mean(de)), "decode_max": float(np.max(de)),
                    "prefill_mape": float(np.mean(pe)), "prefill_max": float(np.max(pe)),
                    "held_out": sum(1 for p in pts if p.held_out), "fitted_on": len(fit),
                    "contended": len(every) - len(pts)}
    return LatencyTable(device=device, machine=machine, n_prompt=n_prompt, n_gen=n_gen, threads=threads,
                        coefficients=coefficients, error=error, points=[asdict(p) for p in points],
                        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), seconds=seconds,
                        cache_bytes=knees)


def fit_decode(fit: Sequence[Point], specs: dict, qtype: str, n_gen: int) -> tuple[float, np.ndarray]:
    """(cache knee, decode coefficients): for each candidate cache size (CACHE_SIZES up to the
    largest model measured, and none) the coefficients are fitted, and the size whose fit has the
    least mean relative error on these same points is kept (held-out points never choose it)."""
    seconds = np.array([1.0 / p.tg_tps for p in fit])
    biggest = max(decode_weight_total(specs[id(p)], qtype) for p in fit)
    best = None
    for knee in (0.0, *[c for c in CACHE_SIZES if c < biggest]):
        feats = np.stack([decode_features(specs[id(p)], qtype, n_gen, cache_bytes=knee) for p in fit])
        coef = fit_coefficients(feats, seconds)
        err = float(np.mean(np.abs(seconds / (feats @ coef) - 1)))
        if best is None or err < best[0] - 1e-9:
            best = (err, knee, coef)
    return best[1], best[2]


def decode_weight_total(spec: ArchSpec, qtype: str) -> float:
    from edgeprune.shape.gguf_types import decode_weight_bytes

    return float(decode_weight_bytes(spec, qtype))


# ----- where tables live ---------------------------------------------------------------------------

def cache_dir() -> Path:
    from edgeprune.base.paths import cache_root

    return cache_root(create=False) / "latency"


def table_path(device_name: str) -> Path:
    return cache_dir() / f"{device_name}.json"


def save_table(table: LatencyTable, path: Optional[Path] = None) -> Path:
    # atomic: a reader never sees half a table
    return atomic_write_json(Path(path) if path else table_path(table.device), table.to_dict())


def load_table(device_name: str) -> Optional[LatencyTable]:
    """The device's calibrated table: this machine's cache first (`devices calibrate`), then a
    table stored beside the profiles; None when neither exists. A corrupt file is a BenchError."""
    from edgeprune.devices import DEVICE_DIR

    for path in (table_path(device_name), DEVICE_DIR / "latency" / f"{device_name}.json"):
        if path.is_file():
            try:
                return LatencyTable.from_dict(json.loads(path.read_text()))
            except (ValueError, TypeError, KeyError) as e:
                raise BenchError(f"{path}: not a latency table ({type(e).__name__}: {e}); delete it and recalibrate") from None
    return None


# ----- the model a caller uses --------------------------------------------------------------------

# Fallback overheads for devices without a table (per token, seconds). Their order of magnitude is
# that of the local calibration in benchmarks/latency_model.md (x86, llama.cpp CPU backend):
# ~tens of microseconds per layer of graph ops and ~100 µs per token of fixed cost. They keep the
# roofline from promising 10-50x the real speed on small models; they are not measured on the
# device, and predictions using them say "roofline+defaults".
DEFAULT_TOKEN_OVERHEAD_S = 1.0e-4
DEFAULT_LAYER_OVERHEAD_S = 2.0e-5


@dataclass
class LatencyModel:
    """Predicts pp512 / tg128 tokens/s of a spec on one device: from its measured table when it
    has one (`source` = "measured"), else the bandwidth / compute roofline plus default overheads
    (`source` = "roofline+defaults")."""

    device: Any  # DeviceProfile
    table: Optional[LatencyTable] = None

    @property
    def source(self) -> str:
        return "measured" if self.table is not None else "roofline+defaults"

    def decode_tps(self, spec: ArchSpec, qtype: str = "Q4_0", depth: int = 0, head_type: Optional[str] = None) -> float:
        """tg128 tokens/s after `depth` tokens already in the cache (llama-bench's -d), the head
        at `head_type` when decided (else the preset's type)."""
        if self.table is not None and qtype.upper() in self.table.coefficients:
            return self.table.decode_tps(spec, qtype, depth, head_type)
        f = decode_features(spec, qtype, depth=depth, head_type=head_type)
        bw = self.device.efficiency * self.device.bandwidth_gbs * 1e9
        t = (f[5] + f[6] + f[7]) / bw + DEFAULT_TOKEN_OVERHEAD_S + DEFAULT_LAYER_OVERHEAD_S * spec.n_layers
        return 1.0 / t

    def prefill_tps(self, spec: ArchSpec, qtype: str = "Q4_0", depth: int = 0) -> float:
        """pp512 tokens/s after `depth` tokens already in the cache."""
        if self.table is not None and qtype.upper() in self.table.coefficients:
            return self.table.prefill_tps(spec, qtype, depth)
        return max(self._prefill_prior_tps(spec, qtype, depth), self.decode_tps(spec, qtype, depth))

    def _prefill_prior_tps(self, spec: ArchSpec, qtype: str, depth: int) -> float:
        """The uncalibrated prefill estimate from compute alone. It can fall below decode's (a low
        probed FP32 peak, a small model whose decode is overhead-bound), which no runtime shows: a
        prompt fed one token at a time decodes at decode's rate, and batching only adds to that —
        so prefill_tps takes decode's rate as its floor, and the caveat says when it did."""
        f = prefill_features(spec, qtype, depth=depth)
        # quantized GEMM reaches a fraction of the FP32 FMA peak; 0.25 is a documented prior
        t = (f[5] + f[6] + f[7]) / (0.25 * self.device.peak_gflops * 1e9) + DEFAULT_LAYER_OVERHEAD_S * spec.n_layers / 8
        return 1.0 / t

    def decode_seconds(self, spec: ArchSpec, qtype: str = "Q4_0", head_type: Optional[str] = None) -> float:
        return 1.0 / self.decode_tps(spec, qtype, head_type=head_type)

    def layer_decode_seconds(self, spec: ArchSpec, lay: LayerSpec, qtype: str = "Q4_0", n_gen: int = N_GEN) -> float:
        """Decode seconds per token one layer of widths `lay` adds to `spec`'s globals (hidden,
        head_dim, vocab, arch): what removing units of that layer saves. The sum over layers plus
        the per-token and output costs is `decode_seconds`."""
        from edgeprune.shape.gguf_types import layer_bytes

        kv = 2 * lay.n_kv_heads * spec.head_dim * 2 * (n_gen / 2)  # K and V, f16, average context
        own = layer_bytes(spec, lay, qtype)
        # its bytes are beyond the cache when the model already is (the knee is the model's, not one layer's)
        knee = self.table.knee(qtype) if self.table is not None else 0.0
        past = own if knee and decode_weight_total(spec, qtype) > knee else 0.0
        f = np.array([0.0, 1.0, float(lay.has_attention), float(lay.n_heads), float(lay.has_mlp),
                      own, 0.0, kv, float(_is_deci(spec)), past])
        if self.table is not None and qtype.upper() in self.table.coefficients:
            return float(f @ self.table._coef(qtype, "decode"))
        bw = self.device.efficiency * self.device.bandwidth_gbs * 1e9
        return (f[5] + f[7]) / bw + DEFAULT_LAYER_OVERHEAD_S

    def regime(self, spec: ArchSpec, qtype: str) -> str:
        """Empty when `spec` at `qtype` lies where this model was validated; else why not (a
        caveat printed beside the prediction)."""
        if self.table is None or qtype.upper() not in self.table.coefficients:
            why = ("not calibrated on this device: roofline + default overheads, unvalidated" if self.table is None
                   else f"{qtype} not calibrated (have {', '.join(self.table.quants)}): roofline + default overheads")
            if self._prefill_prior_tps(spec, qtype, 0) < self.decode_tps(spec, qtype):
                why += ("; prefill shown at decode's rate, its floor (the compute estimate was lower: "
                        f"`edgeprune devices calibrate {self.device.name}` measures both)")
            return why
        sizes = [ArchSpec.from_dict(p["spec"]).n_params for p in self.table.points]
        lo, hi = min(sizes), max(sizes)
        if not lo / 2 <= spec.n_params <= 2 * hi:
            return (f"{spec.n_params / 1e6:.1f}M parameters is outside the calibrated "
                    f"{lo / 1e6:.1f}M-{hi / 1e6:.1f}M: extrapolated")
        return ""

    def predict(self, spec: ArchSpec, qtype: str, head_type: Optional[str] = None) -> dict[str, Any]:
        """The figures a report shows beside a measurement."""
        return {"model_tg_tps": self.decode_tps(spec, qtype, head_type=head_type),
                "model_pp_tps": self.prefill_tps(spec, qtype),
                "model_source": self.source if qtype.upper() in (self.table.coefficients if self.table else {})
                else "roofline+defaults", "model_caveat": self.regime(spec, qtype)}

    def describe(self) -> str:
        if self.table is None:
            return f"{self.device.name}: roofline + default overheads (not calibrated; `edgeprune devices calibrate {self.device.name}`)"
        errs = ", ".join(f"{q} decode ±{100 * e['decode_mape']:.1f}% (max {100 * e['decode_max']:.0f}%)"
                         for q, e in sorted(self.table.error.items()))
        return f"{self.device.name}: measured {self.table.created} on {self.table.machine}; held-out error {errs}"


def latency_model_for(device: Any) -> LatencyModel:
    return LatencyModel(device=device, table=load_table(device.name))


__all__ = ["DECODE_FEATURES", "PREFILL_FEATURES", "decode_features", "prefill_features", "nnls", "fit_coefficients",
           "Point", "LatencyTable", "fit_table", "load_table", "save_table",
           "table_path", "LatencyModel", "latency_model_for"]
