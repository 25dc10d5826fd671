"""`edgeprune ship`: prune -> recover -> export -> validate -> bench -> report, in one command.

Every stage is resumable (edgeprune.pipeline.stages): a re-run skips stages whose inputs did not change.
Output layout under `--out` (default dist/):

    recipe.toml       the recipe actually used
    work/pruned/      the pruned checkpoint before recovery
    model/            the final HF checkpoint (pruned + recovered)
    gguf/ onnx/       exported files (+ export/manifest.json with fidelity per file)
    bench/            results.json, results.md, plots
    app/              the app bundle: GGUFs as <name>-<quant>.gguf, Modelfile, serve.sh, README.md
    report.md / report.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgeprune.base.errors import PruneError, RemoteError
from edgeprune.pipeline.recipe import Recipe

if TYPE_CHECKING:
    from edgeprune.prune.request import ResolvedPrune
    from edgeprune.shape.spec import ArchSpec

log = logging.getLogger(__name__)


# ----- preflight: everything that can fail on bad input fails before any work -----------------

@dataclass(frozen=True)
class Preflight:
    """What preflight decided before any work."""

    devices: list  # the loaded device profiles, in the recipe's order
    modes: dict  # device name -> how it is benched: local, ssh, adb or predict
    spec: ArchSpec  # the teacher's shape (the embedded default's is known before it is trained)
    # the recipe's PruneRequest resolved for that shape: what the prune stage cuts to (None: a speed
    # target only a vocabulary coverage reaches, resolved once the prune stage has counted the data)
    target: Optional[ResolvedPrune]


def preflight(recipe: Recipe) -> Preflight:
    """Validate the recipe, load the device profiles, resolve the pruning target once for the
    teacher's shape and decide how each device is benched: 'local' (measured here), 'ssh' / 'adb'
    (measured on the device) or 'predict' (roofline only). A host the user named must answer
    (else one line, exit 2); a profile's default host that does not answer (e.g.
    raspberrypi.local on a laptop) degrades to predictions, with a warning."""
    from edgeprune.devices import load_device

    recipe.validate()
    if recipe.recover_tokens:
        from edgeprune.base.torch_device import resolve_device

        resolve_device(recipe.train_device)  # `cuda` without CUDA, or `tpu9`: one line, before any work
    devices = [load_device(name) for name in recipe.devices]
    from edgeprune.shape.quant_presets import route_quants

    # every preset (the recipe's or the devices' own) is known before minutes of pruning, and is
    # of a format the run exports (the export stage would refuse it after pruning and recovery)
    if not recipe.quants:
        _check_device_formats(devices, recipe.formats)
    route_quants(list(recipe.quants) or device_presets(devices, recipe.formats))
    if recipe.model is not None:
        from edgeprune.files.spec_of import spec_of

        spec = spec_of(recipe.model)
        _check_context(recipe, spec)
        _check_model_files(recipe.model)
    else:
        from edgeprune.pipeline.embedded import EmbeddedRecipe, embedded_spec

        spec = embedded_spec(EmbeddedRecipe(tokens=recipe.teacher_tokens))
    # an unreachable target (ratio too large for one head per layer, a speed the device already
    # has) fails here, not mid-run; a speed target counts the trimmed head: at --vocab N's rows (at
    # most N ship), and with a coverage, whose size is known once the data is counted, the prune
    # stage judges a target the whole head cannot reach
    request = recipe.prune_request(devices)
    try:
        target = request.resolve(spec, vocab_size=min(recipe.vocab, spec.vocab_size) if recipe.vocab else None)
    except PruneError:
        if not (recipe.trims_vocab and request.speed_target):
            raise
        target = None
    modes = {}
    for dev in devices:
        mode = _bench_mode(dev, recipe)
        if mode == "ssh":
            try:
                _check_ssh(dev, recipe)
            except RemoteError as e:
                if recipe.host:
                    raise
                log.warning("%s; its figures will be roofline predictions", e)
                mode = "predict"
        modes[dev.name] = mode
    if recipe.measure_rounds and modes[devices[0].name] not in ("local", "ssh"):

        raise PruneError(f"measure_rounds times each cut on {devices[0].name}, which cannot be reached here "
                         f"({modes[devices[0].name]}): give --host USER@ADDR, or make local the first device")
    return Preflight(devices, modes, spec, target)


def device_presets(devices: list, formats: list) -> list[str]:
    """The devices' own presets of the formats the run exports, sorted: a device lists GGUF and ONNX
    presets, and a run asking for GGUF only wants its GGUF ones."""
    return sorted({q for d in devices for q in _presets_of(d, formats)})


def _presets_of(dev: Any, formats: list) -> list[str]:
    return [q for fmt, qs in (("gguf", dev.gguf_quants), ("onnx", dev.onnx_quants)) if fmt in formats for q in qs]


def _check_device_formats(devices: list, formats: list) -> None:
    """Every device has a preset of a format in --formats (else it would have nothing to bench)."""
    from edgeprune.base.errors import ExportError

    for d in devices:
        if not _presets_of(d, formats):
            listed = [f"{f.upper()} {', '.join(qs)}" for f, qs in (("gguf", d.gguf_quants), ("onnx", d.onnx_quants))
                      if qs]
            raise ExportError(f"device {d.name} has no preset of --formats {','.join(formats)} (its quant list names "
                              f"{'; '.join(listed) or 'none'}): add its format to --formats, or pass --quant")


def _check_model_files(model: str) -> None:
    """The model's own files are read once now, not by a stage minutes in: a GGUF is converted
    (its token list checked against its rows; the conversion is cached, the teacher stage reuses
    it), the tokenizer parsed, and a chat template rendered on a probe conversation."""
    from edgeprune.data.chat_template import read_chat_template
    from edgeprune.data.tokens import load_tokenizer
    from edgeprune.export.gguf_tokenizer import probe_chat_template
    from edgeprune.files.checkpoint import resolve_checkpoint_dir

    folder = resolve_checkpoint_dir(model)
    load_tokenizer(folder)
    template = read_chat_template(folder)
    if template:  # named by what the user gave: their folder, or their .gguf
        probe_chat_template(template, Path(model) if Path(model).exists() else folder)


def _check_context(recipe: Recipe, spec: ArchSpec) -> None:
    """Windows longer than the model's context are refused before pruning reads one."""

    ctx = spec.max_position_embeddings
    windows = [("--calib-len", recipe.calib_len)]
    if "seq_len" in recipe.recovery_settings():  # the user's own; the recipe's default is capped by training
        windows.append(("--seq-len", recipe.train_config(progress=False).seq_len))
    for flag, n in windows:
        if n > ctx:
            raise PruneError(f"{flag} {n} is longer than the model's context of {ctx} tokens ({recipe.model}): "
                             f"give at most {ctx}")



