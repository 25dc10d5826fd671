"""ONNX exporter (DESIGN §6): trace EdgeLM with an explicit KV cache, quantize per
preset, validate every file in onnxruntime against PyTorch. Registers "onnx" in export.registry.

Exporter used: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript, opset 20). It traces
our model as is, including heterogeneous widths and 0-length pasts, and names dynamic axes from
`torch.export.Dim`s. The TorchScript exporter (`dynamo=False`) is only a fallback for a torch
whose dynamo exporter fails on the model; it is logged when used.

Files in out_dir: `model.onnx` (fp32; the name optimum's ORTModelForCausalLM loads by default),
`model_<preset>.onnx` per quant preset, external data `<file>.data` beside a file when the model
is over EXTERNAL_DATA_BYTES, plus config.json / generation_config.json / tokenizer files so a
uniform export loads with `ORTModelForCausalLM.from_pretrained(out_dir)`.
Inputs/outputs and the KV numbering for heterogeneous models: see onnx_wrapper.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from edgeprune.files.checkpoint import Checkpoint, copy_tokenizer_files
from edgeprune.base.errors import ExportError, FidelityError
from edgeprune.export.fidelity import check_tolerance, float32_model, logit_fidelity, reference_logits
from edgeprune.base.hashing import file_sha256
from edgeprune.export.onnx_quant import quantize_onnx
from edgeprune.export.onnx_runtime import OnnxLM
from edgeprune.export.onnx_wrapper import (ATTENTION_MASK, FlatKVModel, input_names, kv_layers, kv_shape,
                                           output_names)
from edgeprune.export.registry import Artifact, register_exporter
from edgeprune.shape.model import EdgeLM
from edgeprune.shape.quant_presets import FP32_REL_TOL, OnnxPreset, onnx_preset

log = logging.getLogger(__name__)

# ONNX protobufs are capped at 2 GiB; keep weights in a side file well before that
EXTERNAL_DATA_BYTES = int(1.5e9)
OPSET = 20  # dynamo exporter's default (torch 2.11-2.13); ORT 1.20+ runs it
# optimum's axis names (exporters/onnx/model_configs.py, TextDecoderWithPositionIdsOnnxConfig)
BATCH, SEQ, PAST = "batch_size", "sequence_length", "past_sequence_length"
TOTAL = "past_sequence_length + sequence_length"
META_KEY = "edgeprune"  # ONNX metadata_props key: JSON with spec and KV layer list


# ----- fp32 graph ------------------------------------------------------------------------------

def _example_inputs(model: EdgeLM) -> tuple[torch.Tensor, ...]:
    """Trace inputs: batch 2, 5 new tokens, 3 past (sizes 0/1 would be specialised by torch.export)."""
    spec = model.spec
    B, T, P = 2, 5, 3
    ids = torch.randint(0, spec.vocab_size, (B, T))
    mask = torch.ones(B, P + T, dtype=torch.long)
    pos = torch.arange(P, P + T)[None].expand(B, T).contiguous()
    past = []
    for layer in kv_layers(spec):
        past += [torch.zeros(kv_shape(spec, layer, B, P)), torch.zeros(kv_shape(spec, layer, B, P))]
    return (ids, mask, pos, *past)


def _export_dynamo(wrapper: FlatKVModel, args: tuple, path: Path, external: bool, meta: str) -> None:
    import onnx_ir as ir
    from torch.export import Dim

    spec = wrapper.lm.spec
    batch, seq, past = Dim(BATCH), Dim(SEQ), Dim(PAST)
    n_past = len(args) - 3
    dynamic_shapes = {
        "input_ids": {0: batch, 1: seq},
        # past + seq: torch.export cannot name a sum of two Dims, so AUTO here, renamed below
        "attention_mask": {0: batch, 1: Dim.AUTO},
        "position_ids": {0: batch, 1: seq},
        "past_flat": tuple({0: batch, 2: past} for _ in range(n_past)),
    }
    prog = torch.onnx.export(wrapper, args, dynamo=True, input_names=input_names(spec),
                             output_names=output_names(spec), dynamic_shapes=dynamic_shapes,
                             opset_version=OPSET, optimize=True, verbose=False)
    mask_in = next(v for v in prog.model.graph.inputs if v.name == ATTENTION_MASK)
    mask_in.shape = ir.Shape([BATCH, TOTAL])
    prog.model.metadata_props[META_KEY] = meta
    for node in prog.model.graph.all_nodes():
        # the exporter records each node's Python stack trace: half the file for small models,
        # and local paths nobody downstream needs
        node.metadata_props.clear()
    prog.save(str(path), external_data=external)


def _export_torchscript(wrapper: FlatKVModel, args: tuple, path: Path, external: bool, meta: str) -> None:
    import onnx

    spec = wrapper.lm.spec
    axes: dict[str, dict[int, str]] = {"input_ids": {0: BATCH, 1: SEQ}, ATTENTION_MASK: {0: BATCH, 1: TOTAL},
                                       "position_ids": {0: BATCH, 1: SEQ}, "logits": {0: BATCH, 1: SEQ}}
    for name in input_names(spec)[3:]:
        axes[name] = {0: BATCH, 2: PAST}
    for name in output_names(spec)[1:]:
        axes[name] = {0: BATCH, 2: TOTAL}
    torch.onnx.export(wrapper, args, str(path), dynamo=False, input_names=input_names(spec),
                      output_names=output_names(spec), dynamic_axes=axes, opset_version=17)
    model = onnx.load(str(path))
    model.metadata_props.add(key=META_KEY, value=meta)
    onnx.save_model(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                    location=f"{path.name}.data")


def export_fp32(model: EdgeLM, path: Path, external_data: Optional[bool] = None) -> dict[str, Any]:
    """Write `model` as an fp32 ONNX graph with flat KV inputs/outputs to `path`.

    Returns details (exporter used, KV layers, external data). `path`'s directory should be a
    scratch directory: the caller moves the finished file (and its `.data`) into place.
    """
    spec = model.spec
    model = model.eval()
    if external_data is None:
        external_data = spec.n_params * 4 > EXTERNAL_DATA_BYTES
    wrapper = FlatKVModel(model).eval()
    args = _example_inputs(model)
    meta = json.dumps({"spec": spec.to_dict(), "kv_layers": kv_layers(spec),
                       "kv_naming": "past_key_values.{layer}.key|value; layers without attention skipped"})
    exporter = "torch.onnx.export(dynamo=True)"
    with torch.no_grad():
        try:
            _export_dynamo(wrapper, args, path, external_data, meta)
        except Exception as e:  # torch.export / onnxscript failures vary by torch version
            log.warning("dynamo ONNX exporter failed (%s: %s); falling back to the TorchScript exporter",
                        type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "")
            exporter = "torch.onnx.export(dynamo=False) [fallback]"
            try:
                _export_torchscript(wrapper, args, path, external_data, meta)
            except Exception as e2:
                raise ExportError(f"ONNX export of a {spec.n_layers}-layer model failed with both exporters: "
                                  f"dynamo: {type(e).__name__}; torchscript: {type(e2).__name__}: "
                                  f"{str(e2).splitlines()[0][:200] if str(e2) else ''}") from e2
    return {"exporter": exporter, "kv_layers": kv_layers(spec), "external_data": bool(external_data)}


# ----- validation ------------------------------------------------------------------------------

def _tokens_1d(check_tokens: Any, vocab: int) -> np.ndarray:
    tokens = np.asarray(check_tokens.cpu() if isinstance(check_tokens, torch.Tensor) else check_tokens,
                        dtype=np.int64).reshape(-1)
    if tokens.size < 3:
        raise ExportError(f"the check tokens need at least 3 tokens, got {tokens.size}")
    if tokens.min() < 0 or tokens.max() >= vocab:
        raise ExportError(f"check token ids span [{tokens.min()}, {tokens.max()}], outside vocab {vocab}")
    return tokens


@torch.no_grad()
def validate_onnx(path: Path, ref: np.ndarray, tokens: np.ndarray, n_layers: int,
                  rel_tol: Optional[float], threads: Optional[int] = None) -> dict[str, float]:
    """Reload `path` in onnxruntime and compare with the PyTorch logits `ref` (T, V) on `tokens`.

    Two passes: the whole sequence at once (empty past, as optimum's first step), and a prefill of
    tokens[:-1] followed by one decode step through the exported KV cache. rel_tol (fp32) ->
    FidelityError above it; None (quantized) -> only NaN / absurd perplexity fail.
    """
    lm = OnnxLM(path, threads=threads)
    got = lm.logits(tokens)  # (T, V)
    fid = logit_fidelity(ref, got, tokens)
    _, past = lm.forward(tokens[None, :-1])
    step, present = lm.forward(tokens[None, -1:], past)  # (1, 1, V)
    scale = float(np.abs(ref).max()) or 1.0
    fid["kv_step_max_abs_diff"] = float(np.abs(step[0, -1] - ref[-1]).max())
    fid["kv_step_rel_diff"] = fid["kv_step_max_abs_diff"] / scale
    for name, kv in present.items():
        if kv.shape[2] != len(tokens):
            raise ExportError(f"{path.name}: {name} after prefill + 1 step has length {kv.shape[2]}, "
                              f"expected {len(tokens)}; the exported KV cache is wrong")
    what = f"{path.name} ({n_layers} layers)"
    if rel_tol is not None:
        check_tolerance(fid, rel_tol, what)
        check_tolerance({**fid, "max_abs_diff": fid["kv_step_max_abs_diff"], "rel_diff": fid["kv_step_rel_diff"]},
                        rel_tol, f"{what}, KV-cache decode step")
    vocab = ref.shape[-1]
    if not all(math.isfinite(fid[k]) for k in ("max_abs_diff", "ppl", "kv_step_max_abs_diff")):
        raise FidelityError(f"{what}: non-finite logits or perplexity ({fid}); the quantized file is broken")
    if fid["ppl"] > 2 * vocab:
        raise FidelityError(f"{what}: perplexity {fid['ppl']:.4g} is worse than guessing uniformly over "
                            f"{vocab} tokens (reference {fid['ppl_ref']:.4g}); the quantized file is broken")
    return fid


# ----- the exporter ----------------------------------------------------------------------------

def _side_files(onnx_path: Path) -> list[Path]:
    """The .onnx file and any external-data files written beside it."""
    return [onnx_path, *sorted(p for p in onnx_path.parent.iterdir()
                               if p != onnx_path and p.name.startswith(onnx_path.name))]


def _write_config(ckpt: Checkpoint, scratch: Path) -> None:
    """config.json (+ generation config, tokenizer) beside the files, for ORTModelForCausalLM."""
    config = ckpt.spec.to_hf_config()
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if k in ckpt.config:
            config[k] = ckpt.config[k]
    config["use_cache"] = True
    (scratch / "config.json").write_text(json.dumps(config, indent=2))
    if "auto_map" in config:  # heterogeneous: the config names our remote-code file; ship it too
        from edgeprune.shape.spec import REMOTE_CODE_FILE, REMOTE_CODE_PATH

        shutil.copy2(REMOTE_CODE_PATH, scratch / REMOTE_CODE_FILE)
    src = Path(ckpt.path) if ckpt.path else None
    if src is not None and (src / "generation_config.json").is_file():
        shutil.copy2(src / "generation_config.json", scratch / "generation_config.json")
    else:
        gen = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}
        (scratch / "generation_config.json").write_text(json.dumps(gen, indent=2))
    if src is not None:  # the same tokenizer_config fixes as the HF output (loads on 4.57 and 5.x)
        copy_tokenizer_files(src, scratch)


def _reference_model(ckpt: Checkpoint) -> EdgeLM:
    return float32_model(ckpt.model, "cpu").eval()


@register_exporter("onnx")
def export_onnx(ckpt: Checkpoint, out_dir: Path, quants: list[str], check_tokens: Any, *,
                threads: Optional[int] = None, external_data: Optional[bool] = None,
                **_options: Any) -> list[Artifact]:
    """Export `ckpt` to ONNX fp32 plus each preset in `quants`, validating every file.

    Everything is written to a scratch directory inside out_dir and only moved into place once
    all files passed validation: a failure or Ctrl-C leaves no partial file.
    """
    from edgeprune.base.progress import progress_bar

    presets: list[OnnxPreset] = [onnx_preset("fp32")]
    for q in quants:
        p = onnx_preset(q)
        if p not in presets:
            presets.append(p)
    model = _reference_model(ckpt)
    spec = model.spec
    tokens = _tokens_1d(check_tokens, spec.vocab_size)
    ref = reference_logits(model, tokens)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = out_dir / f".onnx.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    artifacts: list[Artifact] = []
    try:
        fp32_path = scratch / presets[0].file_name
        base_details: dict[str, Any] = {}
        for preset in progress_bar(presets, desc="onnx", unit="file"):
            path = scratch / preset.file_name
            if preset.kind == "float":
                base_details = export_fp32(model, path, external_data)
                details = {**base_details, "tool": base_details["exporter"]}
                rel_tol: Optional[float] = FP32_REL_TOL
            else:
                tool = quantize_onnx(fp32_path, path, preset, base_details["external_data"])
                details = {"tool": tool, "kv_layers": base_details["kv_layers"],
                           "external_data": base_details["external_data"]}
                rel_tol = None
            details["preset"] = {"kind": preset.kind, "description": preset.description,
                                 **({"block_size": preset.block_size} if preset.kind == "int4" else {}),
                                 **({"weight_type": preset.weight_type, "per_channel": preset.per_channel,
                                     "isa": preset.optimum_isa} if preset.kind == "int8" else {})}
            fid = validate_onnx(path, ref, tokens, spec.n_layers, rel_tol, threads)
            files = _side_files(path)
            details["files"] = [f.name for f in files]
            log.info("%s: rel %.3g, top-1 %.3f, ppl %.4g (ref %.4g)", preset.file_name, fid["rel_diff"],
                     fid["top1_agreement"], fid["ppl"], fid["ppl_ref"])
            artifacts.append(Artifact(format="onnx", quant=preset.name, path=out_dir / preset.file_name,
                                      bytes=sum(f.stat().st_size for f in files), sha256=file_sha256(path),
                                      fidelity=fid, details=details))
        _write_config(ckpt, scratch)
        # data files first, graphs after: a visible .onnx always has its weights beside it
        for f in sorted(scratch.iterdir(), key=lambda p: p.suffix == ".onnx"):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return artifacts
