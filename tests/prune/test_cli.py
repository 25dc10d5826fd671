"""`edgeprune prune`: writes a reloadable pruned checkpoint; bad input exits 2 and writes nothing."""

import json

import pytest
import torch

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.cli import main
from edgeprune.data.tokens import embedded_tokenizer_dir
from edgeprune.shape.model import build_model
from tests.conftest import tiny_spec

TEXT = ("Pruning removes the heads and channels that matter least. The quick brown fox jumps over "
        "the lazy dog. def f(x):\n    return x + 1\n") * 40


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    save_checkpoint(build_model(tiny_spec(vocab=4096), 0), tmp_path / "m", tokenizer_dir=embedded_tokenizer_dir())
    (tmp_path / "calib.txt").write_text(TEXT)
    return tmp_path


def _args(t, *extra):
    return [str(t / "m"), "--calib", str(t / "calib.txt"), "--out", str(t / "out"), "--align", "8",
            "--calib-samples", "4", "--calib-len", "16", *extra]


def test_prune_cli_writes_reloadable_checkpoint(setup, capsys):
    t = setup
    assert main(["prune", *_args(t, "--method", "uniform", "--ratio", "0.2", "--json")]) == 0
    out = capsys.readouterr().out
    assert "| layer |" in out and "parameters:" in out
    ck = load_checkpoint(t / "out")
    src = load_checkpoint(t / "m")
    target = round(src.spec.n_params * 0.8)
    assert abs(ck.spec.n_params - target) / target <= 0.02
    pr = ck.meta["pruning"]
    assert pr["method"] == "uniform" and pr["params_after"] == ck.spec.n_params and pr["calib_samples"] == 4
    assert (t / "out" / "tokenizer.json").is_file()
    with torch.no_grad():
        assert torch.isfinite(ck.model(torch.tensor([[1, 2, 3]])).logits).all()


def test_prune_cli_incremental(setup):
    t = setup
    assert main(["prune", *_args(t, "--method", "adapt", "--ratio", "0.1", "--incremental", "--stages", "2",
                                 "--opt", "steps=2")]) == 0
    ck = load_checkpoint(t / "out")
    assert ck.meta["pruning"]["incremental"] and ck.meta["pruning"]["stages"] == 2
    assert json.loads((t / "out.stages" / "state.json").read_text())["done"] == 2


@pytest.mark.parametrize("extra,match", [
    (["--ratio", "1.5"], "outside"),
    (["--ratio", "0"], "outside"),
    (["--ratio", "0.995"], "below"),
    (["--ratio", "0.5", "--method", "magic"], "invalid choice"),
    (["--ratio", "0.5", "--opt", "bogus=1"], "no option"),
    (["--ratio", "0.5", "--tokens-per-stage", "100"], "--incremental"),
    (["--ratio", "0.5", "--calib", "/nonexistent/calib.txt"], "does not exist"),
])
def test_prune_cli_bad_input_exits_2_and_writes_nothing(setup, capsys, extra, match):
    t = setup
    argv = ["prune", *_args(t), *extra]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors (unknown --method choice) exit 2 directly
        code = e.code
    assert code == 2
    assert match in capsys.readouterr().err
    assert not (t / "out").exists()
    assert [p.name for p in t.iterdir() if p.name.startswith(".out") or p.name.startswith("out")] == []


def test_cli_method_choices_match_the_registry():
    from edgeprune.prune import METHODS
    from edgeprune.pipeline.cli_prune import METHOD_NAMES

    assert sorted(METHOD_NAMES) == sorted(METHODS)


def test_prune_cli_reconstructs_by_default_and_none_skips_it(setup, capsys):
    t = setup
    assert main(["prune", *_args(t, "--method", "depth", "--ratio", "0.04")]) == 0
    rec = load_checkpoint(t / "out").meta["pruning"]["reconstruction"]
    assert rec["mode"] == "layerwise" and rec["seconds"] >= 0 and rec["peak_rss_mb"] > 0
    assert rec["down_proj_error"][1] <= rec["down_proj_error"][0]
    assert "reconstruction (layerwise" in capsys.readouterr().out
    assert main(["prune", *_args(t, "--method", "depth", "--ratio", "0.04", "--reconstruct", "none", "--overwrite")]) == 0
    assert load_checkpoint(t / "out").meta["pruning"]["reconstruction"] == {"mode": "none"}


def test_prune_cli_heals_block_wise_after_reconstruction(setup, capsys):
    t = setup
    assert main(["prune", *_args(t, "--method", "uniform", "--ratio", "0.04", "--heal-tokens", "128")]) == 0
    heal = load_checkpoint(t / "out").meta["pruning"]["healing"]
    assert heal["tokens"] >= 128 and heal["tokens_per_s"] > 0 and heal["layers"]
    assert "block-wise healing" in capsys.readouterr().out
    assert main(["prune", *_args(t, "--method", "uniform", "--ratio", "0.04", "--heal-tokens", "128",
                                 "--reconstruct", "none", "--overwrite")]) == 2
    assert "--heal-tokens" in capsys.readouterr().err