def _bench_mode(dev: Any, recipe: Recipe) -> str:
    kind = dev.access.kind
    if kind == "local":
        return "local"
    if kind == "ssh" and (dev.access.host or recipe.host):
        return "ssh"
    if kind == "adb" and dev.access.serial and shutil.which("adb"):
        return "adb"
    return "predict"


def _ssh_target(dev: Any, recipe: Recipe):
    from edgeprune.runtime_bench.harness import make_target

    return make_target(dev, host=recipe.host, connect_timeout=5, timeout=1800)


def _check_ssh(dev: Any, recipe: Recipe) -> None:
    target = _ssh_target(dev, recipe)
    argv = target.ssh_argv(["true"])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RemoteError(f"device {dev.name}: {target.label} did not answer within 15 s") from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["ssh failed"])[-1]
        raise RemoteError(f"device {dev.name}: cannot reach {target.label} over ssh ({why})")


# ----- the pipeline ------------------------------------------------------------------------------

def ship(recipe: Recipe, progress: bool = True) -> dict[str, Any]:
    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.pipeline.stages import StageRunner

    pre = preflight(recipe)
    devices, modes = pre.devices, pre.modes
    out = Path(recipe.out)
    out.mkdir(parents=True, exist_ok=True)
    from edgeprune.base.outdir import ensure_work_marker

    ensure_work_marker(out)  # a later run recognises the folder as ship's own
    atomic_write_text(out / "recipe.toml", recipe.to_toml())
    runner = StageRunner(out)
    r = recipe
    if progress:
        log.info("%s", plan_line(r, devices))

    # 1. teacher: the given model, or the embedded default (trained once, cached); its data: --data
    #    (teacher:N parts sampled from the teacher), else for a given model the teacher's own samples
    data_spec = r.data or (teacher_data_default(r) if r.model is not None else None)

    def teacher_stage() -> dict[str, Any]:
        from edgeprune.train.train_data import resolve_data

        data = data_spec
        if r.model is not None:
            from edgeprune.files.checkpoint import resolve_checkpoint_dir
            teacher = resolve_checkpoint_dir(r.model)
        else:
            from edgeprune.pipeline.embedded import EmbeddedRecipe, embedded_data_source, embedded_teacher
            teacher = embedded_teacher(EmbeddedRecipe(tokens=r.teacher_tokens), progress=progress)
            data = data or str(embedded_data_source())
        sampling = {"temperature": r.sample_temperature, "top_p": r.sample_top_p, "device": r.train_device}
        return {"teacher": str(teacher), "data": resolve_data(data, teacher, sampling, progress)}

    t = runner.run("teacher", {"model": r.model, "data": data_spec, "teacher_tokens": r.teacher_tokens,
                               "sample_temperature": r.sample_temperature, "sample_top_p": r.sample_top_p},
                   teacher_stage, output_paths=lambda o: [Path(o["teacher"]) / "config.json"])
    teacher_dir, data_src = Path(t.outputs["teacher"]), t.outputs["data"]

    # 2. prune
    pruned_dir = out / "work" / "pruned"
    prune_keys = {k: getattr(r, k) for k in ("method", "ratio", "params", "decode_tps", "speedup", "reconstruct",
                                              "incremental", "stages", "align", "calib_samples", "calib_len", "seed")}
    if r.trims_vocab:  # the trimmed head prices a speed target and the search may choose the size
        prune_keys.update(vocab=r.vocab, vocab_coverage=r.vocab_coverage)
    if r.incremental:  # the stages train: their settings are the prune stage's inputs too
        prune_keys.update(r.recovery_inputs())
    p = runner.run("prune", {**prune_keys, "data": data_src}, lambda: _prune(r, pre, teacher_dir, data_src,
                                                                           pruned_dir, progress),
                   after=["teacher"], output_paths=lambda o: [pruned_dir / "config.json"])

    # 3. recover (skipped with --recover-tokens 0: the pruned checkpoint is the model); with a
    #    vocabulary to trim it writes work/recovered, and the trim writes model/: the recovery's KD
    #    reads the teacher's logits, so it trains on the teacher's ids
    model_dir = out / "model"
    recovered_dir = out / "work" / "recovered" if r.trims_vocab else model_dir
    rec_keys = r.recovery_inputs()
    runner.run("recover", rec_keys, lambda: _recover(r, teacher_dir, pruned_dir, data_src, recovered_dir, progress,
                                                     p.outputs.get("stages")),
               after=["prune"], output_paths=lambda o: [recovered_dir / "config.json"])
    last = "recover"
    if r.trims_vocab:
        runner.run("vocab", {"vocab": r.vocab, "vocab_coverage": r.vocab_coverage, "data": data_src},
                   lambda: _trim_vocab(r, recovered_dir, model_dir, data_src, p.outputs.get("vocab")),
                   after=["recover"], output_paths=lambda o: [model_dir / "config.json"])
        last = "vocab"

    # 4. evaluate teacher and result on the same held-out text (bits/byte: a trimmed vocabulary
    #    tokenizes it into other tokens)
    ev = runner.run("eval", {"eval_tokens": r.eval_tokens, "seq_len": r.train_config(progress=False).seq_len,
                             "data": data_src},
                    lambda: _evaluate(r, teacher_dir, pruned_dir, model_dir, data_src), after=[last])

    # 5. export for every device's presets (+ overrides), each file validated against PyTorch
    quants = r.quants or device_presets(devices, r.formats)
    ex = runner.run("export", {"formats": r.formats, "quants": quants},
                    lambda: _export(r, model_dir, data_src, out, quants, progress), after=[last],
                    output_paths=lambda o: [out / a["path"] for a in o["artifacts"]])

    # 6. bench: measured where reachable, roofline predictions elsewhere (marked as such)
    bench_keys = {k: getattr(r, k) for k in ("devices", "host", "bench_prompt", "bench_gen", "bench_reps")}
    bn = runner.run("bench", {**bench_keys, "modes": modes},
                    lambda: _bench(r, devices, modes, out, ex.outputs["artifacts"], model_dir, progress),
                    after=["export"], output_paths=lambda o: [out / "bench" / "results.json"])

    # 7. the app bundle (dist/app) and the report (always rewritten: cheap)
    from edgeprune.pipeline.ship_report import write_app, write_report

    app = write_app(out, model_dir, devices, ex.outputs, bn.outputs)
    return write_report(out, r, teacher_dir, p.outputs, ev.outputs, ex.outputs, bn.outputs, runner.summary(),
                        devices=devices, app=app)


