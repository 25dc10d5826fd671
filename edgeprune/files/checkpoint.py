"""Checkpoints on disk (docs/DESIGN.md §3): HF-style directories, safetensors only.

`load_checkpoint` reads any local Llama / Qwen2-family directory (safetensors sharded or not,
or `pytorch_model.bin` through `torch.load(weights_only=True)`), tied or untied, uniform or with
per-layer widths, or a hub name when a network exists. `save_checkpoint` writes atomically: a
temporary sibling directory renamed into place, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from edgeprune.base.atomic_io import atomic_dir
from edgeprune.base.errors import CheckpointError, EdgepruneError, SpecError, UnsupportedArchitecture
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.spec import REMOTE_CODE_FILE, REMOTE_CODE_PATH, ArchSpec

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "vocab.json", "merges.txt", "tokenizer.model",
                   "added_tokens.json")
META_FILE = "edgeprune.json"  # our provenance + spec beside config.json
SHARD_BYTES = 2 * 1024 ** 3  # shard above 2 GiB, as HF does by default (5 GB) but smaller
_IGNORED_KEYS = ("rotary_emb.inv_freq",)  # buffers some old checkpoints saved


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model, its spec, and what the directory said about itself."""

    model: EdgeLM
    path: Optional[Path]  # the directory it came from (tokenizer lives there)
    config: dict[str, Any] = field(default_factory=dict)  # raw config.json
    meta: dict[str, Any] = field(default_factory=dict)  # edgeprune.json, {} for foreign ones

    @property
    def spec(self) -> ArchSpec:
        return self.model.spec


# ----- locating ------------------------------------------------------------------------------

def gguf_checkpoint_dir(path: PathLike) -> Path:
    """The checkpoint directory converted from GGUF `path` (converted now if not cached): float32
    weights dequantized from the file, its tokenizer rebuilt from the metadata
    (edgeprune/files/gguf_input.py reads, this writes)."""
    return _gguf_converted(Path(path).expanduser())[0]


def _gguf_converted(path: Path) -> tuple[Path, Optional[EdgeLM]]:
    """(the cached checkpoint directory of GGUF `path`, the model built from the file when it was
    converted now, else None): a caller that wants the model takes this one rather than building
    it a second time from the directory just written."""
    import tempfile

    from edgeprune.files.gguf_input import gguf_cache_dir, read_gguf_model

    from edgeprune.base.plan import Plan

    out, digest = gguf_cache_dir(path)
    if (out / "config.json").is_file():
        return out, None
    size = path.stat().st_size
    # a real model's conversion takes a minute or more on a CPU: say what it does and how long
    # it has been at it (a test's tiny file converts in a blink, without the lines)
    plan = Plan(f"convert {path.name}", [("read and dequantize its tensors", size), ("write a float32 checkpoint", size)],
                announce=size >= CONVERSION_PLAN_BYTES, every_s=None if size >= CONVERSION_PLAN_BYTES else 0)
    with _maybe(plan, 0, size >= CONVERSION_PLAN_BYTES):
        g = read_gguf_model(path, digest, progress=size >= CONVERSION_PLAN_BYTES)
        with torch.device("meta"):  # filled by assignment: one copy of the weights, as load_checkpoint
            model = EdgeLM(g.spec)
        load_weights(model, g.state, where=path.name, assign=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _maybe(plan, 1, size >= CONVERSION_PLAN_BYTES), \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.tok-", dir=out.parent) as tok_dir:
        g.write_tokenizer(Path(tok_dir))
        save_checkpoint(model, out, tokenizer_dir=Path(tok_dir), config_extra=g.config_extra, meta=g.meta)
    log.info("converted %s to %s (cached: later runs reuse it)", path.name, out)
    return out, model.eval()


CONVERSION_PLAN_BYTES = 20_000_000  # GGUF files from this size on convert with a plan and progress lines


def _maybe(plan: Any, i: int, shown: bool) -> Any:
    """Step `i` of `plan` when its lines are shown, else nothing."""
    import contextlib

    return plan.step(i) if shown else contextlib.nullcontext()


def resolve_checkpoint_dir(name_or_path: PathLike) -> Path:
    """A local directory, a GGUF file (converted into a cached directory: edgeprune/files/gguf_input.py),
    or a hub name fetched through huggingface_hub (when a network exists)."""
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            from edgeprune.files.gguf_input import is_gguf_file

            if is_gguf_file(p):  # converted once into a cached checkpoint directory
                return gguf_checkpoint_dir(p)
            raise CheckpointError(f"{p} is a file but not a GGUF; a checkpoint is a directory with config.json "
                                  f"or a .gguf file")
        return p
    text = str(name_or_path)
    looks_like_hub = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_hub:
        raise CheckpointError(f"checkpoint directory {text!r} does not exist")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            text, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "tokenizer.model"]
        )
    except Exception as e:  # offline, unknown repo, gated: all end the same way for a user
        raise CheckpointError(
            f"{text!r} is not a local directory and could not be fetched from the Hugging Face hub "
            f"({type(e).__name__}); download it where a network exists and pass the directory"
        ) from None
    return Path(local)