def test_prune_prints_a_quality_verdict_and_the_next_step(setup, capsys):
    t = setup
    assert main(["prune", *_args(t, "--method", "uniform", "--ratio", "0.04")]) == 0
    out = capsys.readouterr().out
    v = load_checkpoint(t / "out").meta["pruning"]["verdict"]
    assert v["perplexity_ratio"] > 0 and v["next_tokens_per_s"] > 0 and v["next_eta_s"] >= 0
    assert f"×{v['perplexity_ratio']:.2f}" in out and v["verdict"] in out
    assert f"next: edgeprune train {t / 'out'} --data {t / 'calib.txt'} --teacher {t / 'm'}" in out
    from edgeprune.cli import build_parser

    argv = v["next"].split()[1:]
    assert build_parser("train").parse_args(argv).verb == "train"  # the suggested command is a real one


def test_prune_states_its_steps_before_the_first_starts(setup, capsys):
    """The plan line comes first on stderr; the search's names its time budget, and without
    reconstruction no reconstruction step is promised."""
    t = setup
    assert main(["prune", *_args(t, "--method", "search", "--ratio", "0.04", "--opt", "budget=0.5")]) == 0
    err = capsys.readouterr().err
    plan = next((ln for ln in err.splitlines() if "prune plan:" in ln), None)
    assert plan is not None, err
    assert "1) search on " in plan and "fitted to 0.5 minutes (--opt budget)" in plan
    assert "2) reconstruction of every kept layer" in plan
    assert err.index("prune plan:") < err.index("reconstruct")  # stated before the work
    assert main(["prune", *_args(t, "--method", "uniform", "--ratio", "0.04", "--reconstruct", "none",
                                 "--overwrite")]) == 0
    plan = next(ln for ln in capsys.readouterr().err.splitlines() if "prune plan:" in ln)
    assert "1) uniform on " in plan and "reconstruction" not in plan


def test_the_verdict_words_follow_the_perplexity_ratio():
    from edgeprune.pipeline.prune_verdict import verdict

    assert verdict(1.05) == "close to the original"
    assert "recovery training closes" in verdict(1.4)
    assert "recover it before shipping" in verdict(2.5)
    assert verdict(150.0) == "unusable without recovery"


def test_prune_search_journals_its_candidates_beside_the_output(setup):
    t = setup
    args = _args(t, "--method", "search", "--ratio", "0.04", "--opt", "steps=1", "--opt", "finalists=2",
                 "--opt", "refine=0")
    assert main(["prune", *args]) == 0
    book = json.loads((t / "out.search" / "journal.json").read_text())
    scores = [k for k in book["entries"] if k.split(":")[0] in ("cut", "distil")]
    assert scores and all(k.split(":")[0] in ("cut", "distil", "budget") for k in book["entries"])
    # the verb hands the search train's own KD step (recovery's settings), not the plain default
    assert load_checkpoint(t / "out").meta["pruning"]["log"]["distill"]["kind"] == "train-kd"
    # a rerun (a killed run leaves no --out) resumes from the journal without --overwrite
    import shutil

    shutil.rmtree(t / "out")
    assert main(["prune", *args]) == 0
    assert load_checkpoint(t / "out").meta["pruning"]["log"]["resumed_scores"] == len(scores)


def test_depth_without_fill_keeps_a_plain_llama(setup, capsys):
    """--method depth cuts the remainder below one layer from widths (a per-layer-width `deci` file),
    as its --help says; --opt fill=false drops whole layers only: the kept layers keep their widths."""
    t = setup
    src = load_checkpoint(t / "m").spec
    assert src.is_uniform
    assert main(["prune", *_args(t, "--method", "depth", "--ratio", "0.1", "--opt", "fill=false")]) == 0
    plain = load_checkpoint(t / "out").spec
    assert plain.is_uniform and plain.n_layers < src.n_layers
    assert plain.layers[0] == src.layers[0]
    assert main(["prune", *_args(t, "--method", "depth", "--ratio", "0.1", "--overwrite")]) == 0
    assert not load_checkpoint(t / "out").spec.is_uniform  # the fill narrowed some layers


def test_export_and_the_app_bundle_carry_the_cut_verdict(setup, capsys):
    """The figure prune printed reaches the export's manifest and output and the bundle's README,
    so an app developer meets it before shipping the file."""
    import json

    t = setup
    assert main(["prune", *_args(t, "--method", "uniform", "--ratio", "0.04")]) == 0
    v = load_checkpoint(t / "out").meta["pruning"]["verdict"]
    capsys.readouterr()
    assert main(["export", str(t / "out"), "--out", str(t / "exp"), "--formats", "gguf", "--quant", "Q8_0",
                 "--bundle", "--no-progress"]) == 0
    figure = f"×{v['perplexity_ratio']:.2f}"
    assert figure in capsys.readouterr().out
    manifest = json.loads((t / "exp" / "manifest.json").read_text())
    assert manifest["quality"]["perplexity_ratio"] == v["perplexity_ratio"] and not manifest["quality"]["trained_since"]
    readme = (t / "exp" / "app" / "README.md").read_text()
    assert "## Quality" in readme and figure in readme and v["verdict"] in readme
    assert "next" not in manifest["quality"]  # a model file's command is not repeated as advice