def plan_line(r: Recipe, devices: list) -> str:
    """ship's stages before the first one runs, each with its size; the long ones (the teacher,
    prune, recover) say their time once they have measured it (recover: from a timed training
    step of the pruned model, then the trainer's own ETA)."""
    teacher = (f"teacher ({r.model})" if r.model is not None else
               f"teacher (the embedded default: {r.teacher_tokens:,} training tokens the first time, then cached)")
    recover = (f"recover ({r.recover_tokens:,} training tokens on {r.train_device or 'the local device'})"
               if r.recover_tokens else "recover (skipped: --recover-tokens 0)")
    prune = f"prune ({r.method})"
    if r.method == "search":
        from edgeprune.prune import SEARCH_BUDGET_MINUTES

        prune = f"prune (search: fitted to {SEARCH_BUDGET_MINUTES:g} minutes on this machine, then its reconstruction)"
    trim = ([f"vocabulary trim (to {r.vocab:,} tokens)" if r.vocab is not None else
             f"vocabulary trim (to {r.vocab_coverage:g} coverage of the data)"] if r.trims_vocab else [])
    steps = [teacher, prune, recover, *trim, f"eval ({r.eval_tokens:,} held-out tokens)",
             f"export ({', '.join(r.formats)})", f"bench ({', '.join(d.name for d in devices)})", "app bundle and report"]
    return "ship plan: " + ", ".join(f"{i}) {s}" for i, s in enumerate(steps, 1)) + \
        "; a finished stage is skipped on a rerun, an interrupted training resumes from its last checkpoint"


