"""Caches check their content. A token cache corrupted at the same size, a sidecar of the wrong
shape, a teacher-text shard cut at a line boundary, a local-device probe cache holding a list or a
figure no machine has: each is found by its content hash or schema, said in a warning naming the
cache (never the packaged devices/local.toml), and recomputed, resampled or re-measured — the run
gives the result a clean cache gives, exit 0."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from .conftest import cli

# ----- the token cache, through the verbs that tokenize data -------------------------------------


def _flip(bin_path, meta_path):  # same size, other tokens: only the content hash can tell
    a = np.fromfile(bin_path, dtype=np.uint16)
    a[: len(a) // 2] = a[: len(a) // 2][::-1]
    a.tofile(bin_path)


def _sidecar(value):
    return lambda bin_path, meta_path: meta_path.write_text(json.dumps(value))


def _edit_sidecar(**over):
    def edit(bin_path, meta_path):
        meta = json.loads(meta_path.read_text())
        meta.update(over)
        meta_path.write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))
    return edit


TOKEN_ROWS = [
    ("same-size corruption", _flip),
    ("sidecar holds a list", _sidecar([1, 2, 3])),
    ("sidecar dtype object", _edit_sidecar(dtype="object")),
    ("sidecar without a content hash", _edit_sidecar(sha256=None)),
    ("token file truncated", lambda b, m: os.truncate(b, b.stat().st_size // 2)),
]
SHIP_FAST = ["--method", "uniform", "--ratio", "0.3", "--recover-tokens", "0", "--calib-samples", "4", "--calib-len",
             "32", "--eval-tokens", "2000", "--formats", "gguf", "--quant", "Q8_0", "--bench-prompt", "8",
             "--bench-gen", "4", "--bench-reps", "1", "--no-progress"]
TOKEN_VERBS = {
    "prune": lambda w, out: ["prune", w["model"], "--method", "uniform", "--ratio", "0.3", "--data", w["data"],
                             "--out", out],
    "eval": lambda w, out: ["eval", w["model"], "--data", w["data"], "--json", out],
    # a device ship predicts for (adb, no serial): the token cache is the prune stage's, not the bench's
    "ship": lambda w, out: ["ship", w["model"], "--data", w["data"], "--devices", "snapdragon-8-gen-3", "--out", out,
                            *SHIP_FAST],
}


def _result(verb, out):
    if verb in ("prune", "ship"):
        pruned = out / "model.safetensors" if verb == "prune" else out / "work" / "pruned" / "model.safetensors"
        return hashlib.sha256(pruned.read_bytes()).hexdigest()
    (m,) = json.loads(out.read_text())["models"]
    return m["perplexity"], m["n_tokens"]


@pytest.mark.parametrize("verb", list(TOKEN_VERBS))
@pytest.mark.parametrize("row", TOKEN_ROWS, ids=[r[0] for r in TOKEN_ROWS])
def test_token_cache_checks_its_content(world, tmp_path, monkeypatch, verb, row):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    first = cli(*TOKEN_VERBS[verb](world, tmp_path / "a"), cwd=tmp_path, timeout=300)
    assert first.returncode == 0, first.stderr
    (meta_path,) = (tmp_path / "cache" / "tokens").glob("*.json")
    bin_path = meta_path.with_suffix(".uint16")
    row[1](bin_path, meta_path)
    second = cli(*TOKEN_VERBS[verb](world, tmp_path / "b"), cwd=tmp_path, timeout=300)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr
    assert f"token cache {bin_path} fails its content check" in second.stderr, second.stderr
    assert _result(verb, tmp_path / "b") == _result(verb, tmp_path / "a")  # what a clean cache gives
    third = cli(*TOKEN_VERBS[verb](world, tmp_path / "c"), cwd=tmp_path, timeout=300)
    assert "token cache" not in third.stderr  # rebuilt once: the next run trusts it again


# ----- teacher-text shards -----------------------------------------------------------------------

def _cut_at_line(shard):
    lines = shard.read_text().split("\n")
    shard.write_text("\n".join(lines[: len(lines) // 2]) + "\n")


def _change_line(shard):
    rows = [json.loads(x) for x in shard.read_text().split("\n") if x.strip()]
    rows[0]["text"] = "something else entirely"
    shard.write_text("".join(json.dumps(r) + "\n" for r in rows))


SHARD_ROWS = [
    ("cut at a line boundary", _cut_at_line),
    ("a line changed", _change_line),
    ("emptied", lambda shard: shard.write_text("")),
    ("hash file removed", lambda shard: shard.with_suffix(".sha256").unlink()),
]


@pytest.mark.parametrize("row", SHARD_ROWS, ids=[r[0] for r in SHARD_ROWS])
def test_teacher_shard_checks_its_content(world, tmp_path, caplog, row):
    from edgeprune.train.teacher_settings import SamplingSettings
    from edgeprune.train.teacher_text import sample_teacher_text

    s = SamplingSettings(tokens=600, max_new_tokens=12, prompt_tokens=6, batch_size=4)
    kw = dict(seed_source=world["data"], device="cpu", progress=False, cache_dir=tmp_path / "tt")
    folder = sample_teacher_text(world["model"], s, **kw)
    before = {p.name: p.read_bytes() for p in folder.glob("shard-*")}
    assert len(before) >= 4  # at least two shards, each with its hash
    row[1](folder / "shard-00001.jsonl")
    assert sample_teacher_text(world["model"], s, **kw) == folder
    assert "shard-00001.jsonl fails its content check" in caplog.text
    assert {p.name: p.read_bytes() for p in folder.glob("shard-*")} == before  # resampled: the same text


# ----- the local-device probe cache, through the verbs that read the local device ----------------

PROBE_ROWS = [
    ("a list", [1, 2, 3]),
    ("a string", "fast"),
    ("bandwidth NaN", {"bandwidth_gbs": float("nan")}),
    ("bandwidth 1e308", {"bandwidth_gbs": 1e308}),
    ("bandwidth zero", {"bandwidth_gbs": 0}),
    ("gflops a string", {"peak_gflops": "many"}),
    ("gflops negative", {"peak_gflops": -5.0}),
    ("no figures", {"bandwidth_gbs": None, "peak_gflops": None}),
]
PROBE_VERBS = {
    "devices show": lambda w: ["devices", "show", "local", "--json"],
    "bench --predict-only": lambda w: ["bench", "--predict-only", "--device", "local", "--model", w["model"]],
    "ship": lambda w: ["ship", w["model"], "--data", w["data"], "--devices", "local", "--out", "dist", *SHIP_FAST],
}


# ship reads the cache through the same profile loader as the fast verbs, and a ship with a local
# bench costs ~50 s here: two rows (a wrong type, a wrong figure) show it goes through that check
SHIP_PROBE_ROWS = ("a list", "bandwidth NaN")
PROBE_CASES = [(row, verb) for row in PROBE_ROWS for verb in PROBE_VERBS
               if verb != "ship" or row[0] in SHIP_PROBE_ROWS]


@pytest.mark.parametrize("row,verb", PROBE_CASES, ids=[f"{r[0]}-{v}" for r, v in PROBE_CASES])
def test_local_device_cache_is_remeasured(world, tmp_path, monkeypatch, verb, row):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(cache))
    first = cli(*PROBE_VERBS["devices show"](world), cwd=tmp_path)  # measures once, writes the cache
    assert first.returncode == 0, first.stderr
    path = cache / "local_device.json"
    good = json.loads(path.read_text())
    value = row[1]
    if isinstance(value, dict):
        value = {k: v for k, v in {**good, **value}.items() if v is not None}
    path.write_text(json.dumps(value))
    r = cli(*PROBE_VERBS[verb](world), cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert f"the local-device cache {path} is not usable" in r.stderr and "local.toml" not in r.stderr, r.stderr
    fresh = json.loads(path.read_text())  # re-measured and cached again
    assert fresh["machine"] == good["machine"] and 0 < fresh["bandwidth_gbs"] < 20_000 and fresh["peak_gflops"] > 0
    assert "inf" not in r.stdout.lower().split("info")[0]  # no infinite prediction
