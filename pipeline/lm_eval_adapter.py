"""Zero-shot tasks through lm-eval, on OUR model object.

lm-eval's `HFLM` accepts an already built model; it needs `.config`, `.device`, `.tie_weights()`
and `model(ids).logits`. `_EdgeLMFacade` gives an EdgeLM exactly that surface (so heterogeneous
models — per-layer widths, attention- or MLP-free layers — are scored by lm-eval's own
loglikelihood code), and `EdgeHFLM` routes generation through `EdgeLM.generate` (lm-eval cuts the
text at the task's stop strings itself).

Tasks are lm-eval registry names (their datasets must be reachable: the `datasets` cache or a
network) or paths to local task YAML files; a YAML's relative `data_files` are resolved against
the YAML's own folder so an offline task (YAML + JSONL beside it) runs from any working directory.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import torch

from edgeprune.base.errors import DataError

if TYPE_CHECKING:
    from lm_eval.api.model import LM
    from lm_eval.tasks import TaskManager

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def _require_lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.models.huggingface import HFLM
    except ImportError as e:
        raise DataError(f"zero-shot tasks need lm-eval: pip install 'edgeprune[eval]' ({e})") from None
    return HFLM


class _EdgeLMFacade(torch.nn.Module):
    """The slice of a transformers PreTrainedModel that HFLM touches, around an EdgeLM."""

    def __init__(self, model: torch.nn.Module, max_length: int):
        super().__init__()
        import transformers

        self.inner = model
        spec = model.spec
        # a plain config: heterogeneous widths need no Llama/Qwen2 config validation
        # (transformers 5 renamed the class PreTrainedConfig and kept the old name as an alias)
        config_cls = getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig
        self.config = config_cls(vocab_size=spec.vocab_size, max_position_embeddings=max_length)

    @property
    def device(self) -> torch.device:
        return next(self.inner.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.inner.parameters()).dtype

    def tie_weights(self) -> None:  # EdgeLM ties at construction
        pass

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **_: Any):
        return self.inner(input_ids, attention_mask=attention_mask)  # .logits (B, T, vocab)


def _hf_tokenizer(tokenizer_dir: PathLike):
    """The model's own tokenizer.json as a PreTrainedTokenizerFast (never re-derived)."""
    from transformers import PreTrainedTokenizerFast

    from edgeprune.data.tokens import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)  # validates and finds the special tokens
    eot = tok._tok.id_to_token(tok.eos_id) if tok.eos_id is not None else None
    bos = tok._tok.id_to_token(tok.bos_id) if tok.bos_id is not None else None
    return PreTrainedTokenizerFast(tokenizer_file=str(tok.path), eos_token=eot, bos_token=bos,
                                   pad_token=eot, unk_token=eot, clean_up_tokenization_spaces=False)


def make_lm(model: torch.nn.Module, tokenizer_dir: PathLike, batch_size: int = 8,
            max_length: Optional[int] = None) -> LM:
    """An lm-eval `LM` (an HFLM subclass) scoring `model` with the tokenizer in `tokenizer_dir`."""
    HFLM = _require_lm_eval()
    max_length = max_length or min(int(model.spec.max_position_embeddings), 2048)

    class EdgeHFLM(HFLM):
        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            """lm-eval left-pads a batch of contexts (B, T); EdgeLM.generate takes no padding
            mask, so each row is continued from its unpadded tokens and the rows are returned as
            [padded context | new tokens | right padding], the layout HFLM slices."""
            mask = generation_kwargs.get("attention_mask")  # (B, T), 0 = left padding
            temperature = float(generation_kwargs.get("temperature", 0.0) or 0.0)
            if not generation_kwargs.get("do_sample", False):
                temperature = 0.0  # lm-eval's default: greedy
            eos = self.tokenizer.eos_token_id
            new_tokens = max(1, max_length - context.shape[1])
            rows = []
            for i in range(context.shape[0]):
                ids = context[i] if mask is None else context[i][mask[i].bool()]  # (T_i,)
                out = self.model.inner.generate(ids[None], max_new_tokens=new_tokens, temperature=temperature,
                                                eos_token_id=eos)  # (1, T_i + n_i)
                rows.append(torch.cat([context[i], out[0, ids.numel():]]))
            width = max(r.numel() for r in rows)
            pad = eos if eos is not None else 0
            return torch.stack([torch.nn.functional.pad(r, (0, width - r.numel()), value=pad) for r in rows])

    facade = _EdgeLMFacade(model, max_length)
    return EdgeHFLM(pretrained=facade, tokenizer=_hf_tokenizer(tokenizer_dir), backend="causal",
                    batch_size=batch_size, max_length=max_length)


