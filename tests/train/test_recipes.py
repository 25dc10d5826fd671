"""Training flags come from TrainConfig (help = the field's comment); recipes and the defaults that
follow the model (window) and device (batch) resolve in one documented order."""

from __future__ import annotations

import argparse
from dataclasses import fields

import pytest
import torch

from edgeprune.base.errors import TrainError
from edgeprune.shape.arch_presets import preset_spec
from edgeprune.train.cli_common import add_distill_arguments, add_training_arguments, config_from_args
from edgeprune.train.config import VERB, TrainConfig, field_help
from edgeprune.train.recipes import RECIPES, auto_micro_batch, auto_seq_len, load_recipe


def _parse(*argv: str, recipe: str = "recover") -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_training_arguments(p, recipe=recipe)
    return p.parse_args(["--tokens", "1M", "--out", "o", *argv])


def test_every_config_field_has_a_commented_flag():
    helps = field_help()
    assert {f.name for f in fields(TrainConfig)} <= set(helps)
    p = argparse.ArgumentParser()
    add_training_arguments(p)
    text = p.format_help()
    for name in ("--seq-len", "--warmup-frac", "--grad-clip", "--no-progress", "--recipe"):
        assert name in text
    assert "AdamW second-moment decay" in text  # the comment written beside the field


def test_every_generated_flag_reaches_the_config():
    """A value given for any field's flag lands in that field of the TrainConfig: the flags and the
    config are read from the same fields, so there is no field-by-field copy to forget one in."""
    p = argparse.ArgumentParser()
    add_training_arguments(p, recipe="recover")
    add_distill_arguments(p)
    base = TrainConfig(tokens=1)
    argv, want = ["--tokens", "1M", "--out", "o"], {}
    for f in fields(TrainConfig):
        if f.metadata["group"] == VERB:
            continue
        flag, default = "--" + f.name.replace("_", "-"), getattr(base, f.name)
        if f.type == "bool":
            argv.append(flag if not default else "--no-" + flag[2:])
            want[f.name] = not default
            continue
        if f.metadata["choices"]:
            want[f.name] = next(c for c in f.metadata["choices"] if c != default)
        else:  # another valid value: in range for every fraction, > 0 for every count
            want[f.name] = default + 1 if f.type == "int" else (default + 0.5) / 2
        argv += [flag, str(want[f.name])]
    cfg = config_from_args(p.parse_args(argv), "recover")
    assert {k: getattr(cfg, k) for k in want} == want and cfg.tokens == 1_000_000


def test_precedence_recipe_then_flags_then_auto():
    spec = preset_spec("smol-llama-32m")
    cpu = torch.device("cpu")
    cfg = config_from_args(_parse(), "recover", spec=spec, device=cpu)
    assert cfg.lr == RECIPES["recover"]["lr"] and cfg.schedule == "wsd" and cfg.tokens == 1_000_000
    assert cfg.seq_len == 1024 and cfg.micro_batch == 2  # the model's context; 2048 tokens per CPU step
    cfg = config_from_args(_parse("--recipe", "recover-kd", "--lr", "5e-4", "--seq-len", "256"), "recover",
                           spec=spec, device=cpu)
    assert (cfg.kd_alpha, cfg.kd_temp, cfg.lr, cfg.seq_len, cfg.micro_batch) == (1.0, 1.0, 5e-4, 256, 8)
    assert config_from_args(_parse(), "pretrain", spec=spec, device=cpu).schedule == "cosine"


def test_recipe_file_and_bad_recipes(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('lr = 2e-4\nkd_alpha = 1.0\n')
    assert load_recipe(str(f)) == {"lr": 2e-4, "kd_alpha": 1.0}
    f.write_text('learning_rate = 2e-4\n')
    with pytest.raises(TrainError, match="unknown key"):
        load_recipe(str(f))
    with pytest.raises(TrainError, match="neither a recipe"):
        load_recipe("no-such-recipe")


def test_auto_window_and_batch():
    small, big = preset_spec("smol-llama-32m"), preset_spec("smollm-360m")
    assert auto_seq_len(small) == 1024 and auto_seq_len(preset_spec("tiny")) == 256
    assert auto_seq_len(preset_spec("smollm2-135m")) == 1024  # 8192 context, capped
    cuda = torch.device("cuda", 0)
    # a 31M model on an 80 GB GPU: 64 windows of 1024 per forward (not 16), bounded by memory
    assert auto_micro_batch(small, 1024, cuda, free_bytes=80 << 30) == 64
    # a 360M model aims at 32 but its activations (~1.5 MB per token) bound it below that
    assert 16 <= auto_micro_batch(big, 1024, cuda, free_bytes=80 << 30) < 32
    assert auto_micro_batch(small, 1024, cuda, free_bytes=2 << 30) < 16
    assert auto_micro_batch(small, 1024, cuda, free_bytes=1 << 20) == 1
    assert auto_micro_batch(small, 256, torch.device("cpu")) == 8