def recovery_estimate(model: Any, cfg: Any, device: Any) -> str:
    """One timed training step of the pruned model here, priced over the recovery's tokens."""
    import torch

    from edgeprune.base.progress import human_duration
    from edgeprune.pipeline.prune_verdict import train_tokens_per_s

    seq = min(cfg.seq_len, model.spec.max_position_embeddings)
    windows = torch.randint(0, model.spec.vocab_size, (min(4, cfg.micro_batch), seq),
                            generator=torch.Generator().manual_seed(0))
    tps = train_tokens_per_s(model, windows)
    return (f"ship recover: {cfg.tokens:,} tokens at ~{tps:,.0f} tokens/s (one timed step on the CPU) ≈ "
            f"{human_duration(cfg.tokens / max(tps, 1e-9))}" + ("" if str(device) == "cpu" else
                                                               f"; on {device} expect less"))


MIN_TEACHER_SAMPLES = 100_000  # teacher-sampled tokens at least: calibration and a held-out split need text


def teacher_data_default(r: Recipe) -> str:
    """A given model without --data recovers on its own samples (`teacher:N`, train/teacher_text.py):
    one pass of --recover-tokens beside the held-out split."""
    from edgeprune.train.train_data import default_teacher_data

    return default_teacher_data(max(r.recover_tokens, MIN_TEACHER_SAMPLES))


