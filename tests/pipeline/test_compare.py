import json

import pytest

from edgeprune.cli import main
from tests.pipeline.conftest import save_tiny


@pytest.fixture
def two_models(tmp_path, embedded_tok):
    d, tok = embedded_tok
    a = save_tiny(tmp_path / "a", d, tok, [(4, 2, 128)] * 2, seed=0)
    b = save_tiny(tmp_path / "b", d, tok, [(4, 2, 128), (2, 1, 32), (0, 0, 64)], seed=1)
    return a, b


def test_compare_two_models_table_json_plot(tmp_path, two_models, text_file, capsys):
    a, b = two_models
    out = tmp_path / "cmp"
    rc = main(["compare", str(a), str(b), "--data", str(text_file), "--devices", "raspberry-pi-5,local",
               "--eval-chars", "4000", "--seq-len", "64", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    names = [m["name"] for m in res["models"]]
    assert names == ["a", "b"]
    for m in res["models"]:
        assert m["ppl"] > 1 and 0 < m["bpb"] < 20
        assert m["predicted_tg_tps"]["raspberry-pi-5"] > 0
    # the latency model's prediction (b has fewer parameters but one more layer, whose fixed cost
    # the roofline ignored): the same figure bench and prune show
    from edgeprune.files.checkpoint import load_checkpoint
    from edgeprune.devices import load_device
    from edgeprune.devices.predict import predict

    for m, path in zip(res["models"], (a, b)):
        want = predict(load_checkpoint(path).spec, load_device("raspberry-pi-5"), "Q4_0")["model_tg_tps"]
        assert m["predicted_tg_tps"]["raspberry-pi-5"] == pytest.approx(want, rel=1e-6)
    png = out / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bits/byte" in capsys.readouterr().out


def test_compare_from_scratch_adds_a_row(tmp_path, two_models, text_file):
    a, _ = two_models
    out = tmp_path / "cmp"
    rc = main(["compare", str(a), "--data", str(text_file), "--devices", "raspberry-pi-5",
               "--from-scratch", "2048", "--eval-chars", "3000", "--seq-len", "64", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    assert [m["group"] for m in res["models"]] == ["edgeprune", "from-scratch"]
    assert res["models"][1]["params"] == res["models"][0]["params"]


def test_compare_offline_baseline_says_how_to_provide_it(tmp_path, two_models, text_file, capsys):
    a, _ = two_models
    rc = main(["compare", str(a), "--data", str(text_file), "--baselines", "smollm-135m",
               "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "--baseline-dir" in err[0] and "HuggingFaceTB/SmolLM-135M" in err[0]


def test_compare_baseline_from_local_dir(tmp_path, two_models, text_file, embedded_tok):
    a, _ = two_models
    d, tok = embedded_tok
    save_tiny(tmp_path / "bl" / "mobilellm-125m", d, tok, [(4, 2, 64)] * 3, seed=5)
    out = tmp_path / "cmp"
    assert main(["compare", str(a), "--data", str(text_file), "--baselines", "mobilellm-125m",
                 "--baseline-dir", str(tmp_path / "bl"), "--devices", "raspberry-pi-5",
                 "--eval-chars", "3000", "--seq-len", "64", "--out", str(out)]) == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["models"][1]["group"] == "baseline"


def test_compare_unknown_device_fails_before_work(tmp_path, two_models, text_file, capsys):
    a, _ = two_models
    rc = main(["compare", str(a), "--data", str(text_file), "--devices", "nokia-3310",
               "--out", str(tmp_path / "c")])
    assert rc == 2 and "nokia-3310" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_compare_embedded_data_and_no_baselines_says_so(tmp_path, two_models, capsys):
    """`--data embedded` works as in eval; without baselines the one-model table is not silent;
    the canonical flags (--device, --quant) and the labelled quality note."""
    a, _ = two_models
    out = tmp_path / "cmp"
    assert main(["compare", str(a), "--data", "embedded", "--device", "raspberry-pi-5", "--quant", "Q8_0",
                 "--eval-chars", "2000", "--seq-len", "64", "--out", str(out)]) == 0
    cap = capsys.readouterr()
    assert "no --baselines" in cap.err and "last 2,000 characters of" in cap.out
    res = json.loads((out / "compare.json").read_text())
    assert res["qtype"] == "Q8_0" and res["models"][0]["tokens"] > 0
    assert "tokens" in (out / "table.md").read_text()


def test_compare_size_is_the_file_export_writes(tmp_path, two_models, text_file):
    """The size column equals the GGUF that `export --quant Q4_0` really writes."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from edgeprune.export.api import export_model

    a, _ = two_models
    out = tmp_path / "cmp"
    assert main(["compare", str(a), "--data", str(text_file), "--device", "raspberry-pi-5", "--quant", "Q4_0",
                 "--eval-chars", "2000", "--seq-len", "64", "--out", str(out)]) == 0
    res = json.loads((out / "compare.json").read_text())["models"][0]
    man = export_model(a, tmp_path / "exp", formats=["gguf"], quants=["Q4_0"], progress=False,
                       options={"gguf": {"greedy_tokens": 0}})
    (art,) = [x for x in man["artifacts"] if x["quant"] == "Q4_0"]
    assert res["bytes_exact"] and res["bytes_Q4_0"] == (tmp_path / "exp" / art["path"]).stat().st_size


def test_compare_and_bench_predict_the_same_speed(tmp_path):
    """One prediction: compare's predicted decode rate is the one bench shows beside a GGUF."""
    from edgeprune.devices import load_device
    from edgeprune.export.gguf_writer import write_gguf
    from edgeprune.shape.model import build_model
    from edgeprune.pipeline.cli_compare import predicted_speed
    from edgeprune.devices.predict import predict
    from tests.conftest import hetero_spec
    from tests.export.gguf_cases import make_tokenizer

    spec = hetero_spec(vocab=320)
    path = tmp_path / "m.gguf"
    write_gguf(build_model(spec, 0), path, ftype="F16", tokenizer_dir=make_tokenizer(tmp_path / "tok"),
               config={"bos_token_id": 0, "eos_token_id": 0})
    dev = load_device("raspberry-pi-5")
    bench_pred = predict(path, dev)["model_tg_tps"]  # what bench shows beside the file
    assert predicted_speed(spec, [dev], "F16")["raspberry-pi-5"] == pytest.approx(bench_pred, rel=1e-9)
