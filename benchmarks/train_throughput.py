"""Training throughput: tokens/s and MFU of the real training step.

Runs `Trainer.train_step` (AdamW, bf16 autocast, grad clipping: exactly what `edgeprune
train` runs) on random tokens for a preset shape, with torch.compile off and on, and writes
a markdown table + JSON. Target on one H100: >= 40% MFU for the SmolLM-135M shape.

    python benchmarks/train_throughput.py                        # smollm-135m, needs a GPU
    python benchmarks/train_throughput.py --preset tiny --steps 5 --warmup 2 --seq-len 64 --micro-batch 4
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edgeprune.shape.model import build_model
from edgeprune.shape.arch_presets import preset_spec
from edgeprune.base.table import human_count, markdown_table
from edgeprune.train import distributed as D
from edgeprune.train.config import TrainConfig
from edgeprune.train.train_data import from_tokens
from edgeprune.train.loop import Trainer
from edgeprune.base.torch_device import resolve_device
from edgeprune.train.mfu import mfu, peak_flops, train_flops_per_token

HERE = Path(__file__).resolve().parent


def student_spec(preset: str, layers: int = 0, ffn: int = 0):
    """The preset's shape, optionally with fewer layers / a narrower FFN (a pruned student: the
    16.3M shape of shared/refmodels/README.md is smol-llama-32m with 12 layers and FFN 384)."""
    from edgeprune.shape.spec import ArchSpec

    spec = preset_spec(preset)
    if not (layers or ffn):
        return spec
    lay = spec.layers[0]
    return ArchSpec.uniform(family=spec.family, vocab_size=spec.vocab_size, hidden_size=spec.hidden_size,
                            n_layers=layers or spec.n_layers, n_heads=lay.n_heads, n_kv_heads=lay.n_kv_heads,
                            ffn_dim=ffn or lay.ffn_dim, head_dim=spec.head_dim,
                            tie_word_embeddings=spec.tie_word_embeddings,
                            max_position_embeddings=spec.max_position_embeddings)


def measure(preset: str, compile_: bool, seq_len: int, micro_batch: int, steps: int, warmup: int,
            device: str, activation_checkpointing: bool, work: Path, teacher_preset: str = "",
            layers: int = 0, ffn: int = 0) -> dict:
    spec = student_spec(preset, layers, ffn)
    dev = resolve_device(device)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, spec.vocab_size, size=(steps + warmup + 4) * micro_batch * (seq_len + 1) * 2,
                          dtype=np.int64).astype(np.uint32)
    data = from_tokens(tokens, valid_fraction=0.05, vocab_size=spec.vocab_size)
    cfg = TrainConfig(tokens=(steps + warmup) * seq_len * micro_batch, seq_len=seq_len, micro_batch=micro_batch,
                      compile=compile_, activation_checkpointing=activation_checkpointing, progress=False,
                      eval_windows=1, warmup_frac=0.0, kd_alpha=1.0 if teacher_preset else 0.0)
    env = D.DistEnv(device=dev)
    teacher = build_model(preset_spec(teacher_preset), seed=1) if teacher_preset else None
    trainer = Trainer(build_model(spec, seed=0), data, cfg, work / f"{preset}-{compile_}-{teacher_preset}", env=env,
                      teacher=teacher)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):  # includes compilation
        trainer.train_step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        parts = trainer.train_step()
    sync()
    dt = time.perf_counter() - t0
    tps = steps * seq_len * micro_batch / dt
    u = mfu(spec, seq_len, tps, peak_flops(dev))
    mem = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
    t_flops = preset_spec(teacher_preset).flops_per_token(seq_len) if teacher_preset else 0  # forward only
    peak = peak_flops(dev)
    return {"preset": preset + (f" (L{spec.n_layers}, FFN {spec.layers[0].ffn_dim})" if layers or ffn else ""),
            "teacher": teacher_preset or None,
            "mfu_with_teacher": (train_flops_per_token(spec, seq_len) + t_flops) * tps / peak if peak else None,
            "params": spec.n_params, "compile": compile_, "seq_len": seq_len,
            "micro_batch": micro_batch, "steps": steps, "tokens_per_s": tps, "mfu": u,
            "step_ms": 1000 * dt / steps, "loss": float(parts["loss"]), "peak_mem_bytes": mem,
            "train_flops_per_token": train_flops_per_token(spec, seq_len),
            "precision": "bf16 autocast" if trainer.use_bf16 else "fp32",
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smollm-135m")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--compile", choices=("off", "on", "both"), default="both")
    ap.add_argument("--activation-checkpointing", action="store_true")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: the GPU if any)")
    ap.add_argument("--teacher-preset", default="", help="distil from a (random-weight) teacher of this preset: "
                                                          "the KD recovery step with its teacher forward")
    ap.add_argument("--layers", type=int, default=0, help="student with this many layers (0: the preset's)")
    ap.add_argument("--ffn", type=int, default=0, help="student FFN width (0: the preset's)")
    ap.add_argument("--out", type=Path, default=HERE / "train_throughput")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    work = Path("/tmp/edgeprune-train-throughput")
    rows = [measure(args.preset, c, args.seq_len, args.micro_batch, args.steps, args.warmup, args.device,
                    args.activation_checkpointing, work, args.teacher_preset, args.layers, args.ffn) for c in modes]
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    table = markdown_table(
        ["preset", "params", "teacher", "device", "precision", "compile", "seq", "batch", "tokens/s", "step ms",
         "MFU", "MFU incl. teacher fwd"],
        [[r["preset"], human_count(r["params"]), r["teacher"] or "-", r["device"], r["precision"],
          "on" if r["compile"] else "off", r["seq_len"], r["micro_batch"], f"{r['tokens_per_s']:,.0f}",
          f"{r['step_ms']:.1f}", f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "- (no GPU peak)",
          f"{100 * r['mfu_with_teacher']:.1f}%" if r["mfu_with_teacher"] is not None else "-"] for r in rows])
    print(table)
    import sys

    md = ("# Training throughput (benchmarks/train_throughput.py)\n\n"
          f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`\n\n"
          "MFU = 3 x forward FLOPs/token (spec.flops_per_token(seq_len), PaLM convention) x tokens/s / "
          "dense bf16 peak of the GPU. Target: >= 40% on one H100 for smollm-135m.\n\n" + table + "\n")
    args.out.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