MAX_JSON_BYTES = 64 << 20  # a config or edgeprune.json is a few KB; a per-layer spec of 4096 layers ~1 MB


def read_json(path: Path, remedy: str = "") -> Any:
    """JSON of a small descriptive file, its size bounded before it is read."""
    size = path.stat().st_size
    if not path.is_file() or size > MAX_JSON_BYTES:
        raise CheckpointError(f"{path} is {'not a regular file' if not path.is_file() else f'{size:,} bytes'}: "
                              f"not a model's description{remedy}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}){remedy}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is not valid JSON (nested too deeply){remedy}") from None


def read_config(directory: Path) -> dict[str, Any]:
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no config.json: not a Hugging Face model directory")
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} does not hold a JSON object")
    archs = cfg.get("architectures") or []
    if archs and not any(a.endswith("ForCausalLM") for a in archs):
        raise UnsupportedArchitecture(f"{directory}: architectures {archs} is not a causal LM")
    return cfg


def read_meta(directory: Path) -> dict[str, Any]:
    """edgeprune.json of a directory ({} when absent); CheckpointError when unreadable."""
    meta_path = Path(directory) / META_FILE
    if not meta_path.is_file():
        return {}
    meta = read_json(meta_path, "; re-create the checkpoint or delete the file to load it as a plain HF directory")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path} does not hold a JSON object")
    return meta


def spec_from_dir(directory: Path) -> ArchSpec:
    """The directory's ArchSpec: edgeprune.json's `spec`, else from config.json. A value of the
    wrong type (`"num_attention_heads": "four"`) is a CheckpointError naming the file."""
    meta = read_meta(directory)
    source = directory / (META_FILE if "spec" in meta else "config.json")
    try:
        if "spec" in meta:
            return ArchSpec.from_dict(meta["spec"])
        return ArchSpec.from_hf_config(read_config(directory))
    except SpecError as e:  # name the file the bad value came from
        raise SpecError(f"{source}: {e}") from None
    except EdgepruneError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, OverflowError) as e:
        raise CheckpointError(f"{source} has an invalid value ({type(e).__name__}: {e})") from None


# ----- reading weights -----------------------------------------------------------------------