# ----- stages --------------------------------------------------------------------------------------

def _prune(r: Recipe, pre: Preflight, teacher_dir: Path, data_src: str, pruned_dir: Path, progress: bool
           ) -> dict[str, Any]:
    """The prune stage. Its record is the pruning's own (`PruneResult.summary()`, as written to
    the pruned checkpoint's edgeprune.json) with the target asked for, the layer table and, per
    mode, the incremental stages or the landing on the device: the report renders it."""
    from edgeprune.files.checkpoint import load_checkpoint, save_derived
    from edgeprune.data.tokens import calibration_batch, load_tokenizer
    from edgeprune.pipeline.stage_training import search_distil
    from edgeprune.prune import prune_model

    from edgeprune.prune.vocab_axis import vocab_options_for

    ck = load_checkpoint(teacher_dir)
    assert ck.spec == pre.spec, "the teacher is the model preflight resolved the target for"
    # the vocabularies the model may ship with: a speed target is priced at the trimmed head, and
    # the search may choose among them; the cut itself keeps every row until after recovery
    vocab = vocab_options_for(teacher_dir, data_src, size=r.vocab, coverage=r.vocab_coverage)
    tok = load_tokenizer(teacher_dir)
    calib = calibration_batch(data_src, tok, n_samples=r.calib_samples, seq_len=r.calib_len, seed=r.seed)
    devices = pre.devices
    # with trimming, the target is priced at the rows that ship, now that the data is counted
    plan = r.prune_request(devices).resolve(ck.spec, vocab_size=vocab[0].size) if vocab else pre.target
    from edgeprune.pipeline.prune_verdict import (assess, held_out_loss, train_tokens_per_s, verdict_lines,
                                                  verdict_windows)

    # the prune verb's verdict windows, measured on the teacher before the cut changes it in place
    held = verdict_windows(data_src, tok, r.calib_len, r.seed)
    loss_original = held_out_loss(ck.model, held)
    if r.incremental:
        # Adapt-Pruner's prune → train stages (pipeline/stage_training.py, shared with `prune
        # --incremental`): half of --recover-tokens over the stages, the rest in the recover stage
        from edgeprune.pipeline.stage_training import build_incremental

        data = cfg = teacher = env = None
        if r.recover_tokens > 0:
            data, cfg, teacher, env = _training_inputs(r, teacher_dir, data_src, progress, ck.spec)
        pruner, training = build_incremental(
            ck.model, plan, out_dir=pruned_dir.parent / "stages", calib=calib, stages=r.stages or None, seed=r.seed,
            source=ck, progress=progress, data=data, cfg=cfg, total_tokens=r.recover_tokens or None,
            stage_share=STAGE_SHARE, teacher=teacher, env=env)
        res = pruner.run()
        extra = {"stages": pruner.stages, "budget": training.budget.to_dict() if training is not None else None}
    elif r.measure_rounds:
        from edgeprune.pipeline.land_target import DeviceMeasure, land

        meter = DeviceMeasure(ck, devices[0], plan.request.ship_quant, rounds=r.measure_rounds,
                              target_options={"host": r.host} if r.host else {})
        try:
            res, landing = land(ck.model, plan.request, calib=calib, measure=meter, seed=r.seed, progress=progress,
                                distil=search_distil(), vocab=vocab)
        finally:
            meter.close()
        log.info("%s", landing.text())
        extra = {"landing": landing.summary()}
    else:
        res = prune_model(ck.model, plan, calib=calib, seed=r.seed, progress=progress, distil=search_distil(),
                          vocab=vocab)
        extra = {}
    record = res.summary()
    # the cut's verdict, the prune verb's: ship's recover stage is the next step it names
    record["verdict"] = assess(loss_original, held_out_loss(res.model, held), train_tokens_per_s(res.model, held),
                               model=str(teacher_dir), pruned=str(pruned_dir), data=str(data_src))
    if progress:
        log.info("%s", verdict_lines(record["verdict"]).splitlines()[0])
    save_derived(res.model, pruned_dir, ck, meta={"pruning": record})
    return {"target": target_of(plan.request), **record, "layers": res.layer_rows(), **extra}


