"""`edgeprune pretrain`: train a model from scratch from a preset or a spec file.

    edgeprune pretrain --arch tiny --data corpus.txt --tokens 5M --out runs/tiny
    torchrun --nproc_per_node 8 -m edgeprune.cli pretrain --arch smollm-135m --data hf:NAME ...

The vocabulary comes from the tokenizer (`--tokenizer DIR`, default the embedded one), which
is copied into the output checkpoint.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from edgeprune.base.errors import TrainError
from edgeprune.train.cli_common import training_outputs as outputs  # noqa: F401
from edgeprune.train.cli_common import (add_training_arguments, check_data_arg, check_epochs, config_from_args, copy_log,
                                        env_device, summary_table, tokens_of, work_dir_of)

if TYPE_CHECKING:
    from edgeprune.shape.spec import ArchSpec

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True, help="preset name (see edgeprune.shape.arch_presets) or a spec .json file")
    p.add_argument("--tokenizer", type=Path, default=None,
                   help="directory with tokenizer.json (default: the embedded tokenizer)")
    p.add_argument("--family", choices=("llama", "qwen2"), default="llama", help="family for a preset")
    add_training_arguments(p)


def resolve_arch(arch: str, vocab_size: int, family: str) -> ArchSpec:
    """A preset name or a spec JSON file -> ArchSpec whose vocabulary fits the tokenizer."""
    from edgeprune.shape.arch_presets import PRESETS, preset_spec

    path = Path(arch).expanduser()
    if arch in PRESETS:
        return preset_spec(arch, vocab_size=vocab_size, family=family)
    if path.suffix == ".json" and path.is_file():
        from edgeprune.files.spec_of import spec_of

        spec = spec_of(path)
        if spec.vocab_size < vocab_size:
            raise TrainError(f"{path} has vocab_size {spec.vocab_size} but the tokenizer emits {vocab_size} ids")
        return spec
    raise TrainError(f"--arch {arch!r} is neither a preset ({', '.join(PRESETS)}) nor an existing spec .json")


def run(args: argparse.Namespace) -> int:
    tokens_of(args)
    check_data_arg(args)
    from edgeprune.base.torch_device import resolve_device

    resolve_device(args.device)  # a bad --device fails before any work
    from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer

    tok_dir = args.tokenizer or embedded_tokenizer_dir()
    tok = load_tokenizer(tok_dir)
    spec = resolve_arch(args.arch, tok.vocab_size, args.family)

    from edgeprune.files.checkpoint import save_checkpoint
    from edgeprune.shape.model import build_model
    from edgeprune.train import distributed as D
    from edgeprune.train.train_data import load_data
    from edgeprune.train.loop import Trainer

    env = env_device(args)
    try:
        cfg = config_from_args(args, "pretrain", spec=spec, device=env.device)
        data = load_data(args.data, tok_dir, cfg.valid_fraction, progress=cfg.progress and env.is_main)
        check_epochs(args, cfg.tokens, len(data.train))
        model = build_model(spec, seed=cfg.seed)
        trainer = Trainer(model, data, cfg, work_dir_of(args), env=env,
                          fingerprint_extra={"mode": "pretrain", "arch": args.arch})
        result = trainer.fit(resume=args.resume)
        if env.is_main:
            ids = {k: v for k, v in (("eos_token_id", tok.eos_id), ("bos_token_id", tok.bos_id)) if v is not None}
            save_checkpoint(result.model, args.out, tokenizer_dir=Path(tok.path).parent, config_extra=ids,
                            meta={"made_by": "edgeprune pretrain", "arch": args.arch, "train": cfg.to_dict(),
                                  "valid_ppl": result.valid_ppl, "tokens_seen": result.tokens_seen})
            copy_log(result, args.out)
            print(summary_table(result, spec, [["out", str(args.out)]]))
    finally:
        D.teardown(env)
    return 0
