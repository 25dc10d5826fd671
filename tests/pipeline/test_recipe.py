"""The ship recipe: every flag is a recipe key, flags override the file, bad files fail in one line."""

import argparse
from dataclasses import fields

import pytest

from edgeprune.cli import main
from edgeprune.base.errors import PruneError
from edgeprune.pipeline.recipe import Recipe, add_recipe_arguments, recipe_from_args


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--recipe")
    add_recipe_arguments(p)
    return p.parse_args(argv)


def test_every_field_is_a_flag_and_a_recipe_key(tmp_path):
    p = argparse.ArgumentParser()
    add_recipe_arguments(p)
    flags = {a.dest for a in p._actions}
    assert {f.name for f in fields(Recipe)} - {"model"} <= flags
    # a written recipe reads back identically
    r = Recipe(ratio=0.3, devices=["local", "raspberry-pi-5"], quants=["Q4_0"], teacher_kd=True, params=None)
    f = tmp_path / "r.toml"
    f.write_text(r.to_toml())
    assert Recipe.from_toml(f) == r


def test_flags_override_the_file(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('ratio = 0.25\nmethod = "uniform"\ndevices = ["raspberry-pi-4"]\n')
    r = recipe_from_args(parse(["--recipe", str(f), "--method", "flap", "--devices", "local,tensor-g3"]))
    assert (r.ratio, r.method, r.devices) == (0.25, "flap", ["local", "tensor-g3"])


def test_validation_lists_every_problem():
    with pytest.raises(PruneError) as e:
        Recipe(ratio=1.5, recover_tokens=-1, formats=["tflite"], devices=[]).validate()
    msg = str(e.value)
    for needle in ("ratio 1.5", "recover_tokens -1", "tflite", "devices is empty"):
        assert needle in msg


def test_bad_recipe_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "r.toml"
    f.write_text("ratoi = 0.5\n")
    assert main(["ship", "--recipe", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ratoi" in err[0]
    f.write_text("ratio = [\n")
    assert main(["ship", "--recipe", str(f)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    assert main(["ship", "--recipe", str(tmp_path / "missing.toml")]) == 2


def _train_config(*argv):
    """What `edgeprune train` resolves for these flags (its own parser and recipe choice)."""
    from edgeprune.train.cli_train import add_arguments
    from edgeprune.train.cli_common import config_from_args
    from edgeprune.train.recipes import recovery_recipe

    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["m", "--data", "d.txt", "--out", "o", *argv])
    return config_from_args(args, recovery_recipe(bool(args.teacher)))


@pytest.mark.parametrize("teacher", [False, True], ids=["lm-loss", "kd"])
def test_ship_recovers_with_trains_defaults(teacher):
    """Ship's recovery is train's: every trajectory field equal, at ship's window and batch."""
    ship = Recipe(recover_tokens=50_000, teacher_kd=teacher).train_config()
    train = _train_config("--tokens", "50000", "--seq-len", str(ship.seq_len), "--micro-batch",
                          str(ship.micro_batch), *(["--teacher", "t"] if teacher else []))
    assert ship.trajectory_fields() == train.trajectory_fields()
    assert ship.lr == 3e-4 and ship.schedule == "wsd"
    assert (ship.kd_alpha, ship.kd_temp) == ((1.0, 1.0) if teacher else (0.0, 1.0))


def test_recovery_keys_are_train_config_fields(tmp_path, capsys):
    from edgeprune.pipeline.recipe import RECOVERY_KEYS, SHIP_SETS
    from edgeprune.train.config import TrainConfig

    assert set(RECOVERY_KEYS) | set(SHIP_SETS) == {f.name for f in fields(TrainConfig)}
    assert set(RECOVERY_KEYS) <= {f.name for f in fields(Recipe)}
    r = recipe_from_args(parse(["--lr", "1e-3", "--schedule", "cosine", "--grad-accum", "2", "--teacher-kd"]))
    cfg = r.train_config()
    assert (cfg.lr, cfg.schedule, cfg.grad_accum, cfg.kd_alpha) == (1e-3, "cosine", 2, 1.0)
    assert cfg.tokens_per_step(world=3) == 8 * 256 * 2 * 3
    # a recipe written before the keys were TrainConfig's still reads (batch_size is micro_batch)
    f = tmp_path / "old.toml"
    f.write_text("batch_size = 4\nlr = 0.001\nkd_alpha = 0.5\nkd_temp = 2.0\nteacher_kd = true\n")
    old = Recipe.from_toml(f).train_config()
    assert (old.micro_batch, old.lr, old.kd_alpha, old.kd_temp) == (4, 1e-3, 0.5, 2.0)
    assert recipe_from_args(parse(["--batch-size", "2"])).train_config().micro_batch == 2
    f.write_text("batch_size = 4\nmicro_batch = 4\n")
    assert main(["ship", "--recipe", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch_size and micro_batch" in err[0]
    with pytest.raises(PruneError, match="warmup_frac"):
        Recipe(warmup_frac=1.5).validate()
    with pytest.raises(PruneError, match="lr = 'fast' must be a float"):
        Recipe(lr="fast").validate()


def test_the_recipes_target_is_judged_by_its_prune_request():
    """The recipe states its pruning keys once; the method, the one target and the device are
    PruneRequest's to check, with PruneRequest's own words."""
    from edgeprune.prune.request import PruneRequest

    req = Recipe(method="uniform", params=1000, devices=["raspberry-pi-5", "local"], quants=["Q8_0"]).prune_request()
    assert (req.method, req.params, req.ratio, req.quant) == ("uniform", 1000, None, "Q8_0")
    assert req.device.name == "raspberry-pi-5" and [d.name for d in req.ship_to] == ["local"]
    for keys in (dict(speedup=2.0, decode_tps=5.0), dict(params=10, speedup=2.0), dict(speedup=0.5),
                 dict(ratio=1.5), dict(method="nope")):
        with pytest.raises(PruneError) as direct:
            PruneRequest(**{"ratio": None if set(keys) - {"ratio", "method"} else 0.5, **keys},
                         device="raspberry-pi-5")
        with pytest.raises(PruneError) as shipped:
            Recipe(devices=["raspberry-pi-5"], **keys).validate()
        assert str(direct.value) in str(shipped.value), keys
