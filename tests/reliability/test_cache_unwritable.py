"""With `$EDGEPRUNE_CACHE` unwritable, what edgeprune says about its cache is true: a run that needs
the cache (tokenized data) is one line naming the cache folder and the variable that moves it,
exit 2, before any output is made; a run that only wanted to keep a measurement (the local device
probe) goes on and says it could not cache it, never "cached in …" as well."""

from __future__ import annotations

import pytest

from edgeprune.cli import main

from .conftest import one_line_exit_2

NEEDS_CACHE = {
    "prune": lambda m, d: ["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", d, "--calib-samples", "4",
                           "--calib-len", "32", "--out", "o"],
    "train": lambda m, d: ["train", m, "--data", d, "--tokens", "512", "--seq-len", "32", "--out", "o"],
    "eval": lambda m, d: ["eval", m, "--data", d, "--max-tokens", "64", "--seq-len", "32"],
}


@pytest.fixture
def unwritable_cache(tmp_path, monkeypatch):
    """A cache path below a regular file: no one, root included, can create it."""
    (tmp_path / "afile").write_text("a file, not a folder\n")
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "afile" / "cache"))
    return tmp_path / "afile" / "cache"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("verb", list(NEEDS_CACHE))
def test_a_run_that_needs_the_cache_names_it(world, tmp_path, monkeypatch, capsys, unwritable_cache, verb):
    monkeypatch.chdir(tmp_path)
    line = one_line_exit_2(main(NEEDS_CACHE[verb](str(world["model"]), str(world["data"]))), capsys.readouterr().err)
    assert str(unwritable_cache) in line and "EDGEPRUNE_CACHE" in line and "cache" in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.timeout(60)
def test_the_local_probe_says_it_could_not_cache(world, tmp_path, monkeypatch, capsys, unwritable_cache):
    import edgeprune.devices as devices
    from edgeprune.devices import local_probe

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(devices, "_loaded", {})  # profiles loaded by earlier tests in this process: probe anew
    monkeypatch.setattr(local_probe, "measure_bandwidth_gbs", lambda *a, **k: 10.0)  # the messages are tested,
    monkeypatch.setattr(local_probe, "measure_peak_gflops", lambda *a, **k: 100.0)  # not the measurement
    assert main(["devices", "show", "local"]) == 0
    err = capsys.readouterr().err
    assert "cached in" not in err, err
    said = [ln for ln in err.splitlines() if "cache" in ln and "local" in ln]
    assert len(said) == 1 and "could not cache" in said[0] and str(unwritable_cache) in said[0], err
