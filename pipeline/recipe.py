"""The `ship` recipe: every CLI flag of `edgeprune ship` is a key here (litgpt-style: the field
help strings become `--help`). A recipe file is flat TOML with the same keys; flags given on the
command line override it; the recipe actually used is written to `dist/recipe.toml`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from edgeprune.errors import EdgepruneError, PruneError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda d=default: list(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class Recipe:
    model: Optional[str] = _f(None, "checkpoint dir or hub name; empty = the embedded default teacher")
    teacher_tokens: int = _f(600_000, "embedded default only: tokens to train its teacher (cached)")
    out: str = _f("dist", "output directory (model/, gguf/, onnx/, bench/, report.md)")
    method: str = _f("adapt", "pruning method: uniform, flap, depth, adapt")
    ratio: float = _f(0.5, "fraction of parameters to REMOVE, in (0, 1)")
    params: Optional[int] = _f(None, "target parameter count (instead of --ratio)")
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
    teacher_kd: bool = _f(False, "distill from the unpruned teacher during recovery")
    kd_alpha: float = _f(0.5, "weight of the KD loss against the LM loss")
    kd_temp: float = _f(2.0, "KD temperature")
    lr: float = _f(1e-3, "recovery learning rate")
    batch_size: int = _f(8, "recovery batch size (windows)")
    seq_len: int = _f(256, "recovery / evaluation window length")
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
    seed: int = _f(0, "random seed")

    # ----- validation ------------------------------------------------------------------------
    def validate(self) -> None:
        """Every problem at once, before any work (torchtune style)."""
        problems = list(self._type_problems())
        if problems:  # the range checks below need the right types
            raise PruneError("bad recipe: " + "; ".join(problems))
        if self.params is None and not (0 < self.ratio < 1):
            problems.append(f"ratio {self.ratio} must be in (0, 1) (the fraction of parameters removed)")
        if self.params is not None and self.params <= 0:
            problems.append(f"params {self.params} must be > 0")
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
            from edgeprune.text_sources import source_problem

            problem = source_problem(self.data)
            if problem is not None:
                problems.append(problem)
        if not self.sample_temperature > 0:
            problems.append(f"sample_temperature {self.sample_temperature} must be > 0")
        if not 0 < self.sample_top_p <= 1:
            problems.append(f"sample_top_p {self.sample_top_p} must be in (0, 1]")
        for name in ("calib_samples", "calib_len", "batch_size", "seq_len", "bench_prompt", "bench_gen",
                     "bench_reps", "eval_tokens"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} {getattr(self, name)} must be > 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr {self.lr} must be a positive number")
        if self.quants:
            from edgeprune.errors import ExportError
            from edgeprune.quant_presets import route_quants

            try:
                routed = route_quants(list(self.quants))
                stray = [q for f in ("gguf", "onnx") if f not in self.formats for q in routed[f]]
                if stray:
                    problems.append(f"quants {stray} are for a format not in formats {self.formats}")
            except ExportError as e:
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

    def _type_problems(self):
        """Values of the wrong type (a TOML `ratio = "half"`, `devices = 3`): named, not a traceback."""
        for f in fields(self):
            v = getattr(self, f.name)
            default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
            if v is None and default is None:  # optional keys left unset
                continue
            if isinstance(default, bool) or f.name == "incremental" or f.name == "teacher_kd":
                ok = isinstance(v, bool)
            elif isinstance(default, list):
                ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
            elif isinstance(default, float) or f.name in ("ratio", "kd_alpha", "kd_temp", "lr", "sample_temperature",
                                                         "sample_top_p"):
                ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            elif isinstance(default, int) or f.name in ("params", "align"):
                ok = isinstance(v, int) and not isinstance(v, bool)
            else:
                ok = isinstance(v, str)
            if not ok:
                kind = type(default).__name__ if default is not None else ("int" if f.name in ("params", "align")
                                                                           else "str")
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
        unknown = sorted(set(raw) - known)
        if unknown:
            raise EdgepruneError(f"{where}: unknown key(s) {unknown}; known: {sorted(known)}")
        raw = dict(raw)
        for k in ("devices", "formats", "quants"):  # `devices = "local"` or "a,b": the flags' comma form
            if isinstance(raw.get(k), str):
                raw[k] = [x.strip() for x in raw[k].split(",") if x.strip()]
        return cls(**raw)

    def to_toml(self) -> str:
        lines = ["# edgeprune ship recipe (written by the run that used it)"]
        for k, v in asdict(self).items():
            if v is None:
                lines.append(f"# {k} = (unset)")
            else:
                lines.append(f"{k} = {json.dumps(v)}")  # JSON scalars/lists are valid TOML here
        return "\n".join(lines) + "\n"


# Flag names shared with the other verbs (one name per idea, issue 16): the recipe keys keep their
# plural names in TOML; the old plural flags stay as hidden aliases.
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


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per recipe field; defaults are None so only given flags override the recipe."""
    from edgeprune.cli_flags import csv_list, hidden_alias

    for f in fields(Recipe):
        if f.name == "model":
            continue  # positional
        flag = FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f.metadata["help"] + _default_text(default, f.metadata["help"])
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
            continue
        if isinstance(default, list):
            action = p.add_argument(flag, dest=f.name, default=None, help=help_, action="extend", type=csv_list,
                                    metavar="A,B")
        else:
            typ = {"ratio": float, "kd_alpha": float, "kd_temp": float, "lr": float, "sample_temperature": float,
                   "sample_top_p": float}.get(f.name)
            if typ is None:
                typ = int if isinstance(default, int) or f.name in ("params", "align") else str
            action = p.add_argument(flag, dest=f.name, type=typ, default=None, help=help_)
        if f.name in FLAG_NAMES:
            hidden_alias(p, action, "--" + f.name.replace("_", "-"))


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    base = asdict(Recipe.from_toml(Path(args.recipe))) if getattr(args, "recipe", None) else asdict(Recipe())
    for f in fields(Recipe):
        v = getattr(args, f.name, None)
        if v is not None:
            base[f.name] = v
    return Recipe(**base)
