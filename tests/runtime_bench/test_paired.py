"""Paired, interleaved comparisons: ratios against a reference per round, their spread, and a
mark where a difference is smaller than the spread."""

import json
import random
import shutil

import pytest

from edgeprune.cli import main
from edgeprune.base.errors import BenchError
from edgeprune.runtime_bench.paired import paired_bench, paired_ratio


def test_paired_ratio_median_iqr_and_decision():
    r = paired_ratio([100, 100, 50, 50, 100], [120, 130, 60, 65, 125])
    assert r.median == pytest.approx(1.25) and r.rounds == 5
    assert r.low == pytest.approx(1.2) and r.high == pytest.approx(1.3)
    assert r.q25 == pytest.approx(1.2) and r.q75 == pytest.approx(1.3) and r.decided
    same = paired_ratio([100, 100, 100, 100], [95, 104, 99, 102])
    assert not same.decided and "within noise" in same.text()
    with pytest.raises(BenchError, match="no round"):
        paired_ratio([0, 0], [1, 1])


def test_interleaving_cancels_the_machines_slow_spells():
    """The machine's speed swings by up to 2x between runs; a file truly 1.3x faster is decided
    by its paired ratio, a file as fast as the reference is marked within the noise, although
    their raw speeds overlap completely."""
    rng = random.Random(0)
    true = {"ref.gguf": 100.0, "fast.gguf": 130.0, "same.gguf": 100.0}
    state = {"round_speed": 1.0, "calls": 0, "seen": []}

    def measure(path):
        if state["calls"] % 3 == 0:  # a new round: the machine's speed changes
            state["round_speed"] = rng.uniform(0.5, 1.0)
        state["calls"] += 1
        state["seen"].append(path)
        noise = rng.uniform(0.98, 1.02)
        v = true[path.split("/")[-1]] * state["round_speed"] * noise
        return v * 4, v, 50.0

    res = paired_bench(["ref.gguf", "fast.gguf", "same.gguf"], "local", rounds=12, measure=measure, progress=False)
    assert res.reference == "ref.gguf" and len(res.orders) == 12
    assert all(sorted(o) == ["fast.gguf", "ref.gguf", "same.gguf"] for o in res.orders)  # each once per round
    assert len({tuple(o) for o in res.orders}) > 1  # shuffled
    fast, same = res.ratio("fast.gguf", "tg"), res.ratio("same.gguf", "tg")
    assert fast.median == pytest.approx(1.3, rel=0.03) and fast.decided
    assert same.median == pytest.approx(1.0, abs=0.03) and not same.decided
    raw = res.files[1].tg
    assert min(raw) < 100 < max(raw)  # unpaired, the speeds overlap the reference's
    d = res.to_dict()
    assert d["ratios"]["fast.gguf"]["tg"]["decided"] is True
    assert "within noise" in res.table() and f"x{fast.median:.3f}" in res.table()


def test_paired_bench_refuses_one_round_and_duplicates():
    with pytest.raises(BenchError, match="at least 2 rounds"):
        paired_bench(["a.gguf"], rounds=1, measure=lambda p: (1, 1, None), progress=False)
    with pytest.raises(BenchError, match="once"):
        paired_bench(["a.gguf", "a.gguf"], rounds=3, measure=lambda p: (1, 1, None), progress=False)


def test_cli_bench_vs_measures_real_files_in_rounds(tiny_gguf, tmp_path, capsys):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install edgeprune[llama])")
    other = tmp_path / "copy.gguf"
    shutil.copy(tiny_gguf, other)
    out = tmp_path / "paired.json"
    rc = main(["bench", str(tiny_gguf), str(other), "--vs", str(tiny_gguf), "--rounds", "2", "--prompt", "16",
               "--gen", "4", "--threads", "1", "--no-progress", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "paired ratio" in text and "copy.gguf" in text
    (res,) = json.loads(out.read_text())
    assert res["rounds"] == 2 and all(len(f["tg"]) == 2 and min(f["tg"]) > 0 for f in res["files"])
    assert res["ratios"][str(tiny_gguf)]["tg"]["median"] == pytest.approx(1.0)  # itself
    assert out.with_suffix(".md").read_text().startswith("| file (vs")


def test_cli_bench_vs_missing_file_is_one_line(tmp_path, capsys):
    rc = main(["bench", str(tmp_path / "a.gguf"), "--vs", str(tmp_path / "a.gguf"), "--rounds", "2"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
