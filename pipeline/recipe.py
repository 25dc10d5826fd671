"""The `ship` recipe: every CLI flag of `edgeprune ship` is a key here (litgpt-style: the field
help strings become `--help`). A recipe file is flat TOML with the same keys; flags given on the
command line override it; the recipe actually used is written to `dist/recipe.toml`.

The recovery training's keys are TrainConfig's own fields (train/config.py: same names, types and
help), so ship recovers exactly as `edgeprune train` would: a key left unset takes train's
recovery recipe (`recover`, or `recover-kd` with teacher_kd; train/recipes.py) over TrainConfig's
defaults (`Recipe.train_config`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from edgeprune.base.errors import EdgepruneError, PruneError, TrainError
from edgeprune.pipeline.method_help import methods_help
from edgeprune.train.config import TrainConfig

if TYPE_CHECKING:
    from edgeprune.prune.request import PruneRequest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# TrainConfig fields ship sets itself rather than reading them as recipe keys, and why:
SHIP_SETS = {
    "tokens": "recover_tokens is the recovery's token count (0 skips recovery)",
    "seed": "the recipe's seed also draws the calibration windows",
    "fsdp": "ship trains in one process",
    "valid_fraction": "the held-out split is also the evaluation's and the export check's",
    **{k: "bookkeeping: evaluated once at the end, checkpointed every tenth of the run, progress unless "
          "--no-progress" for k in TrainConfig.BOOKKEEPING},
}
TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}
RECOVERY_KEYS = tuple(name for name in TRAIN_FIELDS if name not in SHIP_SETS)
# PruneRequest fields ship derives from its devices and quants (the rest are recipe keys of the same name)
REQUEST_SETS = ("device", "quant", "ship_to", "quants", "options")
OLD_KEYS = {"batch_size": "micro_batch"}  # keys of recipes written before ship's were TrainConfig's
NOTES = {"seq_len": "; also the held-out evaluation's window"}  # what a training key also means in ship


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


# One field per recovery key, typed as TrainConfig's; None (unset) = train's recovery recipe.
RecoveryKeys = make_dataclass("RecoveryKeys", [
    (name, f"Optional[{TRAIN_FIELDS[name].type}]", field(default=None, metadata={**TRAIN_FIELDS[name].metadata,
                                                                                  "train": True}))
    for name in RECOVERY_KEYS])


@dataclass
class Recipe(RecoveryKeys):
    model: Optional[str] = _f(None, "checkpoint dir or hub name; empty = the embedded default teacher")
    teacher_tokens: int = _f(600_000, "embedded default only: tokens to train its teacher (cached)")
    out: str = _f("dist", "output directory (model/, gguf/, onnx/, bench/, report.md)")
    method: str = _f("adapt", "pruning method: " + methods_help())
    ratio: float = _f(0.5, "fraction of parameters to REMOVE, in (0, 1)")
    params: Optional[int] = _f(None, "target parameter count (instead of --ratio)")
    decode_tps: Optional[float] = _f(None, "decode target, tokens/s on the first device at its first GGUF type, "
                                           "through its latency model (instead of --ratio)")
    speedup: Optional[float] = _f(None, "decode this many times faster than the input model on the first device "
                                        "(instead of --ratio)")
    reconstruct: str = _f("layerwise", "after the cut, refit o_proj / down_proj by least squares towards the "
                                       "original's hidden states (layerwise), or none: the plain cut")
    measure_rounds: int = _f(0, "time each cut of a speed target on the first device against the original in this "
                                "many paired rounds and cut again until it measures within 5%% (0 = trust the "
                                "latency model)")
    vocab: Optional[int] = _f(None, "trim the vocabulary to at most N tokens of the data, after recovery (whose KD "
                                    "reads the teacher's ids); a speed target counts the trimmed head")
    vocab_coverage: Optional[float] = _f(None, "trim the vocabulary to the most frequent tokens covering this "
                                               "fraction of the data (e.g. 0.999); under a decode target the "
                                               "search may trim down to 0.99 coverage where that buys the speed")
    incremental: bool = _f(False, "prune in stages of ~4%% of the parameters, training between them: half of "
                                  "--recover-tokens over the stages, the rest after the last, one lr schedule")
    stages: int = _f(0, "number of incremental stages (0 = method default)")
    align: Optional[int] = _f(None, "round pruned widths to a multiple of this (default: the devices' own)")
    data: Optional[str] = _f(None, "training / held-out text (.txt/.jsonl/.parquet/dir/hf:NAME, teacher:N = N "
                                   "tokens sampled from the teacher, or a comma-separated mix); empty = the "
                                   "teacher's own samples for a given model, the embedded corpus for the default")
    sample_temperature: float = _f(0.8, "teacher samples (teacher:N data): sampling temperature")
    sample_top_p: float = _f(0.95, "teacher samples: nucleus (top-p) mass")
    calib_samples: int = _f(32, "calibration windows for pruning scores")
    calib_len: int = _f(128, "tokens per calibration window")
    recover_tokens: int = _f(200_000, "recovery-training tokens after pruning (0 = skip recovery)")
    teacher_kd: bool = _f(False, "distill from the unpruned teacher during recovery (train's recover-kd recipe)")
    train_device: Optional[str] = _f(None, "torch device for recovery and incremental stage training: cpu, cuda, "
                                           "cuda:N (default: the local GPU if any, else cpu)")
    devices: list = _f(["local"], "device profiles to export for and bench on (comma-separated)")
    formats: list = _f(["gguf", "onnx"], "export formats (comma-separated): gguf, onnx")
    quants: list = _f([], "quant presets overriding the devices' own (comma-separated)")
    host: Optional[str] = _f(None, "user@host for ssh devices that have no host in their profile")
    bench_prompt: int = _f(128, "prompt tokens for the pp measurement")
    bench_gen: int = _f(32, "generated tokens for the tg measurement")
    bench_reps: int = _f(3, "repetitions per measurement")
    eval_tokens: int = _f(20_000, "held-out tokens for perplexity")
    seed: int = _f(0, "random seed (calibration windows, recovery's data order and init)")

    @property
    def trims_vocab(self) -> bool:
        """Whether the shipped model's vocabulary is trimmed (vocab or vocab_coverage set)."""
        return self.vocab is not None or self.vocab_coverage is not None

    # ----- the recovery training -------------------------------------------------------------
    def recovery_settings(self) -> dict[str, Any]:
        """The recovery keys this recipe sets (the rest follow train's recovery recipe)."""
        return {k: getattr(self, k) for k in RECOVERY_KEYS if getattr(self, k) is not None}

    def train_config(self, progress: bool = True) -> TrainConfig:
        """The recovery's TrainConfig: TrainConfig's defaults < train's recovery recipe (with a
        teacher when teacher_kd: the unpruned model) < the keys this recipe sets. Without
        teacher_kd there is no teacher, so no KD whatever kd_alpha says."""
        from edgeprune.train.recipes import load_recipe, recovery_recipe

        kw = {**load_recipe(recovery_recipe(self.teacher_kd)), **self.recovery_settings()}
        if not self.teacher_kd:
            kw["kd_alpha"] = 0.0
        return TrainConfig(**kw, tokens=max(1, self.recover_tokens), seed=self.seed, eval_every=0, ckpt_every=0,
                           progress=progress)

    def recovery_inputs(self) -> dict[str, Any]:
        """What the recovery training depends on: the recover stage's inputs (and the prune
        stage's with --incremental, whose stages train), so changing one re-runs what it changes."""
        return {"recover_tokens": self.recover_tokens, "teacher_kd": self.teacher_kd,
                "train_device": self.train_device, "train": self.train_config(progress=False).trajectory_fields()}

    # ----- the pruning -------------------------------------------------------------------------
    def prune_request(self, devices: Optional[list] = None) -> PruneRequest:
        """The one PruneRequest (prune/request.py) this recipe asks for, which judges its method,
        its one target and its device: the keys that are the request's own fields, the default
        ratio only when no other target is named; speed predicted on the first device at the
        first GGUF type shipped (--quants, else the device's own list); widths aligned to every
        device and GGUF type shipped. `devices`: the loaded profiles (default: this recipe's)."""
        from edgeprune.prune.request import TARGETS, PruneRequest
        from edgeprune.shape.quant_presets import route_quants

        if devices is None:
            from edgeprune.devices import load_device

            devices = [load_device(name) for name in self.devices]
        kw = {f.name: getattr(self, f.name) for f in fields(PruneRequest)
              if f.name not in REQUEST_SETS and hasattr(self, f.name)}
        if any(kw.get(k) is not None for k in TARGETS if k != "ratio"):
            kw["ratio"] = None  # the default ratio gives way to the target the user named
        gguf = [q.upper() for q in route_quants(list(self.quants))["gguf"]] if self.quants else []
        return PruneRequest(**kw, device=devices[0] if devices else None, quant=gguf[0] if gguf else None,
                            ship_to=tuple(devices[1:]), quants=tuple(gguf[1:]))

    # ----- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Every problem at once, before any work (torchtune style)."""
        problems = list(self._type_problems())
        if problems:  # the range checks below need the right types
            raise PruneError("bad recipe: " + "; ".join(problems))
        if self.recover_tokens:
            from edgeprune.base.torch_device import resolve_device

            # `cuda` without CUDA, or `tpu9`: its own line, before the device profiles are loaded
            # (a local profile measures this machine the first time)
            resolve_device(self.train_device)
        from edgeprune.pipeline.land_target import measure_problems

        problems += measure_problems(self.measure_rounds, speed_target=self.decode_tps is not None or
                                     self.speedup is not None, incremental=self.incremental,
                                     flag="measure_rounds", incremental_flag="incremental")
        from edgeprune.prune.vocab_axis import vocab_problems

        problems += vocab_problems(self.vocab, self.vocab_coverage, ("vocab", "vocab_coverage"))
        if self.teacher_tokens <= 0:
            problems.append(f"teacher_tokens {self.teacher_tokens} must be > 0")
        if self.recover_tokens < 0:
            problems.append(f"recover_tokens {self.recover_tokens} must be >= 0")
        bad_formats = [f for f in self.formats if f not in ("gguf", "onnx")]
        if bad_formats:
            problems.append(f"unknown format(s) {bad_formats}; choose gguf, onnx")
        if not self.devices:
            problems.append("devices is empty: name at least one (e.g. local)")
        if self.data is not None:
            from edgeprune.data.text_sources import source_problem

            problem = source_problem(self.data)
            if problem is not None:
                problems.append(problem)
        if not self.sample_temperature > 0:
            problems.append(f"sample_temperature {self.sample_temperature} must be > 0")
        if not 0 < self.sample_top_p <= 1:
            problems.append(f"sample_top_p {self.sample_top_p} must be in (0, 1]")
        for name in ("calib_samples", "calib_len", "bench_prompt", "bench_gen", "bench_reps", "eval_tokens"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} {getattr(self, name)} must be > 0")
        try:  # the recovery keys are checked by TrainConfig itself, as for `edgeprune train`
            self.train_config(progress=False)
        except TrainError as e:
            problems.append(str(e))
        try:  # the method, the one target and its device are the pruning request's to judge
            self.prune_request()
        except EdgepruneError as e:
            problems.append(str(e))
        if self.quants:
            from edgeprune.base.errors import ExportError
            from edgeprune.shape.quant_presets import route_quants

            try:
                routed = route_quants(list(self.quants))
                stray = [q for f in ("gguf", "onnx") if f not in self.formats for q in routed[f]]
                if stray:
                    problems.append(f"quants {stray} are for a format not in formats {self.formats}")
            except ExportError as e:
                if str(e) not in problems:  # prune_request routes the quants too
                    problems.append(str(e))
        if self.host:
            from edgeprune.devices.remote_values import check_host, check_user
            from edgeprune.runtime_bench.ssh import split_destination

            user, host = split_destination(self.host)
            try:
                check_user(user)
                check_host(host)
            except EdgepruneError as e:
                problems.append(str(e))
        if problems:
            raise PruneError("bad recipe: " + "; ".join(problems))

    def _type_problems(self) -> Any:
        """Values of the wrong type (a TOML `ratio = "half"`, `devices = 3`): named, not a traceback."""
        for f in fields(self):
            v, kind = getattr(self, f.name), _kind(f)
            if v is None and _optional(f):  # optional keys left unset
                continue
            if kind == "bool":
                ok = isinstance(v, bool)
            elif kind == "list":
                ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
            elif kind == "float":
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            elif kind == "int":
                ok = isinstance(v, int) and not isinstance(v, bool)
            else:
                ok = isinstance(v, str)
            if not ok:
                yield f"{f.name} = {v!r} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}"

    # ----- I/O -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, path: Path) -> "Recipe":
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise EdgepruneError(f"recipe {path} does not exist") from None
        except UnicodeDecodeError as e:
            raise EdgepruneError(f"recipe {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
        except IsADirectoryError:
            raise EdgepruneError(f"recipe {path} is a folder, not a TOML file") from None
        except tomllib.TOMLDecodeError as e:
            raise EdgepruneError(f"recipe {path} is not valid TOML ({e})") from None
        return cls.from_mapping(raw, where=str(path))

    @classmethod
    def from_mapping(cls, raw: dict, where: str = "recipe") -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known - set(OLD_KEYS))
        if unknown:
            raise EdgepruneError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        raw = dict(raw)
        for old, new in OLD_KEYS.items():  # an older recipe's name for a key: read as the new one
            if old in raw:
                if new in raw:
                    raise EdgepruneError(f"{where}: {old} and {new} are the same key (now {new}); give one")
                raw[new] = raw.pop(old)
        for k in ("devices", "formats", "quants"):  # `devices = "local"` or "a,b": the flags' comma form
            if isinstance(raw.get(k), str):
                raw[k] = [x.strip() for x in raw[k].split(",") if x.strip()]
        return cls(**raw)

    def to_toml(self) -> str:
        lines = ["# edgeprune ship recipe (written by the run that used it)"]
        used = self.train_config().to_dict()
        for f in _in_order():
            v = getattr(self, f.name)
            if v is not None:
                lines.append(f"{f.name} = {json.dumps(v)}")  # JSON scalars/lists are valid TOML here
            elif f.name in used:  # unset: say what train's recovery recipe gave it
                lines.append(f"# {f.name} = {json.dumps(used[f.name])} (unset: train's recovery recipe)")
            else:
                lines.append(f"# {f.name} = (unset)")
        return "\n".join(lines) + "\n"