def read_state_dict(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of the directory, from safetensors (preferred) or a weights-only .bin."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    files: list[Path]
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        files = _shard_files(directory, index)
    elif (directory / "model.safetensors").is_file():
        files = [directory / "model.safetensors"]
    else:
        files = sorted(directory.glob("*.safetensors"))
    state: dict[str, torch.Tensor] = {}
    if files:
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{f} is named in the shard index but missing")
            try:
                state.update(load_file(str(f)))
            except (SafetensorError, OSError, ValueError, RuntimeError) as e:
                raise CheckpointError(f"{f} is not a readable safetensors file ({e})") from None
        return state
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if not bins:
        raise CheckpointError(f"{directory} has no model.safetensors or pytorch_model.bin")
    for f in bins:
        try:  # weights_only: never unpickle arbitrary objects
            state.update(torch.load(f, map_location="cpu", weights_only=True))
        except Exception as e:
            raise CheckpointError(f"{f} could not be read with weights_only=True ({e})") from None
    return state


def _shard_files(directory: Path, index: Path) -> list[Path]:
    """The shard files a model.safetensors.index.json names; each must be a plain file name
    inside `directory` (an index naming `../../x.safetensors` would load weights from elsewhere)."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map")
    except (ValueError, UnicodeDecodeError, AttributeError) as e:
        raise CheckpointError(f"{index} is not a valid shard index ({e})") from None
    if not isinstance(weight_map, dict) or not weight_map \
            or not all(isinstance(v, str) for v in weight_map.values()):
        raise CheckpointError(f"{index} is not a valid shard index (needs a weight_map of tensor -> file name)")
    files = []
    for name in sorted(set(weight_map.values())):
        # by name, not by resolving: hub caches hold shards as symlinks into a blob store
        if not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
            raise CheckpointError(f"{index} names shard {name!r}, outside the checkpoint folder: refused")
        files.append(directory / name)
    return files


def load_weights(model: EdgeLM, state: Mapping[str, torch.Tensor], where: str = "checkpoint", *,
                 assign: bool = False) -> None:
    """Copy `state` into `model` by HF name, with the rules of DESIGN §3:
    tied heads may or may not be stored; norms beside removed blocks are ignored.
    With `assign`, the model's parameters become `state`'s tensors (converted to the parameter's
    dtype where it differs) instead of copies: a model built on the meta device is then filled
    without a second copy of the weights ever existing."""
    spec = model.spec
    own = model.state_dict()
    unexpected, mismatched, nonfinite = [], [], []
    for name, tensor in state.items():
        if name.endswith(_IGNORED_KEYS):
            continue
        if name == "lm_head.weight" and spec.tie_word_embeddings:
            continue
        if name not in own:
            if _is_orphan_norm(name, spec):
                continue
            unexpected.append(name)
            continue
        if tuple(own[name].shape) != tuple(tensor.shape):
            mismatched.append(f"{name} {tuple(tensor.shape)} vs spec {tuple(own[name].shape)}")
        elif tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            nonfinite.append(name)
    missing = [n for n in own if n not in state and not (n == "lm_head.weight" and spec.tie_word_embeddings)]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:4]}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
    if mismatched:
        problems.append(f"shape mismatch {mismatched[:3]}")
    if nonfinite:  # a NaN model would only yield ppl=nan later
        problems.append(f"NaN/inf values in {nonfinite[:3]}{' ...' if len(nonfinite) > 3 else ''}")
    if problems:
        raise CheckpointError(f"{where} does not match its config: " + "; ".join(problems))
    if assign:
        _assign_weights(model, state)
        return
    with torch.no_grad():
        for name, param in own.items():
            if name in state:
                param.copy_(state[name].to(param.dtype))


def _assign_weights(model: EdgeLM, state: Mapping[str, torch.Tensor]) -> None:
    """Point every parameter at its tensor in `state` (no copy when dtypes agree), then tie the head
    again: assignment replaces the embedding's Parameter object, which the tied head shared."""
    # the parameters themselves, not state_dict()'s detached views: those say requires_grad=False
    params = dict(model.named_parameters(remove_duplicate=False))
    for name, param in params.items():
        if name not in state:
            continue
        module_name, _, attr = name.rpartition(".")
        module = model.get_submodule(module_name)
        tensor = state[name].to(param.dtype)
        module._parameters[attr] = torch.nn.Parameter(tensor, requires_grad=param.requires_grad)
    if model.spec.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise CheckpointError(f"weights missing after loading: {left[:4]}")


def _check_weights_cover(spec: ArchSpec, state: Mapping[str, torch.Tensor], directory: Path) -> None:
    """Refuse, before the model is allocated, a config that describes more parameters than the
    weight files hold (a hostile or mismatched config.json would otherwise size the allocation)."""
    held = sum(int(t.numel()) for t in state.values())
    if spec.n_params > held:
        raise CheckpointError(f"{directory}: its config describes {spec.n_params:,} parameters but the weight "
                              f"files hold {held:,}: the config does not belong to these weights")


def _is_orphan_norm(name: str, spec: ArchSpec) -> bool:
    parts = name.split(".")
    if len(parts) == 5 and parts[:2] == ["model", "layers"] and parts[3] in (
            "input_layernorm", "post_attention_layernorm"):
        lay = spec.layers[int(parts[2])] if parts[2].isdigit() and int(parts[2]) < spec.n_layers else None
        if lay is None:
            return False
        return (parts[3] == "input_layernorm" and not lay.has_attention) or (
            parts[3] == "post_attention_layernorm" and not lay.has_mlp)
    return False


def load_checkpoint(name_or_path: PathLike, dtype: torch.dtype = torch.float32,
                    device: Union[str, torch.device] = "cpu") -> Checkpoint:
    """Load a checkpoint directory (or hub name, or GGUF file) into an EdgeLM."""
    from edgeprune.files.gguf_input import is_gguf_file

    p = Path(name_or_path).expanduser()
    if is_gguf_file(p):
        directory, model = _gguf_converted(p)
        if model is not None:  # converted just now: the model built from the file, not a second one
            return Checkpoint(model=model.to(device=device, dtype=dtype).eval(), path=directory,
                              config=read_config(directory), meta=read_meta(directory))
    else:
        directory = resolve_checkpoint_dir(name_or_path)
    config = read_config(directory)
    spec = spec_from_dir(directory)
    meta = read_meta(directory)
    state = read_state_dict(directory)
    _check_weights_cover(spec, state, directory)
    # built on the meta device and filled by assignment: the file's tensors become the weights,
    # so loading holds one copy (not a random init plus the file's) and initialises nothing
    with torch.device("meta"):
        model = EdgeLM(spec)
    load_weights(model, state, where=str(directory), assign=True)
    del state
    model = model.to(device=device, dtype=dtype).eval()
    return Checkpoint(model=model, path=directory, config=config, meta=meta)


def load_model(name_or_path: PathLike, **kw: Any) -> EdgeLM:
    return load_checkpoint(name_or_path, **kw).model


# ----- writing -------------------------------------------------------------------------------

def state_dict_for_save(model: EdgeLM, dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    return tensors_for_save(model.state_dict(), model.spec, dtype)


def tensors_for_save(state: Mapping[str, torch.Tensor], spec: ArchSpec,
                     dtype: Optional[torch.dtype] = None) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a model's tensors as checkpoints hold them (tied head dropped)."""
    out = {}
    for name, t in state.items():
        if name == "lm_head.weight" and spec.tie_word_embeddings:
            continue  # shared with embed_tokens; HF re-ties from the config
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[name] = t.contiguous().clone()
    return out


def save_checkpoint(
    model: EdgeLM,
    out_dir: PathLike,
    *,
    tokenizer_dir: Optional[PathLike] = None,
    config_extra: Optional[Mapping[str, Any]] = None,
    meta: Optional[Mapping[str, Any]] = None,
    dtype: Optional[torch.dtype] = None,
    shard_bytes: int = SHARD_BYTES,
    generation: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write `model` as an HF-style directory (config.json, generation_config.json,
    model.safetensors or shards + index, tokenizer files, edgeprune.json), atomically.
    `generation`: the source's generation_config.json values (its sampling settings) to keep; the
    token ids are this model's own."""
    from safetensors.torch import save_file

    spec = model.spec
    state = state_dict_for_save(model, dtype)
    config = spec.to_hf_config()
    extra = dict(config_extra or {})
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if k in extra:
            config[k] = extra[k]
    any_t = next(iter(state.values()))
    config["torch_dtype"] = str(any_t.dtype).replace("torch.", "")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        shards = _shard(state, shard_bytes)
        if len(shards) == 1:
            save_file(shards[0], str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            weight_map, total = {}, 0
            for i, shard in enumerate(shards, 1):
                fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / fname), metadata={"format": "pt"})
                for k, t in shard.items():
                    weight_map[k] = fname
                    total += t.numel() * t.element_size()
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        ids = ("bos_token_id", "eos_token_id", "pad_token_id")
        gen = {**{k: v for k, v in (generation or {}).items() if k not in ids},
               **{k: config[k] for k in ids if k in config}}
        (tmp / "generation_config.json").write_text(json.dumps(gen, indent=2))
        meta_out = dict(meta or {})
        meta_out["spec"] = spec.to_dict()
        meta_out["param_counts"] = spec.param_counts()
        (tmp / META_FILE).write_text(json.dumps(meta_out, indent=2))
        if "auto_map" in config:  # heterogeneous: transformers loads it through this file
            shutil.copy2(REMOTE_CODE_PATH, tmp / REMOTE_CODE_FILE)
        if tokenizer_dir is not None:
            copy_tokenizer_files(Path(tokenizer_dir), tmp)
    log.info("saved %s (%d params)", out_dir, spec.n_params)
    return out_dir


# tokenizer classes transformers 5.x writes that 4.57 does not have: with a tokenizer.json beside
# them, PreTrainedTokenizerFast is the same tokenizer on both
TOKENIZER_CLASSES_5X = ("TokenizersBackend", "PythonBackend", "SentencePieceBackend")


def copy_tokenizer_files(src: Path, dst: Path) -> list[str]:
    """Copy the tokenizer files of `src` into `dst`, and make the tokenizer_config one that plain
    `AutoTokenizer` loads on transformers 4.57 and 5.x without reading config.json (a
    heterogeneous config needs remote code) and whose output `model.generate(**tok(...))`
    accepts: PreTrainedTokenizerFast when no class or a 5.x-only class is named, 5.x's list of
    extra special tokens under its 4.x name, and `model_input_names` without
    token_type_ids (PreTrainedTokenizerFast's default includes them; no Llama/Qwen2 forward
    takes them). The chat template travels as `chat_template.jinja` and/or in the config, as the
    source had it. Returns the names copied."""
    copied = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
            copied.append(name)
    if "tokenizer.json" in copied:
        cfg_path = dst / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        changed = False
        if not cfg.get("tokenizer_class") or cfg["tokenizer_class"] in TOKENIZER_CLASSES_5X:
            cfg["tokenizer_class"] = "PreTrainedTokenizerFast"  # the one class both 4.57 and 5.x know
            changed = True
        extra = cfg.get("extra_special_tokens")
        if isinstance(extra, list):  # 5.x's list form; 4.57 reads a dict there and fails on a list
            named = cfg.get("additional_special_tokens") or []
            cfg["additional_special_tokens"] = [*named, *(t for t in extra if t not in named)]
            del cfg["extra_special_tokens"]
            changed = True
        if "model_input_names" not in cfg:
            cfg["model_input_names"] = ["input_ids", "attention_mask"]
            changed = True
        if changed:
            cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
            if "tokenizer_config.json" not in copied:
                copied.append("tokenizer_config.json")
    return copied


def _shard(state: dict[str, torch.Tensor], limit: int) -> list[dict[str, torch.Tensor]]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, t in state.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > limit:
            shards.append({})
            size = 0
        shards[-1][k] = t
        size += n
    return shards


def config_extra_of(ckpt: Checkpoint) -> dict[str, Any]:
    """The token ids a derived checkpoint keeps from its source config."""
    return {k: ckpt.config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in ckpt.config}


# edgeprune.json keys that record how a model was made; they travel down a derivation chain
LINEAGE_KEYS = ("source_model", "source", "pruning", "prune", "recovery", "teacher", "prune_aware",
                "from_scratch", "vocab")


def save_derived(model: EdgeLM, out_dir: PathLike, source: Checkpoint,
                 meta: Optional[Mapping[str, Any]] = None, *, tokenizer_dir: Optional[PathLike] = None,
                 config_extra: Optional[Mapping[str, Any]] = None, **kw: Any) -> Path:
    """Save a model derived from `source` (pruned, trained): same tokenizer and token ids.
    edgeprune.json keeps the stage records that made this model at top level (pruning, recovery,
    ...) and the source's own figures (its name, valid_ppl, trained tokens) under `source`: a
    shipped model's file never shows its teacher's name or perplexity as its own.
    `tokenizer_dir` / `config_extra` replace the source's tokenizer and token ids (a trimmed
    vocabulary renumbers them)."""
    src = {k: v for k, v in source.meta.items() if k not in ("spec", "param_counts")}
    merged = {k: src.pop(k) for k in LINEAGE_KEYS if k in src}
    if src:
        merged["source"] = {**(merged.get("source") or {}), **src}
    merged.setdefault("source_model", str(source.path) if source.path else None)
    merged.update(meta or {})
    return save_checkpoint(model, out_dir, tokenizer_dir=tokenizer_dir or source.path,
                           config_extra=config_extra_of(source) if config_extra is None else config_extra,
                           meta=merged, generation=kw.pop("generation", None) or _source_generation(source), **kw)


def _source_generation(source: Checkpoint) -> Optional[dict[str, Any]]:
    """The source's generation_config.json: a pruned or trained model keeps the sampling its
    authors chose (the app bundle reads it, checking each value). An unreadable one is said and
    left behind; its values are data either way, never interpreted here."""
    path = Path(source.path) / "generation_config.json" if source.path else None
    if path is None or not path.is_file():
        return None
    try:
        gen = read_json(path)
    except CheckpointError as e:
        log.warning("%s; the derived model keeps no sampling settings from it", e)
        return None
    return gen if isinstance(gen, dict) else None


__all__ = ["Checkpoint", "load_checkpoint", "load_model", "save_checkpoint", "save_derived",
           "read_state_dict", "load_weights", "EdgepruneError"]
