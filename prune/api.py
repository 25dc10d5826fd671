"""`prune_model`: the one public entry point of prune/ (ModelOpt style: one function, the
constraint as plain data, calibration passed in).

The constraint is a `PruneRequest` (prune/request.py): a method and one target (`ratio`, the
fraction of parameters REMOVED; `params`, the count to keep, embeddings and head included; or a
decode / prefill rate or speed-up on a device). `PruneResult` is what every pruning returns, one
shot or incremental: the model, its record for edgeprune.json and the one layer table.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import ArchSpec

from .calibration import check_calib
from .methods import get_method
from .reconstruct import reconstruct, summarise, tag_sources
from .request import PruneRequest, ResolvedPrune, min_params
from .spilled_teacher import spill
from .training_seam import DistilFn
from .vocab_axis import VocabOption, vocab_record

log = logging.getLogger(__name__)

TARGET_TOLERANCE = 0.02  # methods land within 2% of the parameter target (tested)


@dataclass
class PruneResult:
    model: EdgeLM  # the pruned model; model.spec describes its widths
    spec_before: ArchSpec
    method: str
    target_params: Optional[int]  # None when a latency-aware method aimed at a decode rate instead
    align: int
    seconds: float
    log: dict[str, Any] = field(default_factory=dict)  # the method's decisions (e.g. adapt's steps)
    cuts: Optional[dict] = None  # param name -> cuts, when record_cuts=True (optimizer state)
    # the vocabulary to trim the model to, when the user asked for trimming (the caller trims: the
    # model comes back with its whole vocabulary, so that ids of the original still fit it)
    vocab: Optional[VocabOption] = None

    @property
    def spec(self) -> ArchSpec:
        return self.model.spec

    @property
    def params_before(self) -> int:
        return self.spec_before.n_params

    @property
    def params_after(self) -> int:
        return self.spec.n_params

    @property
    def ratio_removed(self) -> float:
        return 1 - self.params_after / self.params_before

    def layer_rows(self) -> list[list[Any]]:
        """Per layer: heads, kv heads, ffn before → after and parameters before → after. Layers
        removed by `depth` show as '-' after (matched by the method's dropped_layers)."""
        dropped = set(self.log.get("dropped_layers", []))
        after = iter(range(self.spec.n_layers))
        # layers removed without a record of which (stages of a layer-dropping method): unknown
        unmapped = not dropped and self.spec.n_layers != self.spec_before.n_layers
        rows = []
        for i, b in enumerate(self.spec_before.layers):
            pb = sum(self.spec_before.layer_param_counts(i).values())
            if unmapped:
                rows.append([i, f"{b.n_heads}→?", f"{b.n_kv_heads}→?", f"{b.ffn_dim}→?", pb, "?"])
                continue
            if i in dropped:
                rows.append([i, f"{b.n_heads}→-", f"{b.n_kv_heads}→-", f"{b.ffn_dim}→-", pb, 0])
                continue
            j = next(after)
            a = self.spec.layers[j]
            pa = sum(self.spec.layer_param_counts(j).values())
            rows.append([i, f"{b.n_heads}→{a.n_heads}", f"{b.n_kv_heads}→{a.n_kv_heads}",
                         f"{b.ffn_dim}→{a.ffn_dim}", pb, pa])
        return rows

    def table(self) -> str:
        from edgeprune.base.table import human_count, markdown_table

        t = markdown_table(["layer", "heads", "kv heads", "ffn", "params before", "params after"],
                           self.layer_rows())
        out = (f"{t}\n\nparameters: {human_count(self.params_before)} → {human_count(self.params_after)} "
               f"({self.ratio_removed:.1%} removed; target "
               f"{human_count(self.target_params) if self.target_params else 'a device speed'}, "
               f"method {self.method}, align {self.align}"
               + (f", {self.log['stages']} stages" if self.log.get("incremental") else "") + ")")
        if self.target_params and "target_miss" in self.log:
            out += (f"\nequal widths in every layer ({self.spec.is_uniform and 'plain llama/qwen2 file' or 'per layer'}): "
                    f"{self.log['target_miss']:+.1%} from the parameter target, the closest uniform widths allow")
        rec = self.reconstruction_summary()
        if rec.get("mode", "none") != "none":
            if "skipped" in rec:
                out += f"\nreconstruction skipped: {rec['skipped']}"
            else:
                errs = "; ".join(f"{k[:-6]} {v[0]:.3f} → {v[1]:.3f}" for k, v in rec.items() if k.endswith("_error"))
                out += (f"\nreconstruction ({rec['mode']}, {rec['seconds']:.0f} s, peak RSS {rec['peak_rss_mb']:.0f} MB): "
                        f"relative error of the refitted layers {errs}")
        lat = self.log.get("latency")
        if lat:
            goal = f", target {lat['target_decode_tps']:.1f}" if lat.get("target_decode_tps") else ""
            if lat.get("target_prefill_tps"):
                goal = f", prefill target {lat['target_prefill_tps']:.0f}"
            out += (f"\npredicted on {lat['device']} at {lat['quant']} ({lat['model']} latency model): decode "
                    f"{lat['predicted_decode_tps_before']:.1f} → {lat['predicted_decode_tps']:.1f} tokens/s "
                    f"(×{lat['predicted_speedup']:.2f}{goal}), prefill {lat['predicted_prefill_tps_before']:.0f} → "
                    f"{lat['predicted_prefill_tps']:.0f} tokens/s")
        head = self.log.get("head")
        voc = self.log.get("vocab")
        if voc and voc.get("decided"):
            why = ("the size asked" if voc["size"] == voc["asked"]
                   else f"below the {voc['asked']:,} asked: the coverage floor allows it")
            sizes = ", ".join(f"{o['size']:,}" for o in voc["options"])
            out += f"\nvocabulary trimmed to {voc['size']:,} tokens (the search's choice among {sizes}; {why})"
        if head and head.get("decided"):
            out += (f"\nhead stored at {head['type']} instead of {head['preset_type']} (the search's choice): "
                    f"{head['predicted_decode_bytes_preset_head'] / 1e6:.2f} → {head['predicted_decode_bytes'] / 1e6:.2f} "
                    f"MB read per decoded token")
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-able record (goes into edgeprune.json under "pruning")."""
        staged = {k: self.log[k] for k in ("incremental", "stage", "stages") if k in self.log}
        head = {"head": self.log["head"]} if "head" in self.log else {}  # the head type decided (export reads it)
        voc = {"vocab": self.log["vocab"]} if "vocab" in self.log else {}  # the vocabulary size decided
        return {"method": self.method, **staged, **head, **voc, "ratio_removed": round(self.ratio_removed, 6),
                "params_before": self.params_before, "params_after": self.params_after,
                "target_params": self.target_params, "align": self.align, "seconds": round(self.seconds, 2),
                "widths": [[lay.n_heads, lay.n_kv_heads, lay.ffn_dim] for lay in self.spec.layers],
                "reconstruction": self.reconstruction_summary(),
                "log": {k: v for k, v in self.log.items() if k not in ("history", "reconstruction", "head", "vocab")}}

    def reconstruction_summary(self) -> dict[str, Any]:
        """What reconstruction did, without its per-layer rows (`reconstruct.summarise`)."""
        return summarise(self.log.get("reconstruction") or {"mode": "none"})


# a request's own fields as keywords; "options" is what is left over
REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(PruneRequest) if f.name != "options")


def request_of(fields: dict[str, Any]) -> PruneRequest:
    """A PruneRequest from keyword arguments: its fields by name, the rest the method's options."""
    own = {k: fields.pop(k) for k in REQUEST_FIELDS if k in fields}
    return PruneRequest(**own, options=fields)


def plan_line(request: PruneRequest, calib: torch.Tensor, ranks_reconstructed: bool) -> str:
    """The pruning's steps before the first starts; each long one reports its own progress and ETA."""
    windows = f"{calib.shape[0]}×{calib.shape[1]} calibration tokens"
    cut = f"{request.method} on {windows}"
    if request.method == "search":
        from .search_budget import SEARCH_BUDGET_MINUTES

        try:
            budget = float(request.options.get("budget", SEARCH_BUDGET_MINUTES))
        except (TypeError, ValueError):
            budget = None  # the search refuses it in one line
        if budget is not None:
            cut += f", fitted to {budget:g} minutes (--opt budget)" if budget > 0 else ", no time budget"
        if ranks_reconstructed and request.reconstruct != "none":
            cut += ", every candidate reconstructed"
    steps = [cut]
    if request.reconstruct != "none":
        steps.append("reconstruction of every kept layer towards the original, layer by layer")
    return "prune plan: " + ", ".join(f"{i}) {s}" for i, s in enumerate(steps, 1))


def prune_model(model: EdgeLM, request: Union[PruneRequest, ResolvedPrune, None] = None, *, calib: torch.Tensor,
                seed: int = 0, progress: bool = True, record_cuts: bool = False, distil: Optional[DistilFn] = None,
                vocab: Optional[list[VocabOption]] = None, **fields: Any) -> PruneResult:
    """Prune `model` (in place; also returned in the result) as `request` asks (a PruneRequest, or
    the ResolvedPrune a caller already validated against this model).

    Instead of a request, its fields may be given as keywords (`method="adapt", ratio=0.5`; any
    other keyword is a method option, see METHODS[name].options): they build the same request.
    `calib` is a (n_samples, seq_len) LongTensor of calibration tokens (see
    `edgeprune.data.tokens.calibration_batch`). A latency-aware method reaches a speed target through
    the device's latency model; the others get the parameter count of the uniformly shrunk shape
    predicted to meet it. With a device, the result's log carries the predicted speed before and
    after. With `record_cuts`, `result.cuts` maps parameter names to the index cuts made (for
    slicing optimizer state with `surgery.apply_cuts`). `distil` trains what a method trains while
    it chooses (the search's finalists; prune/training_seam.py): the prune verb and ship supply
    train's KD step; None leaves the method its plain default. `vocab`: when the user asked for
    trimming, the vocabularies the model may ship with (prune/vocab_axis.py, theirs first): a speed
    target is priced with the head at the first one's rows, a method with a vocabulary axis (search)
    may choose a smaller one under a decode target, and `result.vocab` is the one to trim to."""
    if request is None:
        request = request_of(dict(fields))
    elif fields:
        raise PruneError(f"give a PruneRequest or its fields, not both (got {sorted(fields)})")
    spec0 = model.spec
    asked = vocab[0].size if vocab else None
    plan = request if isinstance(request, ResolvedPrune) else request.resolve(spec0, vocab_size=asked)
    if plan.latency is not None and plan.latency.vocab_size != asked:
        plan = plan.request.resolve(spec0, vocab_size=asked)  # a speed target counts the head rows that ship
    request = plan.request
    check_calib(calib, spec0.vocab_size)
    m = get_method(request.method)
    torch.manual_seed(seed)
    record: Optional[dict] = {} if record_cuts else None
    t0 = time.perf_counter()
    latency = plan.latency
    extra = {"latency": latency} if m.latency_aware else {}
    if progress:
        log.info("%s", plan_line(request, calib, m.reconstructs))
    # the uncut model is what reconstruction fits towards; every layer names its origin first
    tag_sources(model)
    with contextlib.ExitStack() as cleanup:
        original = None
        if request.reconstruct != "none" and m.reconstructs:
            # a method that scores reconstructed candidates distils them from the whole original:
            # it gets a copy in memory, and fits them towards the same copy
            original = copy.deepcopy(model).eval()
        elif request.reconstruct != "none":
            # reconstruction reads the original one layer at a time: on disk, not a second copy in memory
            original = spill(model, cleanup.enter_context(tempfile.TemporaryDirectory(prefix="edgeprune-original-")))
        if m.reconstructs:
            extra.update(reconstruct=request.reconstruct, original=original)
        if m.trains:
            extra["distil"] = distil
        if m.vocab_axis and vocab:
            extra["vocab"] = list(vocab)
        model, mlog = m.fn(model, target_params=plan.target_params, calib=calib, align=plan.align, progress=progress,
                           record=record, **extra, **request.options)
        if original is not None:
            mlog["reconstruction"] = reconstruct(model, original, calib, mode=request.reconstruct, progress=progress)
            del original
    if latency is not None and mlog.get("head", {}).get("decided"):
        latency = latency.with_head(mlog["head"]["type"])  # the method lowered the head's type: predict with it
    chosen = None
    if vocab:
        if "vocab" not in mlog:  # a method without the axis: the vocabulary asked for
            mlog["vocab"] = vocab_record(vocab, vocab[0], False, model.spec,
                                         latency.qtype if latency is not None else None,
                                         latency.head_type if latency is not None else None)
        chosen = next(o for o in vocab if o.size == mlog["vocab"]["size"])
        if latency is not None:
            latency = latency.with_vocab(chosen.size)  # predict at the vocabulary that ships
    if latency is not None:
        mlog["latency"] = latency.summary(spec0, model.spec)
    result = PruneResult(model=model, spec_before=spec0, method=request.method, target_params=plan.target_params,
                         align=plan.align, seconds=time.perf_counter() - t0, log=mlog, cuts=record, vocab=chosen)
    target = plan.target_params
    if plan.by_time:
        got = latency.rate_of(model.spec)
        if got < latency.goal * (1 - TARGET_TOLERANCE):
            log.warning("%s: predicted %.1f %s tokens/s on %s, below the target %.1f (a parameter-driven method "
                        "reaches a rate only approximately: search and adapt-latency aim at it)", request.method, got,
                        latency.metric, latency.device, latency.goal)
    elif abs(result.params_after - target) / target > TARGET_TOLERANCE and not m.latency_aware:
        miss = abs(result.params_after - target) / target
        why = ("the closest shape with equal widths in every layer" if "target_miss" in mlog
               else "alignment too coarse?")
        log.warning("%s reached %d parameters, %.1f%% from the target %d at align %d (%s)",
                    request.method, result.params_after, 100 * miss, target, plan.align, why)
    return result


__all__ = ["prune_model", "PruneResult", "PruneRequest", "request_of", "min_params", "TARGET_TOLERANCE"]