def _kind(f: Field) -> str:
    """A field's value type: its annotation without Optional (annotations are strings here)."""
    t = f.type if isinstance(f.type, str) else f.type.__name__
    return t.removeprefix("Optional[").removesuffix("]")


def _optional(f: Field) -> bool:
    return str(f.type).startswith("Optional[")


def _in_order() -> list[Field]:
    """Ship's own keys first, then the recovery training's (--help and recipe.toml read this way)."""
    return sorted(fields(Recipe), key=lambda f: bool(f.metadata.get("train")))


# Flag names shared with the other verbs (one name per idea): the recipe keys keep their plural
# names in TOML; the old plural flags stay as hidden aliases.
FLAG_NAMES = {"devices": "--device", "quants": "--quant"}


def _default_text(default: Any, help_: str) -> str:
    """' (default: X)' unless the help already says where the default comes from, or there is none."""
    if "(default" in help_ or default is None:
        return ""
    if isinstance(default, list):
        return f" (default: {','.join(map(str, default)) or 'none'})"
    if isinstance(default, bool):
        return f" (default: {'on' if default else 'off'})"
    return f" (default: {default:,})" if isinstance(default, int) else f" (default: {default})"


def _recovery_default_text() -> dict[str, str]:
    """What --help shows as each recovery key's default: train's recovery recipe, and its
    distillation value where --teacher-kd changes it."""
    plain, kd = Recipe().train_config().to_dict(), Recipe(teacher_kd=True).train_config().to_dict()
    return {k: f"{plain[k]}" + (f"; {kd[k]} with --teacher-kd" if kd[k] != plain[k] else "") for k in RECOVERY_KEYS}


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per recipe field; defaults are None so only given flags override the recipe."""
    from edgeprune.base.cli_flags import csv_list, hidden_alias
    from edgeprune.train.cli_common import add_field_flag

    train = p.add_argument_group("recovery training (TrainConfig's fields, as `edgeprune train` takes them; "
                                 "unset: train's recovery recipe)")
    shown = _recovery_default_text()
    for f in _in_order():
        if f.name == "model":
            continue  # positional
        if f.metadata.get("train"):
            action = add_field_flag(train, TRAIN_FIELDS[f.name], shown[f.name], NOTES.get(f.name, ""))
            old = [k for k, new in OLD_KEYS.items() if new == f.name]
            if old:
                hidden_alias(p, action, *("--" + k.replace("_", "-") for k in old))
            continue
        flag = FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f.metadata["help"] + _default_text(default, f.metadata["help"])
        kind = _kind(f)
        if kind == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
            continue
        if kind == "list":
            action = p.add_argument(flag, dest=f.name, default=None, help=help_, action="extend", type=csv_list,
                                    metavar="A,B")
        else:
            action = p.add_argument(flag, dest=f.name, type={"float": float, "int": int}.get(kind, str), default=None,
                                    help=help_)
        if f.name in FLAG_NAMES:
            hidden_alias(p, action, "--" + f.name.replace("_", "-"))


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    base = asdict(Recipe.from_toml(Path(args.recipe))) if getattr(args, "recipe", None) else asdict(Recipe())
    for f in fields(Recipe):
        v = getattr(args, f.name, None)
        if v is not None:
            base[f.name] = v
    return Recipe(**base)
