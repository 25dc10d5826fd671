"""`search`: one search over depth, KV groups, query heads, FFN channels and the hidden width,
aimed at quality after recovery, for a parameter or a device-speed target.

1. Score once on the calibration tokens: block influence per layer (ShortGPT's BI = 1 − mean
   cos(x_in, x_out), Minitron's depth ranking) decides which layers stay; first-order Taylor
   |w·∂L/∂w| ranks heads, KV groups, FFN channels and hidden channels (Minitron's width axes).
2. List every uniform shape on the grid that meets the target (prune/search_space.py): a
   parameter count, or a decode rate on the device through its latency model.
3. Per kept depth, the few shapes whose removed units carry the least Taylor saliency (a
   first-order estimate of the loss they cost; dropping a layer counts the saliency of all its
   units) are cut, reconstructed on the distillation half of the calibration windows
   (prune/reconstruct.py: the shape is judged as it will be delivered) and scored by their KL
   to the unpruned model on the other half; the best of
   each depth goes on. Within one depth the cut's KL is a measurement where the saliency sum is an
   estimate that ignores how removed units interact: on SmolLM2-135M it preferred taking one head
   from every KV group over dropping one whole group, which measured 1.5x worse KL after the cut.
4. Rank those finalists by their KL to the unpruned model on the held-out half of the calibration
   windows after a short distillation from it on the other half, starting from the reconstructed
   cut (Minitron's lightweight retraining: the loss right after the cut misjudges depth cuts,
   which recover much faster than it suggests). The distillation is the `distil` callable the
   caller supplies (prune/training_seam.py: the prune verb and ship hand in train's KD step, so
   the proxy trains as recovery will), else a plain KL loop.
5. The depth grid steps by a tenth of the original depth, coarser than the 5% a measured speed
   target lands within: the depths within `refine` layers of the winner's that the grid skipped
   go through steps 3-4 too, and the best over both stages is cut from the original weights and
   returned; recovery proper is `train`'s job.

Every kept layer has the same widths, so the output is a plain llama / qwen2 GGUF.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

from edgeprune.base.errors import PruneError
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.units import taylor_saliency

from ..calibration import Calibration, calibrate, clear_grads
from ..head_axis import choose_head, head_options, head_record, head_row_costs
from ..plan import LayerPlan, apply_plans, plans_for
from ..reconstruct import reconstruct as reconstruct_cut
from ..search_budget import SEARCH_BUDGET_MINUTES, DEFAULTS, Costs, Counts, fit_counts, refine_seconds, with_asked
from ..search_journal import SearchJournal
from ..search_space import AXES, Candidate, candidates
from ..surgery import remove_hidden_channels
from ..training_seam import DistilFn, PlainDistil, settings_of, token_batches
from ..vocab_axis import VocabOption, vocab_record
from .registry import register_method

if TYPE_CHECKING:
    from ..surgery import CutRecord

log = logging.getLogger(__name__)


def layer_order(cal: Calibration) -> list[int]:
    """Layers from least to most important by block influence (ties: later layers first)."""
    bi = (1.0 - cal.layer_cos).tolist()
    return sorted(range(len(bi)), key=lambda i: (bi[i], -i))


def dropped_layers(order: Sequence[int], n_keep: int) -> list[int]:
    return sorted(order[: len(order) - n_keep])


def saliency_removed(cand: Candidate, sal: dict[str, torch.Tensor], plans: list[LayerPlan],
                     order: Sequence[int], hidden0: int) -> float:
    """First-order estimate of the loss a candidate's cut costs: the Taylor saliency of every unit
    it removes (all units of a dropped layer; the weakest heads, groups and channels of a kept
    one; the weakest hidden channels)."""
    drop = set(dropped_layers(order, cand.n_layers))
    total = 0.0
    for p in plans:
        i = p.index
        units = [sal.get(f"q.{i}"), sal.get(f"kvh.{i}"), sal.get(f"ffn.{i}")]
        if i in drop:
            total += sum(float(u.sum()) for u in units if u is not None)
            continue
        kept = p.copy()
        a = cand.attn
        kept.keep_strongest(a.n_kv if a else 0, a.group if a else 0, cand.ffn)
        heads = {h for j in kept.groups for h in kept.heads[j]}
        if units[0] is not None:
            total += sum(float(units[0][h]) for h in range(p.n_heads0) if h not in heads)
            total += sum(float(units[1][j]) for j in range(p.n_kv0) if j not in kept.groups)
        if units[2] is not None:
            keep = set(kept.ffn)
            total += sum(float(units[2][c]) for c in range(p.ffn0) if c not in keep)
    hid = sal["hidden"]
    total += float(hid.sort().values[: hidden0 - cand.hidden].sum())
    return total


def cut(model: EdgeLM, cand: Candidate, plans: list[LayerPlan], order: Sequence[int], hidden_scores: torch.Tensor,
        record: Optional[CutRecord] = None) -> tuple[EdgeLM, dict[str, Any]]:
    """Cut `model` (in place) to `cand`: widths in the kept layers (each layer's strongest units),
    then the dropped layers, then the weakest hidden channels. Returns the model and what went."""
    drop = dropped_layers(order, cand.n_layers)
    a = cand.attn
    ps = []
    for p in plans:
        q = p.copy()
        if p.index in drop:
            q.groups, q.heads, q.ffn = [], {}, []  # emptied: apply_plans removes the layer
        else:
            q.keep_strongest(a.n_kv if a else 0, a.group if a else 0, cand.ffn)
        ps.append(q)
    model = apply_plans(model, ps, record)  # an emptied plan removes its layer
    assert model.spec.n_layers == cand.n_layers, (model.spec.n_layers, cand.n_layers)
    gone = sorted(hidden_scores.argsort()[: model.spec.hidden_size - cand.hidden].tolist())
    if gone:
        model = remove_hidden_channels(model, gone, record)
    return model, {"dropped_layers": drop, "hidden_removed": gone}


def split_calibration(calib: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(distillation part, held-out part): the first half and the second half of the windows.
    Measured on SmolLM2-135M at 50% (benchmarks/search_proxy.md), a held-out quarter misranked the
    finalists whether it held 4 or 36 windows; both half splits tried (8/8 and 24/24) ranked them
    as the equal recovery did."""
    n_train = max(1, calib.shape[0] // 2)
    return calib[:n_train], (calib[n_train:] if calib.shape[0] > n_train else calib[:1])


def distilled_loss(student: EdgeLM, teacher: EdgeLM, calib: torch.Tensor, tokens: int, distil: DistilFn,
                   batch_size: int) -> tuple[float, float, list[float]]:
    """(KL to `teacher`, LM loss, the distillation's loss record) of `student` on the held-out half
    of `calib` after `distil` trained it from `teacher` on the other half for `tokens` tokens. The
    KL ranks: recovery distils from the same teacher, and it separated the finalists more widely
    than the LM loss on the same tokens."""
    train, held = split_calibration(calib)
    student.requires_grad_(True)  # a cut copy trained here, whatever the model it came from had frozen
    record = distil(student, teacher, token_batches(train, batch_size), tokens) if tokens > 0 else []
    student.eval()
    kl, lm = held_scores(student, teacher, held, batch_size)
    return kl, lm, [float(x) for x in record]


@torch.no_grad()
def teacher_logprobs(teacher: EdgeLM, held: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """The teacher's log-probabilities on `held`, batch by batch: computed once when many students
    are scored on the same windows."""
    step = max(1, batch_size)
    return [teacher(held[i:i + step]).logits.float().log_softmax(-1) for i in range(0, held.shape[0], step)]


@torch.no_grad()
def held_scores(student: EdgeLM, teacher: EdgeLM, held: torch.Tensor, batch_size: int,
                teacher_lp: Optional[list[torch.Tensor]] = None) -> tuple[float, float]:
    """(mean per-token KL(teacher || student), mean LM loss) of `student` on `held`; `teacher_lp`
    is `teacher_logprobs(teacher, held, batch_size)` when the caller has it already."""
    kl_sum, lm_sum, n = 0.0, 0.0, 0
    step = max(1, batch_size)
    for b, i in enumerate(range(0, held.shape[0], step)):
        ids = held[i:i + step]
        out = student(ids, labels=ids)
        t = teacher_lp[b] if teacher_lp is not None else teacher(ids).logits.float().log_softmax(-1)
        kl = torch.nn.functional.kl_div(out.logits.float().log_softmax(-1), t, log_target=True,
                                        reduction="none").sum(-1)
        kl_sum += float(kl.sum())
        lm_sum += float(out.loss) * ids.shape[0]  # the loss is a mean over the window's tokens
        n += ids.shape[0]
    return kl_sum / (n * held.shape[1]), lm_sum / n


def per_depth_shapes(cands: Sequence[Candidate], est: dict[Candidate, float], screen: int) -> dict[int, list[Candidate]]:
    """Per kept depth, the `screen` shapes whose removed units carry the least saliency."""
    out: dict[int, list[Candidate]] = {}
    for c in sorted(cands, key=lambda c: (est[c], -c.params)):
        out.setdefault(c.n_layers, [])
        if len(out[c.n_layers]) < screen:
            out[c.n_layers].append(c)
    return out


def refine_depths(winner: int, evaluated: Sequence[int], n_layers: int, refine: int) -> list[int]:
    """Depths within `refine` layers of the grid winner's that the grid skipped. The grid steps by a
    tenth of the depth (3 layers of 30), coarser than the 5% a measured speed target lands within."""
    near = range(max(1, winner - refine), min(n_layers, winner + refine) + 1)
    return [d for d in near if d not in set(evaluated)]


@register_method("search", "one search over depth, heads, KV groups, FFN and hidden width; finalists ranked "
                 "by held-out KL to the original after a short distillation; equal widths in every kept layer",
                 {"budget": f"minutes the search aims to finish in on this machine, its calibration included "
                           f"(default {SEARCH_BUDGET_MINUTES:g}; 0: no limit). After its first shape is cut and scored, "
                           "the counts below that you did not set are lowered (screen, then finalists, refine, "
                           "steps) until the measured estimate fits; the delivered model's reconstruction "
                           "follows. Where even one shape per depth and no distillation does not fit, it says "
                           "so and runs that",
                 "steps": "distillation steps per finalist (default 8)",
                  "lr": "learning rate of the built-in distillation, used only when no trainer is supplied "
                        "(default 3e-4; the prune verb and ship supply train's KD step and its settings)",
                  "finalists": "shapes distilled (default 7: the best per kept depth)",
                  "screen": "shapes per kept depth cut and scored by KL right after the cut before one goes on "
                            "(default 4; 1: the Taylor saliency alone picks it)",
                  "refine": "after the depth grid, the depths within N layers of its winner are searched too "
                            "(default 1; 0: the grid only)",
                  "axes": "comma-separated subset of depth,heads,ffn,hidden (default all)",
                  "fit_windows": "calibration windows each candidate's reconstruction is fitted on (default 8; the "
                                 "delivered model is reconstructed on all of them)",
                  "batch_size": "calibration / distillation batch size (default 4)",
                  "head": "auto (default): under a decode target the output head's GGUF type is an axis too "
                          "(the preset's, or a cheaper one of Q8_0 / Q5_0 / Q4_0 where it buys the speed at the "
                          "least estimated loss); keep: the preset's type",
                  "journal": "file the finished candidates' scores are written to as they are measured; a rerun "
                             "with the same model, tokens and options resumes after them (prune sets it)"},
                 latency_aware=True, needs_device=False, needs_uniform=True, rates=("decode", "prefill"),
                 reconstructs=True, trains=True, vocab_axis=True)
def run(model: EdgeLM, *, target_params: Optional[int], calib: torch.Tensor, align: int, progress: bool = True,
        latency: Any = None, steps: Optional[int] = None, lr: float = 3e-4, finalists: Optional[int] = None,
        screen: Optional[int] = None, refine: Optional[int] = None, budget: float = SEARCH_BUDGET_MINUTES,
        axes: str = ",".join(AXES), reconstruct: str = "none", fit_windows: int = 8,
        journal: Optional[str] = None, original: Optional[EdgeLM] = None,
        batch_size: int = 4, record: Optional[CutRecord] = None, distil: Optional[DistilFn] = None,
        head: str = "auto", vocab: Optional[Sequence[VocabOption]] = None) -> tuple[EdgeLM, dict]:
    axis_list = [a.strip() for a in str(axes).split(",") if a.strip()]
    bad = set(axis_list) - set(AXES)
    if bad or not axis_list:
        raise PruneError(f"search axes {sorted(bad) or axes!r}: choose from {','.join(AXES)}")
    started = time.perf_counter()
    spec0 = model.spec
    # the counts the user set stay as set; the others come from the budget once a shape is measured
    try:
        asked = {k: (None if v is None else int(v)) for k, v in
                 {"screen": screen, "finalists": finalists, "refine": refine, "steps": steps}.items()}
        budget = float(budget)
    except (TypeError, ValueError) as e:
        raise PruneError(f"search option: {e} (screen, finalists, refine and steps are whole numbers, budget "
                         "is minutes)") from None
    if not budget >= 0 or math.isinf(budget):
        raise PruneError(f"search budget={budget}: minutes, 0 for no limit")
    counts = with_asked(DEFAULTS, asked)  # the defaults, until the budget is applied
    steps, finalists, screen, refine = counts.steps, counts.finalists, counts.screen, counts.refine
    batch_size, lr = int(batch_size), float(lr)
    # the finalists' short distillation: the supplied trainer (train's KD step), else the plain one
    distil = distil if distil is not None else PlainDistil(lr)
    # the distillation: `steps` batches of the distillation half, one optimizer step each
    distil_batches = token_batches(split_calibration(calib)[0], batch_size)

    def tokens_of(n_steps: int) -> int:
        return sum(distil_batches[s % len(distil_batches)].numel() for s in range(n_steps))

    if screen < 1:
        raise PruneError(f"search screen={screen}: at least 1 shape per kept depth")
    if refine < 0:
        raise PruneError(f"search refine={refine}: 0 or more layers either side of the grid's winner")
    goal = getattr(latency, "goal", None) if target_params is None else None
    # the head's type is an axis under a decode target: it sets what each decoded token reads
    head = str(head).lower()
    if head not in ("auto", "keep"):
        raise PruneError(f"search head={head!r}: auto (the search may lower the head's type) or keep")
    decode_goal = bool(goal) and latency.metric == "decode"
    head_opts = head_options(spec0, latency.qtype) if decode_goal and head == "auto" else [None]
    # the vocabulary is an axis only when the user asked for trimming (`vocab`: their size first,
    # then the smaller ones they allowed) and only under a decode target; otherwise theirs, as given
    vocab_opts: list[Optional[VocabOption]] = list(vocab or []) or [None]
    if not decode_goal:
        vocab_opts = vocab_opts[:1]
    # (head type, vocabulary index) pairs, the dearest first: ties go to the larger vocabulary
    options = [(h, v) for v in range(len(vocab_opts)) for h in head_opts]
    t_cal = time.perf_counter()
    cal = calibrate(model, calib, grads=True, activations=False, batch_size=batch_size,
                    all_grads="hidden" in axis_list or len(head_opts) > 1, progress=progress)
    # one distillation step (a student's forward and backward, the teacher's forward) is priced at
    # one calibration batch of the uncut model until a finalist's distillation measures it
    step_s = (time.perf_counter() - t_cal) / max(1, math.ceil(calib.shape[0] / batch_size))
    sal = {k: v.cpu() for k, v in taylor_saliency(dict(model.named_parameters()), spec0).items()}
    plans = plans_for(model, "taylor", cal, align)
    row_cost = head_row_costs(model, head_opts)  # reads the calibration gradient of the head
    clear_grads(model)
    order = layer_order(cal)

    def head_cost(h: Optional[str], v: int) -> float:
        """The head's quantization cost over the rows the vocabulary keeps."""
        opt = vocab_opts[v]
        return float(row_cost[h].sum() if opt is None else row_cost[h][list(opt.trim.kept)].sum())

    def trim_cost(v: int) -> float:
        opt = vocab_opts[v]
        return 0.0 if opt is None else opt.cost(cal.loss)

    def aim_at(h: Optional[str], v: int) -> Any:
        opt = vocab_opts[v]
        return latency.with_head(h).with_vocab(opt.size if opt else latency.vocab_size) if latency else None

    aim = latency  # the target at the head type and vocabulary the body is searched at

    def shapes(depths: Optional[Sequence[int]] = None) -> list[Candidate]:
        speed = aim.rate_of if aim is not None else None  # the rate aimed at (decode unless prefill)
        return candidates(spec0, align, target_params=target_params, decode_tps=goal, decode_tps_of=speed,
                          axes=axis_list, depths=depths)

    per_option: dict[tuple[Optional[str], int], list[Candidate]] = {}
    est: dict[Candidate, float] = {}
    for o in options:
        aim = aim_at(*o)
        per_option[o] = shapes()
        est.update((c, saliency_removed(c, sal, plans, order, spec0.hidden_size)) for c in per_option[o]
                   if c not in est)
    least = {o: min((est[c] for c in cs), default=None) for o, cs in per_option.items()}
    cost = {o: head_cost(*o) + trim_cost(o[1]) for o in options}
    chosen_option = choose_head(cost, least) if len(options) > 1 else options[0]
    head_type, vi = chosen_option if chosen_option is not None else (None, 0)
    aim = aim_at(head_type, vi)
    cands = per_option.get(chosen_option, []) if chosen_option is not None else []
    if not cands:
        what = f"{goal:.1f} tokens/s" if goal else f"{target_params} parameters"
        sizes = [o.size for o in vocab_opts if o is not None]
        raise PruneError(f"no shape on the search grid meets {what} (axes {','.join(axis_list)}"
                         + (f"; head types {', '.join(h or 'preset' for h in head_opts)}" if len(head_opts) > 1 else "")
                         + (f"; vocabularies {', '.join(f'{n:,}' for n in sizes)}" if sizes else "")
                         + "); try more axes, a smaller --align, or a nearer target")
    est = {c: est[c] for c in cands}
    from edgeprune.base.progress import progress_bar

    from edgeprune.base.hashing import array_digest, json_digest, state_dict_digest

    # the steps are not in the key: a finalist's distilled scores are filed under its step count
    key = json_digest({"model": state_dict_digest(model.state_dict()), "calib": array_digest(calib.cpu().numpy()),
                       "options": [batch_size, reconstruct, fit_windows, align, axis_list],
                       "distil": settings_of(distil)})
    book = SearchJournal(journal, key)
    resumed = book.resumed
    # the uncut model the candidates are scored against (prune_model's copy when it keeps one)
    teacher = original if original is not None else copy.deepcopy(model).eval()
    fit_part, held = split_calibration(calib)
    # a candidate's reconstruction only has to rank it: a few windows of the distillation half,
    # so that reconstructing every screened shape costs about what scoring it does
    fit_part = fit_part[:max(1, int(fit_windows))]

    def cut_candidate(c: Candidate) -> EdgeLM:
        """A copy of the model cut to `c`, reconstructed as prune_model will deliver it."""
        student, _ = cut(copy.deepcopy(model), c, plans, order, sal["hidden"])
        if reconstruct != "none":
            reconstruct_cut(student, teacher, fit_part, mode=reconstruct, batch_size=batch_size, progress=False)
        return student

    teacher_lp = teacher_logprobs(teacher, held, batch_size)
    after_cut: dict[Candidate, tuple[float, float]] = {}

    def score_cut(c: Candidate) -> None:
        """`c` cut, reconstructed and scored by its held-out KL right after the cut (once)."""
        if c in after_cut:
            return
        done = book.get("cut", c.label())
        if done is None:
            student = cut_candidate(c)
            done = list(held_scores(student, teacher, held, batch_size, teacher_lp))
            del student
            book.put("cut", c.label(), done)
        after_cut[c] = tuple(done)
    screened: list[Candidate] = []
    rows: list[dict] = []

    def screen_best(per_depth: dict[int, list[Candidate]]) -> list[Candidate]:
        """Cut every screened shape; the one with the least KL right after its cut, per depth."""
        todo = [c for cs in per_depth.values() for c in cs]
        screened.extend(todo)
        for c in progress_bar(todo, desc="search: scoring cuts", unit="shape", disable=not progress or screen == 1):
            score_cut(c)
        return [min(cs, key=lambda c: (after_cut[c][0], est[c])) for cs in per_depth.values()]

    def distil_finalists(final: Sequence[Candidate], stage: str) -> None:
        what = "distilling" if steps > 0 else "ranking"  # no steps: the cut's own KL ranks them
        for c in progress_bar(final, desc=f"search: {what} {stage}", unit="shape", disable=not progress):
            kl_cut, lm_cut = after_cut[c]
            done = book.get("distil", f"{c.label()}@{steps}")
            if done is None:
                t0 = time.perf_counter()
                student = cut_candidate(c)
                done = (list(distilled_loss(student, teacher, calib, tokens_of(steps), distil, batch_size))
                        if steps > 0 else [kl_cut, lm_cut, []])
                del student
                book.put("distil", f"{c.label()}@{steps}", list(done))
                if steps > 0:  # what a step costs here, less the cut and reconstruction priced by screening
                    measured["step_s"] = max(0.0, time.perf_counter() - t0 - measured["screen_s"]) / steps
            kl, loss, losses = done
            rows.append({"shape": c.label(), "n_layers": c.n_layers, "hidden": c.hidden,
                         "heads": c.attn.n_heads if c.attn else 0, "kv_heads": c.attn.n_kv if c.attn else 0,
                         "ffn": c.ffn, "params": c.params, "predicted_decode_tps": c.decode_tps,
                         "saliency_removed": round(est[c], 6), "kl_after_cut": round(kl_cut, 4),
                         "loss_after_cut": round(lm_cut, 4), "kl_after_distill": round(kl, 4),
                         "loss_after_distill": round(loss, 4), "distill_losses": [round(x, 4) for x in losses],
                         "stage": stage, "_cand": c})
            log.info("search: %s -> held-out KL %.3f (loss %.3f) after %d distillation steps (KL %.3f right after "
                     "the cut)", c.label(), kl, loss, steps, kl_cut)

    def winner() -> dict:
        return min(rows, key=lambda r: (r["kl_after_distill"], -r["params"]))

    # the budget: the first shape the grid screens is cut and scored now, timed, and the counts the
    # user did not set are fitted to the minutes left (a resumed search reuses the counts it chose)
    measured = {"screen_s": 0.0, "step_s": step_s}
    by_depth = per_depth_shapes(cands, est, screen)
    t0 = time.perf_counter()
    score_cut(min((cs[0] for cs in by_depth.values()), key=lambda c: est[c]))
    measured["screen_s"] = time.perf_counter() - t0
    limit_s = budget * 60.0 if budget > 0 else None
    budget_rec: dict[str, Any] = {"minutes": budget, "set_by_user": sorted(k for k, v in asked.items() if v is not None)}
    # the counts chosen are filed under the budget and the user's own counts: a rerun with the same
    # ones resumes with the same search, however fast its first shape comes back from the journal
    budget_key = json_digest({"minutes": budget, "asked": asked})
    kept = book.get("budget", budget_key)
    if kept is not None and len(kept) == 4:
        counts = Counts(*[int(x) for x in kept])
        budget_rec["resumed"] = True
    else:
        left = None if limit_s is None else limit_s - (time.perf_counter() - started)
        costs = Costs(measured["screen_s"], measured["step_s"])
        counts, est_s = fit_counts(asked, len(by_depth), costs, left)
        full, full_s = fit_counts(asked, len(by_depth), costs, None)
        budget_rec.update(estimated_s=round(est_s, 1), defaults_estimated_s=round(full_s, 1))
        book.put("budget", budget_key, [counts.screen, counts.finalists, counts.refine, counts.steps])
        if counts != full:
            fits = left is not None and est_s <= left
            log.info("search: %s after %.0f s of %g budgeted minutes: screening %d shape(s) per depth over %d depths, "
                     "%d finalist(s) x %d steps, refine %d: about %.0f s more (the full counts would take about "
                     "%.0f s)%s", "fitted" if fits else "still over", time.perf_counter() - started, budget,
                     counts.screen, len(by_depth), counts.finalists, counts.steps, counts.refine, est_s, full_s,
                     "" if fits else "; this is the least the search can do: `--opt budget=0` runs the full counts")
        else:
            log.info("search: its counts fit %s: about %.0f s more", f"{budget:g} budgeted minutes" if limit_s
                     else "no time budget", est_s)
    steps, finalists, screen, refine = counts.steps, counts.finalists, counts.screen, counts.refine
    budget_rec.update(measured={k: round(v, 2) for k, v in measured.items()}, counts=counts.as_dict())
    grid = per_depth_shapes(cands, est, screen)
    distil_finalists(sorted(screen_best(grid), key=lambda c: est[c])[:max(1, finalists)], "grid")
    if refine and asked["refine"] is None and limit_s is not None:
        # the finalists measured a step: the refinement goes only if it still fits
        need = refine_seconds(counts, Costs(measured["screen_s"], measured["step_s"]))
        left = limit_s - (time.perf_counter() - started)
        if need > left:
            log.info("search: refining around the winner would take about %.0f s, %.0f s of the budget are left: "
                     "skipped", need, max(0.0, left))
            refine = 0
            budget_rec["refine_skipped"] = True
    extra = refine_depths(winner()["n_layers"], list(grid), spec0.n_layers, refine) if "depth" in axis_list else []
    near = shapes(extra) if extra else []
    if near:
        for c in near:
            est[c] = saliency_removed(c, sal, plans, order, spec0.hidden_size)
        distil_finalists(screen_best(per_depth_shapes(near, est, screen)), "refined")
    chosen = winner()
    model, cuts = cut(model, chosen["_cand"], plans, order, sal["hidden"], record)
    finalists_cut = {r.pop("_cand") for r in rows}
    scr = [{"shape": c.label(), "saliency_removed": round(est[c], 6), "kl_after_cut": round(after_cut[c][0], 4),
            "finalist": c in finalists_cut} for c in screened]
    out = {"chosen": chosen["shape"], "finalists": rows, "screened": scr, "candidates": len(cands) + len(near),
           "refined_depths": sorted({c.n_layers for c in near}),
           "dropped_layers": cuts["dropped_layers"], "hidden_removed": len(cuts["hidden_removed"]),
           "distill_steps": steps, "distill_tokens": tokens_of(steps), "distill": settings_of(distil),
           "axes": axis_list, "candidates_reconstructed": reconstruct, "resumed_scores": resumed,
           "calibration_loss": cal.loss,
           "budget": {**budget_rec, "seconds": round(time.perf_counter() - started, 1)}}
    shipped = aim.priced(model.spec) if aim is not None else model.spec  # at the vocabulary chosen
    if len(head_opts) > 1:
        rows_h = [{"type": h or "preset", "head_cost": round(head_cost(h, vi), 6), "shapes": len(per_option[(h, vi)]),
                   "least_body_saliency": None if least[(h, vi)] is None else round(least[(h, vi)], 6)}
                  for h in head_opts]
        out["head"] = head_record(spec0, shipped, latency.qtype, head_type, rows_h)
    if vocab_opts[0] is not None:
        rows_v = [{**o.record(), "cost": round(trim_cost(j), 6), "head_cost": round(head_cost(head_type, j), 6),
                   "shapes": len(per_option[(head_type, j)]),
                   "least_body_saliency": (None if least[(head_type, j)] is None
                                           else round(least[(head_type, j)], 6))}
                  for j, o in enumerate(vocab_opts) if o is not None]
        out["vocab"] = vocab_record(vocab_opts, vocab_opts[vi], len(vocab_opts) > 1, model.spec,
                                    latency.qtype if latency is not None else None, head_type, rows_v)
    return model, out
