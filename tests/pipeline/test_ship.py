"""`edgeprune ship` end to end on a tiny model: every artifact, the manifest, the report,
resume without redoing finished stages, and bad input failing before any work."""

import json

import pytest

from edgeprune.cli import main
from tests.pipeline.conftest import save_tiny

FAST = ["--recover-tokens", "2048", "--batch-size", "4", "--seq-len", "64", "--calib-samples", "4",
        "--calib-len", "32", "--bench-prompt", "16", "--bench-gen", "8", "--bench-reps", "1",
        "--eval-tokens", "2000", "--quants", "Q8_0,int8", "--no-progress"]


@pytest.fixture
def teacher(tmp_path, embedded_tok):
    d, tok = embedded_tok
    return save_tiny(tmp_path / "teacher", d, tok, [(4, 2, 256), (4, 2, 192), (4, 2, 256), (4, 2, 256)], seed=3)


def _ship(args, out):
    return main(["ship", *args, "--out", str(out), *FAST])


def test_ship_tiny_model_two_devices(tmp_path, teacher, text_file, capsys):
    out = tmp_path / "dist"
    rc = _ship([str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "adapt",
                "--devices", "local,raspberry-pi-5", "--align", "8"], out)
    assert rc == 0, capsys.readouterr().err
    for sub in ("model/config.json", "model/tokenizer.json", "recipe.toml", "manifest.json", "report.md",
                "report.json", "bench/results.json"):
        assert (out / sub).is_file(), sub
    man = json.loads((out / "manifest.json").read_text())
    arts = {(a["format"], a["quant"]): a for a in man["artifacts"]}
    # the ONNX float reference ships beside its quantized graphs (int8 is derived from it)
    assert set(arts) == {("gguf", "Q8_0"), ("onnx", "fp32"), ("onnx", "int8")}
    assert (out / arts[("gguf", "Q8_0")]["path"]).parent.name == "gguf"
    assert (out / arts[("onnx", "int8")]["path"]).parent.name == "onnx"
    for a in arts.values():
        assert (out / a["path"]).stat().st_size == a["bytes"] > 0
        assert a["fidelity"]["top1_agreement"] > 0.5 and a["fidelity"]["ppl"] > 1
    rep = json.loads((out / "report.json").read_text())
    assert 0.2 < rep["prune"]["ratio_removed"] < 0.4
    assert rep["eval"]["pruned"]["params"] < rep["eval"]["teacher"]["params"]
    # local: measured (positive figures) for both files; raspberry-pi-5: predictions, marked
    assert {r["device"] for r in rep["bench"]} == {"local"}
    assert all(r["tg_tps_mean"] > 0 and r["pp_tps_mean"] > 0 for r in rep["bench"])
    assert {p["device"] for p in rep["predictions"]} == {"raspberry-pi-5"}
    assert all(p["predicted"] and p["tg_pred_tps"] > 0 for p in rep["predictions"])
    md = (out / "report.md").read_text()
    assert "predictions, not measurements" in md and "Measured latency" in md
    # every perplexity says which text, split and token count
    held = rep["eval"]["heldout"]
    assert held["text"] == str(text_file) and held["tokens"] == rep["eval"]["teacher"]["tokens"] > 0
    assert f"{held['tokens']:,} tokens of `{text_file}`, held-out tail" in md
    # each GGUF lists its real tensor types and bits/weight; each measured mean its ± std
    q8 = arts[("gguf", "Q8_0")]
    mix = " + ".join(f"{n} {t}" for t, n in sorted(q8["details"]["type_counts"].items(), key=lambda kv: -kv[1]))
    from edgeprune.base.table import fmt
    row = next(line for line in md.splitlines() if line.startswith(f"| {q8['path']} "))
    assert mix in row and f"| {fmt(round(q8['details']['bits_per_weight'], 2))} " in row
    assert all(" ± " in line for line in md.split("## Measured latency")[1].split("##")[0].splitlines()
               if line.startswith("| local"))
    # the export section states the held-out token count every file was checked on: the manifest's
    checked = man["check_tokens"]
    assert checked > 1 and f"run on the same {checked} held-out tokens as PyTorch" in md
    html = (out / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") == len(rep["plots"]) >= 1
    # the shipped model's edgeprune.json does not pass the teacher's figures off as its own
    meta = json.loads((out / "model" / "edgeprune.json").read_text())
    assert "valid_ppl" not in meta and "pruning" in meta and "recovery" in meta
    # the cut's verdict, as the prune verb gives it, reaches the report, the manifest and the bundle
    verdict = rep["prune"]["verdict"]
    assert verdict["perplexity_ratio"] > 0 and verdict == meta["pruning"]["verdict"]
    assert man["quality"]["perplexity_ratio"] == verdict["perplexity_ratio"] and man["quality"]["trained_since"]
    assert f"×{verdict['perplexity_ratio']:.2f}" in (out / "app" / "README.md").read_text()
    assert f"**At the cut**: held-out perplexity ×{verdict['perplexity_ratio']:.2f}" in md
    for png in rep["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    # the pruned model reloads and the recipe used was saved
    from edgeprune.files.checkpoint import load_checkpoint
    assert load_checkpoint(out / "model").spec.n_params == rep["eval"]["pruned"]["params"]
    assert 'method = "adapt"' in (out / "recipe.toml").read_text()

    # a re-run with the same inputs redoes nothing
    capsys.readouterr()
    assert _ship([str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "adapt",
                  "--devices", "local,raspberry-pi-5", "--align", "8"], out) == 0
    err = capsys.readouterr().err
    for stage in ("teacher", "prune", "recover", "eval", "export", "bench"):
        assert f"[{stage}] up to date" in err, err


def test_interrupted_ship_resumes_without_redoing_finished_stages(tmp_path, teacher, text_file, capsys,
                                                                  monkeypatch):
    out = tmp_path / "dist"
    args = [str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "uniform",
            "--devices", "raspberry-pi-5", "--align", "8", "--formats", "gguf"]
    import edgeprune.pipeline.ship as ship

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ship, "_export", interrupted)
    assert main(["ship", *args, "--out", str(out), *FAST[:-3], "--quants", "Q8_0", "--no-progress"]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["ship", *args, "--out", str(out), *FAST[:-3], "--quants", "Q8_0", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "[prune] up to date" in err and "[recover] up to date" in err
    assert "[export] done" in err and (out / "report.md").is_file()


def test_gguf_only_ships_the_devices_gguf_presets(tmp_path, teacher, text_file, capsys):
    """A device lists GGUF and ONNX presets; `--formats gguf` without --quant exports and benches
    its GGUF ones (not a refusal)."""
    from edgeprune.devices import load_device

    out = tmp_path / "dist"
    fast = FAST[:FAST.index("--quants")] + FAST[FAST.index("--quants") + 2:]
    rc = main(["ship", str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "uniform",
               "--recover-tokens", "0", "--devices", "raspberry-pi-5", "--align", "8", "--formats", "gguf",
               "--out", str(out), *fast])
    assert rc == 0, capsys.readouterr().err
    man = json.loads((out / "manifest.json").read_text())
    assert sorted((a["format"], a["quant"]) for a in man["artifacts"]) == \
        sorted(("gguf", q) for q in load_device("raspberry-pi-5").gguf_quants)
    assert not (out / "onnx").exists()
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["predictions"]) == 3  # the device's three GGUF files, predicted (it is not reachable)


@pytest.mark.parametrize("extra, needle", [
    (["--devices", "nokia-3310"], "nokia-3310"),
    (["--ratio", "1.5"], "ratio 1.5"),
    (["--ratio", "0.9"], "below"),
    (["--data", "/no/such/file.txt"], "does not exist"),
    (["--devices", "raspberry-pi-5", "--host", "pi@127.0.0.1:1"], "cannot reach"),
    (["--method", "nope"], "unknown pruning method"),
    (["--speedup", "0.5", "--devices", "raspberry-pi-5"], "speedup 0.5"),
    (["--decode-tps", "1", "--devices", "raspberry-pi-5"], "already predicted"),
    (["--decode-tps", "1e9", "--devices", "raspberry-pi-5", "--method", "uniform"], "out of reach"),
    (["--method", "search"], "per-layer widths"),
])
def test_bad_input_fails_before_any_work(tmp_path, teacher, text_file, capsys, extra, needle):
    out = tmp_path / "dist"
    args = [str(teacher), "--data", str(text_file), "--ratio", "0.3"]
    if "--data" in extra:
        args = [str(teacher), "--ratio", "0.3"]
    rc = main(["ship", *args, *extra, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and needle in err[0], err
    assert not out.exists()


@pytest.mark.slow
def test_embedded_default_shortened(tmp_path, monkeypatch, capsys):
    """The README's first command, shortened: no model -> the embedded teacher (trained here
    with few tokens), whole pipeline, report with loadable GGUF and ONNX files."""
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "dist"
    rc = main(["ship", "--teacher-tokens", "4096", "--out", str(out), "--devices", "local", *FAST])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    assert rep["teacher"].startswith(str(tmp_path / "cache"))
    assert {a["format"] for a in rep["artifacts"]} == {"gguf", "onnx"}
    assert all(r["tg_tps_mean"] > 0 for r in rep["bench"])
    assert "report.md" in capsys.readouterr().out


def test_bad_method_is_refused_before_the_embedded_teacher_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    rc = main(["ship", "--method", "nope", "--out", str(tmp_path / "dist")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "unknown pruning method 'nope'" in err[0], err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "dist").exists()


@pytest.mark.parametrize("method", ["search", "uniform", "adapt-latency"])
def test_ship_speed_target_any_method(tmp_path, embedded_tok, text_file, capsys, method):
    """--speedup works with every kind of method: the searching and latency-aware ones aim at the
    rate, the parameter-driven ones get the parameter count predicted to meet it."""
    d, tok = embedded_tok
    teacher = save_tiny(tmp_path / "teacher", d, tok, [(4, 2, 256)] * 4, seed=3)
    out = tmp_path / "dist"
    fast = [a for a in FAST if a != "Q8_0,int8"]
    fast[fast.index("--quants") + 1:fast.index("--quants") + 1] = ["Q8_0"]
    rc = main(["ship", str(teacher), "--data", str(text_file), "--speedup", "1.1", "--method", method,
               "--devices", "raspberry-pi-5", "--align", "8", "--formats", "gguf", "--out", str(out), *fast])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.devices import load_device
    from edgeprune.prune.latency import make_target

    dev = load_device("raspberry-pi-5")
    before = load_checkpoint(teacher).spec
    after = load_checkpoint(out / "model").spec
    target = make_target(dev, "Q8_0", speedup=1.1, spec=before)  # the first GGUF type shipped (--quants)
    # the search may store the head at a cheaper type: predicted at it, and the shipped file holds it
    head = load_checkpoint(out / "model").meta["pruning"].get("head") or {}
    decided = head["type"] if head.get("decided") else None
    got = target.with_head(decided).decode_tps_of(after) / target.decode_tps_of(before)
    assert got >= (1.1 if method != "uniform" else 1.1 * 0.95), got  # parameter-driven: approximately
    if decided:
        from edgeprune.devices.predict import gguf_head_type

        assert method == "search" and head["quant"] == "Q8_0"
        assert {gguf_head_type(f) for f in out.rglob("*-Q8_0.gguf")} == {decided}
    assert rep["prune"]["params_after"] < rep["prune"]["params_before"]


def test_report_reads_old_and_new_manifest_check_token_keys(tmp_path):
    """The manifest names the count `check_tokens`; a manifest written as `calibration_tokens`
    (a ship folder from before) still gives the report its count."""
    from edgeprune.pipeline.ship_report import _check_tokens

    m = tmp_path / "manifest.json"
    m.write_text(json.dumps({"artifacts": [], "calibration_tokens": 256}))
    assert _check_tokens({"manifest": str(m)}) == "256"
    m.write_text(json.dumps({"artifacts": [], "check_tokens": 128}))
    assert _check_tokens({"manifest": str(m)}) == "128"
    m.write_text(json.dumps({"artifacts": []}))
    assert _check_tokens({"manifest": str(m)}) == "?"


def test_ship_speedup_on_the_embedded_default_reports_the_prune_stages_record(tmp_path, monkeypatch, capsys):
    """`ship --speedup 2`: the report names the speed target, the predicted speed-up and the
    landed shape as the prune stage recorded them (the pruned checkpoint's edgeprune.json), not
    a ratio the recipe was never asked for."""
    from edgeprune.files.checkpoint import load_checkpoint

    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "dist"
    fast = [a for a in FAST if a != "Q8_0,int8"]
    fast[fast.index("--quants") + 1:fast.index("--quants") + 1] = ["Q8_0"]
    fast[fast.index("--recover-tokens") + 1] = "0"
    rc = main(["ship", "--speedup", "2", "--method", "adapt-latency", "--teacher-tokens", "2048", "--formats", "gguf",
               "--out", str(out), *fast])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    prune = rep["prune"]
    assert prune["target"] == {"method": "adapt-latency", "speedup": 2.0, "device": "local", "quant": "Q8_0"}
    # every figure is the pruning's own record, as written beside the pruned weights
    written = load_checkpoint(out / "work" / "pruned").meta["pruning"]
    assert {k: prune[k] for k in written} == written
    lat = prune["log"]["latency"]
    assert lat["device"] == "local" and lat["quant"] == "Q8_0"
    from edgeprune.prune.api import TARGET_TOLERANCE

    assert lat["predicted_speedup"] == pytest.approx(lat["predicted_decode_tps"] / lat["predicted_decode_tps_before"],
                                                     abs=1e-2)
    assert lat["predicted_speedup"] >= 2 * (1 - TARGET_TOLERANCE)  # adapt-latency aims at the rate itself
    landed = load_checkpoint(out / "model").spec
    assert prune["widths"] == [[x.n_heads, x.n_kv_heads, x.ffn_dim] for x in landed.layers]
    assert prune["params_after"] == landed.n_params < prune["params_before"]
    md = (out / "report.md").read_text()
    assert "target ratio" not in md and "decode 2x faster than the teacher on local at Q8_0" in md
    assert f"**×{lat['predicted_speedup']:.2f}**" in md and f"{prune['params_after']:,} parameters" in md


def test_ship_states_its_plan_and_prices_the_recovery_before_it_trains(tmp_path, teacher, text_file, capsys,
                                                                       monkeypatch):
    """With progress on and stderr a log: the plan of every stage first, the recovery priced from a
    timed step before it trains, then the trainer's own plan, plain lines only (no \\r)."""
    import re

    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "dist"
    rc = main(["ship", str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "uniform",
               "--devices", "raspberry-pi-5", "--formats", "gguf", "--out", str(out), *FAST[:-3],
               "--quants", "Q8_0"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "\r" not in err
    lines = err.splitlines()

    def first(pattern):
        found = [i for i, ln in enumerate(lines) if re.search(pattern, ln)]
        assert len(found) == 1, (pattern, err)
        return found[0]

    plan = first(r"ship plan: 1\) teacher \(.*\), 2\) prune \(uniform\), 3\) recover \(2,048 training tokens on "
                 r".*\), 4\) eval \(2,000 held-out tokens\), 5\) export \(gguf\), 6\) bench \(raspberry-pi-5\), "
                 r"7\) app bundle and report")
    priced = first(r"ship recover: 2,048 tokens at ~[\d,]+ tokens/s \(one timed step on the CPU\) ≈ \d+s")
    trained = first(r"train plan: 8 steps of 256 tokens")
    assert plan < priced < trained


def test_ship_trims_the_vocabulary_after_recovery_and_scores_every_model_in_bits_per_byte(
        tmp_path, teacher, text_file, embedded_tok, capsys):
    """--vocab: recovery trains the untrimmed cut (its KD reads the teacher's ids), then the shipped
    model, its GGUF and the app bundle carry the trimmed vocabulary; eval scores the same text in
    each model's own tokens, so bits/byte compare them."""
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.files.gguf_reader import open_gguf

    _, tok = embedded_tok
    out = tmp_path / "dist"
    rc = _ship([str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "uniform",
                "--devices", "local", "--align", "8", "--vocab", "1500"], out)
    printed = capsys.readouterr().out
    assert rc == 0
    model = load_checkpoint(out / "model")
    size = model.meta["vocab"]["size"]
    assert size <= 1500 < tok.vocab_size and model.spec.vocab_size == size == len(model.meta["vocab"]["kept_ids"])
    assert load_checkpoint(out / "work" / "recovered").spec.vocab_size == tok.vocab_size
    rep = json.loads((out / "report.json").read_text())
    ev = rep["eval"]
    assert ev["pruned"]["vocab_size"] == size and "vocab_size" not in ev["teacher"]
    # the teacher and the cut read the held-out ids themselves; the trimmed model the same text in more tokens
    assert ev["teacher"]["tokens"] == ev["pruned_only"]["tokens"] == ev["heldout"]["tokens"] < ev["pruned"]["tokens"]
    assert all(ev[k]["bits_per_byte"] > 0 for k in ("teacher", "pruned_only", "pruned"))
    gguf = next(out / a["path"] for a in json.loads((out / "manifest.json").read_text())["artifacts"]
                if a["format"] == "gguf")
    assert len(open_gguf(gguf).fields["tokenizer.ggml.tokens"].data) == size
    md = (out / "report.md").read_text()
    assert f"vocabulary trimmed to {size:,} tokens" in md and "bits/byte" in md
    header = next(line for line in printed.splitlines() if line.startswith("| model"))
    assert "bits/byte" in header  # the quality table ship prints has the column too
    # a teacher that was trimmed before (its lineage says "vocab") is whole to ship: every model reads
    # the held-out ids themselves, and the same model scores the same in every row
    from edgeprune.pipeline.recipe import Recipe
    from edgeprune.pipeline.ship import _evaluate

    again = _evaluate(Recipe(model=str(out / "model"), recover_tokens=0, eval_tokens=2000, seq_len=64),
                      out / "model", out / "model", out / "model", str(text_file))
    assert again["heldout"]["tokens"] == again["teacher"]["tokens"] == again["pruned"]["tokens"]
    assert "vocab_size" not in again["pruned"]
    assert again["pruned"]["bits_per_byte"] == pytest.approx(again["teacher"]["bits_per_byte"])
    # a rerun with the same recipe redoes nothing
    capsys.readouterr()
    assert _ship([str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "uniform",
                  "--devices", "local", "--align", "8", "--vocab", "1500"], out) == 0
    err = capsys.readouterr().err
    for stage in ("prune", "recover", "vocab", "eval", "export", "bench"):
        assert f"[{stage}] up to date" in err, err