def target_of(request: Any) -> dict[str, Any]:
    """What a PruneRequest asked for, as the report names it: its method, its one target and,
    with a device, where speed is predicted."""
    from edgeprune.prune.request import TARGETS

    out = {"method": request.method, **{k: getattr(request, k) for k in TARGETS if getattr(request, k) is not None}}
    if request.device is not None:
        out.update(device=request.device.name, quant=request.ship_quant)
    return out


STAGE_SHARE = 0.5  # --incremental: share of --recover-tokens trained between stages (the rest at the end)


def _training_inputs(r: Recipe, teacher_dir: Path, data_src: str, progress: bool, spec: ArchSpec
                     ) -> tuple[Any, Any, Any, Any]:
    """(data, TrainConfig, teacher or None, DistEnv) of the recovery training, for both the
    incremental stages and the recover stage: the recipe's TrainConfig (train's recovery recipe
    under the keys it sets), on --train-device."""
    from edgeprune.pipeline.stage_training import stage_inputs
    from edgeprune.base.torch_device import resolve_device
    from edgeprune.train.distributed import DistEnv

    env = DistEnv(device=resolve_device(r.train_device))
    cfg = r.train_config(progress=progress)
    data, teacher = stage_inputs(cfg, data_src, teacher_dir, teacher=teacher_dir if r.teacher_kd else None,
                                 student_spec=spec, progress=progress)
    return data, cfg, teacher, env


