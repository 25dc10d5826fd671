"""`--recipe` is read and checked by every verb that takes it, before any work, whether or not the
run ends up using it: a recipe that does not exist or holds a key no verb knows is a mistake the
user wants told about, not a run made with settings they did not ask for (prune without stage
training used to ignore it and exit 0)."""

from __future__ import annotations

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2, snapshot

VERBS = {
    "prune": lambda m, d, r: ["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", d, "--recipe", r,
                              "--out", "o"],
    "prune-incremental": lambda m, d, r: ["prune", m, "--method", "adapt", "--ratio", "0.3", "--data", d,
                                          "--incremental", "--recipe", r, "--out", "o"],
    "train": lambda m, d, r: ["train", m, "--data", d, "--tokens", "2000", "--recipe", r, "--out", "o"],
    "pretrain": lambda m, d, r: ["pretrain", "--arch", "tiny", "--data", d, "--tokens", "2000", "--recipe", r,
                                 "--out", "o"],
    "ship": lambda m, d, r: ["ship", m, "--data", d, "--recover-tokens", "0", "--recipe", r, "--out", "o"],
}
RECIPES = {  # name -> (file text or None for a missing file, what the line says)
    "missing": (None, "nonexistent.toml"),
    "unknown-key": ('lr = 1e-4\nwarmup_stepz = 10\n', "warmup_stepz"),
    "not-toml": ('lr = = 1\n', "TOML"),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("recipe", list(RECIPES))
@pytest.mark.parametrize("verb", list(VERBS))
def test_bad_recipe_is_refused_by_every_verb_that_takes_one(world, tmp_path, monkeypatch, capsys, verb, recipe):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    text, says = RECIPES[recipe]
    path = tmp_path / "nonexistent.toml" if text is None else tmp_path / "r.toml"
    if text is not None:
        path.write_text(text)
    before = snapshot(tmp_path)
    line = one_line_exit_2(main(VERBS[verb](str(world["model"]), str(world["data"]), str(path))),
                           capsys.readouterr().err)
    assert says in line and "recipe" in line, line
    assert snapshot(tmp_path) == before