# ----- tasks ---------------------------------------------------------------------------------------

def _is_task_file(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


def local_task_config(path: PathLike) -> dict[str, Any]:
    """A task YAML as a config dict, with relative `data_files` made absolute (beside the YAML)."""
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"task file {str(path)!r} does not exist")
    try:
        cfg = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise DataError(f"{p} is not valid YAML ({e})") from None
    if not isinstance(cfg, dict) or "task" not in cfg:
        raise DataError(f"{p} is not an lm-eval task config (no 'task' key)")
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        resolved = {}
        for split, f in files.items():
            f_path = Path(f) if Path(f).is_absolute() else p.parent / f
            if not f_path.is_file():
                raise DataError(f"{p}: data file {f!r} for split {split!r} not found at {f_path}")
            resolved[split] = str(f_path)
        cfg["dataset_kwargs"] = {**cfg["dataset_kwargs"], "data_files": resolved}
    return cfg


def resolve_tasks(tasks: Sequence[str], include_path: Optional[PathLike] = None) -> tuple[list[Any], TaskManager]:
    """(task list for simple_evaluate, TaskManager) — YAML paths become config dicts, names are
    checked against lm-eval's registry (plus `include_path`) up front, with a one-line error."""
    _require_lm_eval()
    from lm_eval.tasks import TaskManager

    named = [t for t in tasks if not _is_task_file(t)]
    try:  # indexing lm-eval's ~15k registry YAMLs takes seconds: skip it when only files are asked
        manager = TaskManager(include_path=str(include_path) if include_path else None,
                              include_defaults=bool(named))
    except TypeError:  # older lm-eval without include_defaults
        manager = TaskManager(include_path=str(include_path) if include_path else None)
    out: list[Any] = []
    unknown = []
    for t in tasks:
        if _is_task_file(t):
            out.append(local_task_config(t))
        elif t in manager.all_tasks:
            out.append(t)
        else:
            unknown.append(t)
    if unknown:
        raise DataError(f"unknown lm-eval task(s) {', '.join(unknown)}; pass registry names "
                          f"(lm_eval --tasks list) or paths to task .yaml files")
    return out, manager


def run_tasks(model: torch.nn.Module, tokenizer_dir: PathLike, tasks: Sequence[str],
              limit: Optional[int] = None, batch_size: int = 8, num_fewshot: Optional[int] = None,
              include_path: Optional[PathLike] = None) -> dict[str, dict[str, float]]:
    """Run lm-eval tasks on `model`; returns {task: {metric: value}} from lm-eval's own results
    (metrics as lm-eval names them, e.g. 'acc,none', 'acc_norm,none', 'acc_stderr,none')."""
    from lm_eval import simple_evaluate

    task_list, manager = resolve_tasks(tasks, include_path)
    lm = make_lm(model, tokenizer_dir, batch_size=batch_size)
    try:
        out = simple_evaluate(model=lm, tasks=task_list, task_manager=manager, limit=limit,
                              num_fewshot=num_fewshot, log_samples=False, bootstrap_iters=0,
                              verbosity="WARNING")
    except (ConnectionError, FileNotFoundError, OSError) as e:
        raise DataError(f"lm-eval could not load a task dataset ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''}); offline, use local task YAML "
                          f"+ JSON files") from None
    if out is None:  # non-zero rank in distributed runs
        return {}
    results: dict[str, dict[str, float]] = {}
    for task, metrics in out["results"].items():
        results[task] = {k: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return results


__all__ = ["make_lm", "run_tasks", "resolve_tasks", "local_task_config"]
