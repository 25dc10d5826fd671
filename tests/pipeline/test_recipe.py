"""The ship recipe: every flag is a recipe key, flags override the file, bad files fail in one line."""

import argparse
from dataclasses import fields

import pytest

from edgeprune.cli import main
from edgeprune.errors import PruneError
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