def _recover(r: Recipe, teacher_dir: Path, pruned_dir: Path, data_src: str, model_dir: Path, progress: bool,
             stages: Optional[int] = None) -> dict[str, Any]:
    """Recovery after pruning; with --incremental the final part of the stages' shared schedule
    (its `recover_steps`, the decay), so the whole run spends --recover-tokens, not more."""
    from edgeprune.base.atomic_io import atomic_dir
    from edgeprune.files.checkpoint import load_checkpoint, save_derived

    if r.recover_tokens == 0:
        with atomic_dir(model_dir) as tmp:
            shutil.copytree(pruned_dir, tmp, dirs_exist_ok=True)
        return {"recovered": False}
    ck = load_checkpoint(pruned_dir)
    data, cfg, teacher, env = _training_inputs(r, teacher_dir, data_src, progress, ck.spec)
    if progress:
        log.info("%s", recovery_estimate(ck.model, cfg, env.device))
    if r.incremental:
        from edgeprune.pipeline.stage_training import make_stage_training

        training = make_stage_training(data, cfg, stages, work_root=pruned_dir.parent / "stages" / "train",
                                       total_tokens=r.recover_tokens, stage_share=STAGE_SHARE, teacher=teacher,
                                       env=env)
        res = training.recover(ck.model)
        tokens = training.budget.total_tokens
    else:
        steps = max(1, r.recover_tokens // cfg.tokens_per_step(env.world))
        cfg = dataclasses.replace(cfg, ckpt_every=max(1, steps // RECOVER_CHECKPOINTS))
        res = _train_resuming(ck.model, data, cfg, pruned_dir.parent / "recover", teacher, env)
        tokens = res.tokens_seen
    save_derived(res.model.float().cpu().eval(), model_dir, ck, meta={"recovery": {
        "tokens": tokens, "steps": res.steps, "kd": r.teacher_kd, "valid_ppl": res.valid_ppl,
        "device": str(env.device)}})
    return {"recovered": True, "tokens": tokens, "steps": res.steps, "valid_ppl": res.valid_ppl,
            "device": str(env.device)}


RECOVER_CHECKPOINTS = 10  # training checkpoints over a recovery run: a kill loses at most ~10% of it


def _train_resuming(model: Any, data: Any, cfg: Any, work: Path, teacher: Any, env: Any = None) -> Any:
    """Recovery training that continues from its last checkpoint after a kill (train_resuming)."""
    from edgeprune.train.loop import train_resuming

    return train_resuming(model, data, cfg, work, teacher=teacher, env=env)


def _trim_vocab(r: Recipe, recovered_dir: Path, model_dir: Path, data_src: str, decided: Optional[dict]
                ) -> dict[str, Any]:
    """The vocab stage: the recovered model trimmed to the vocabulary the prune decided (the one
    asked for when it decided none: --incremental), counted on the same text."""
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.prune.vocab_axis import option_of_size, vocab_options_for
    from edgeprune.prune.vocab_surgery import save_trimmed, trim_rows

    ck = load_checkpoint(recovered_dir)
    options = vocab_options_for(recovered_dir, data_src, size=r.vocab, coverage=r.vocab_coverage)
    trim = option_of_size(options, (decided or {}).get("size")).trim
    save_trimmed(trim_rows(ck.model, trim.kept), model_dir, ck, trim, data=str(data_src))
    return {"size": trim.size, "original_size": trim.original_size, "covered": trim.covered,
            "required": trim.required}


def _evaluate(r: Recipe, teacher_dir: Path, pruned_dir: Path, model_dir: Path, data_src: str) -> dict[str, Any]:
    import math

    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.data.tokens import load_tokenizer, split_tokens, token_file
    from edgeprune.data.text_sources import describe_source
    from edgeprune.pipeline.evaluate import sequence_nll

    teacher_tok = load_tokenizer(teacher_dir)
    _, valid = split_tokens(token_file(data_src, teacher_tok, progress=False))
    seq_len = r.train_config(progress=False).seq_len  # the recovery's window
    # the scored text: a model with a trimmed vocabulary reads it in its own tokens, so every row
    # also gives bits per UTF-8 byte of that same text, comparable across vocabularies
    span = [int(t) for t in valid[:r.eval_tokens]]
    text = teacher_tok.decode(span)
    # the bytes of the text itself: a separator token's name (<|endoftext|>) is not text it predicts bytes of
    n_bytes = len(teacher_tok.decode(span, skip_special_tokens=True).encode("utf-8"))
    # every perplexity says which text, split and token count it is on
    res: dict[str, Any] = {"heldout": {"text": describe_source(data_src), "split": "held-out tail (last 5% of tokens)",
                                       "tokens_in_split": int(len(valid)), "seq_len": seq_len, "bytes": n_bytes}}
    # "pruned" is the shipped model (recovered when recovery ran); "pruned_only" the cut before it
    dirs = [("teacher", teacher_dir), ("pruned", model_dir)]
    if r.recover_tokens:
        dirs.insert(1, ("pruned_only", pruned_dir))
    whole = None  # the teacher's vocabulary size: a model with fewer rows reads the text in its own tokens
    for name, d in dirs:
        ck = load_checkpoint(d)
        whole = whole or ck.spec.vocab_size
        trimmed = ck.spec.vocab_size != whole
        if trimmed:
            nll = sequence_nll(ck.model, load_tokenizer(d).encode(text), seq_len=seq_len)
        else:
            nll = sequence_nll(ck.model, valid, seq_len=seq_len, max_tokens=r.eval_tokens)
            res["heldout"]["tokens"] = nll.n_tokens
        res[name] = {"params": ck.spec.n_params, "ppl": nll.perplexity, "tokens": nll.n_tokens,
                     "bits_per_byte": nll.total / math.log(2) / max(1, n_bytes),
                     **({"vocab_size": ck.spec.vocab_size} if trimmed else {})}
    return res


EXPORT_CHECK_TOKENS = 256  # held-out tokens every exported file is compared on


def _export(r: Recipe, model_dir: Path, data_src: str, out: Path, quants: list, progress: bool) -> dict[str, Any]:
    import numpy as np
    import torch

    from edgeprune.export.api import export_model

    from edgeprune.data.tokens import load_tokenizer, split_tokens, token_file

    # validation tokens come from the held-out split: fidelity perplexity is then a real figure
    _, valid = split_tokens(token_file(data_src, load_tokenizer(model_dir), progress=False))
    check = torch.as_tensor(np.asarray(valid[:EXPORT_CHECK_TOKENS], dtype=np.int64))
    manifest = export_model(model_dir, out, formats=r.formats, quants=quants, check_tokens=check,
                            progress=progress)
    return {"artifacts": manifest["artifacts"], "manifest": str(out / "manifest.json"),
            "check_tokens": manifest["check_tokens"], **({"quality": manifest["quality"]} if "quality" in manifest else {})}


PREDICTION_KEYS = ("tg_pred_tps", "pp_bound_tps", "bytes_per_token", "depth")  # what the report shows


def _bench(r: Recipe, devices: list, modes: dict, out: Path, artifacts: list, model_dir: Path, progress: bool
           ) -> dict[str, Any]:
    from edgeprune.base.atomic_io import atomic_write_text
    from edgeprune.devices.predict import predict
    from edgeprune.runtime_bench.harness import bench
    from edgeprune.runtime_bench.plots import plot_decode
    from edgeprune.runtime_bench.report import records_table
    from edgeprune.runtime_bench.schema import write_records
    from edgeprune.files.spec_of import spec_of

    spec = spec_of(model_dir)
    files = [out / a["path"] for a in artifacts if a["format"] in ("gguf", "onnx")]
    records, predictions = [], []
    for dev in devices:
        mine = [f for f in files if _wanted_on(f, dev, artifacts, out, r)]
        mode = modes[dev.name]
        if mode in ("local", "ssh", "adb"):
            opts = {"host": r.host} if mode == "ssh" and r.host else {}
            records += bench(mine, dev, n_prompt=r.bench_prompt, n_gen=r.bench_gen, reps=r.bench_reps,
                             spec=spec, progress=progress, **opts)
        else:
            for f in mine:
                pred = predict(f, dev, spec=spec, n_prompt=r.bench_prompt, n_gen=r.bench_gen)
                predictions.append({"device": dev.name, "model": f.name, "format": _fmt(f), "predicted": True,
                                    **{k: v for k, v in pred.items() if k in PREDICTION_KEYS or k.startswith("model_")}})
    bench_dir = out / "bench"
    bench_dir.mkdir(parents=True, exist_ok=True)
    write_records(records, bench_dir / "results.json")
    atomic_write_text(bench_dir / "predictions.json", json.dumps(predictions, indent=2))
    atomic_write_text(bench_dir / "results.md", records_table(records) if records else "(no measurements)\n")
    plots = []
    if records:
        plots.append(str(plot_decode(records, bench_dir / "decode_tps.png")))
    return {"records": [rec.to_dict() for rec in records], "predictions": predictions, "plots": plots}


def _fmt(f: Path) -> str:
    return "gguf" if f.suffix == ".gguf" else "onnx"


def _wanted_on(f: Path, dev: Any, artifacts: list, out: Path, r: Recipe) -> bool:
    """A device benches the files of its own presets (all files when --quants overrides them)."""
    if r.quants:
        return True
    quant = next((a["quant"] for a in artifacts if out / a["path"] == f), None)
    return quant in set(dev.gguf_quants) | set(dev.onnx_quants)
