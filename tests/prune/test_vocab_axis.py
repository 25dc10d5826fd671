"""The vocabulary size as an axis of the search, only when the user asked for trimming: a speed
target counts the trimmed head's rows, `--vocab-coverage P` lets the search trim down to the 0.99
floor where that buys the speed at the least estimated loss, and the written model (and its GGUF)
has the rows decided; without a trimming flag the vocabulary never changes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgeprune.base.errors import PruneError
from edgeprune.cli import main
from edgeprune.data.vocab_trim import (coverage_ladder, plan_trim, split_growth, text_token_counts,
                                       trimmed_tokenizer_json)
from edgeprune.devices import load_device
from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.prune import prune_model
from edgeprune.prune.latency import make_target
from edgeprune.prune.vocab_axis import vocab_options
from edgeprune.shape.gguf_types import decode_weight_bytes
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec

REF = Path("/work/shared/refcorpus")
pytestmark = pytest.mark.skipif(not (REF / "tokenizer" / "tokenizer.json").is_file(), reason="needs shared/refcorpus")
# the refcorpus tokenizer's 16,384 rows on a small body: the head is most of what a decoded token reads
SPEC = ArchSpec.uniform(family="llama", vocab_size=16384, hidden_size=64, n_layers=6, n_heads=4, n_kv_heads=2,
                        ffn_dim=96, head_dim=16, max_position_embeddings=128)
FAST = {"steps": 1, "finalists": 2, "refine": 0}
SPEEDUP = 1.7  # out of the body's reach at the whole vocabulary (one layer left: x1.45 predicted)
CALIB = torch.randint(0, 16384, (8, 16), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module", autouse=True)
def _root(tmp_path_factory):
    """The module's folder and its own cache: no calibrated latency table leaks in, and the user's
    text is tokenized once for every test."""
    root = tmp_path_factory.mktemp("vocab-axis")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEPRUNE_CACHE", str(root / "cache"))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def corpus(_root):
    """(folder, tokenizer.json, token counts of the user's text)."""
    (_root / "data.txt").write_text((REF / "valid.txt").read_text()[:200_000])
    tj = json.loads((REF / "tokenizer" / "tokenizer.json").read_text())
    return _root, tj, text_token_counts(_root / "data.txt", REF / "tokenizer")


def test_the_ladder_stops_at_the_users_coverage_and_the_floor():
    assert coverage_ladder(0.999) == [0.999, 0.995, 0.99]
    assert coverage_ladder(0.9995) == [0.9995, 0.999, 0.995, 0.99]
    assert coverage_ladder(0.995) == [0.995, 0.99]
    assert coverage_ladder(0.97) == [0.97]  # below the floor: only what the user asked


def test_split_growth_is_the_text_s_real_token_growth(corpus):
    from tokenizers import Tokenizer

    root, tj, counts = corpus
    text = (root / "data.txt").read_text()
    n0 = len(Tokenizer.from_str(json.dumps(tj)).encode(text, add_special_tokens=False).ids)
    for size in (6000, 2000):
        trim = plan_trim(tj, counts, size=size)
        n1 = len(Tokenizer.from_str(json.dumps(trimmed_tokenizer_json(tj, trim))).encode(
            text, add_special_tokens=False).ids)
        real = (n1 - n0) / n0
        assert real > 0.01 and split_growth(tj, trim, counts) == pytest.approx(real, rel=0.05)
    assert split_growth(tj, plan_trim(tj, counts, coverage=1.0), counts) == 0.0  # nothing the text holds is dropped


def test_options_are_the_size_asked_or_the_coverages_down_to_the_floor(corpus):
    _, tj, counts = corpus
    (one,) = vocab_options(tj, counts, size=5000)
    assert one.size == 5000 and one.coverage is None
    opts = vocab_options(tj, counts, coverage=0.999)
    assert [o.coverage for o in opts] == [0.999, 0.995, 0.99]
    assert opts[0].size > opts[1].size > opts[2].size and all(o.trim.covered >= 0.99 for o in opts)
    assert opts[0].growth < opts[1].growth < opts[2].growth  # a smaller vocabulary splits more of the text


def test_a_speed_target_counts_the_trimmed_head_rows(corpus):
    _, tj, counts = corpus
    dev = load_device("raspberry-pi-5")
    target = make_target(dev, "Q4_0", speedup=SPEEDUP, spec=SPEC)
    with pytest.raises(PruneError, match="no shape"):  # the body alone cannot reach it at the whole head
        prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, device=dev,
                    quant="Q4_0", speedup=SPEEDUP, head="keep", **FAST)
    (opt,) = vocab_options(tj, counts, size=5000)  # --vocab N: N as given
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, device=dev,
                      quant="Q4_0", speedup=SPEEDUP, head="keep", vocab=[opt], **FAST)
    assert res.vocab is opt and res.spec.vocab_size == SPEC.vocab_size  # the caller trims; ids still fit
    v = res.summary()["vocab"]
    assert v["size"] == 5000 and not v["decided"] and v["asked"] == 5000
    shipped = replace(res.spec, vocab_size=5000)
    assert v["predicted_decode_bytes"] == decode_weight_bytes(shipped, "Q4_0")
    assert v["predicted_decode_bytes"] < v["predicted_decode_bytes_untrimmed"] == decode_weight_bytes(res.spec, "Q4_0")
    # the prediction the search met is at 5,000 rows: the same shape with the whole head would miss
    assert target.with_vocab(5000).decode_tps_of(res.spec) >= target.decode_tps > target.decode_tps_of(res.spec)
    lat = res.log["latency"]
    assert lat["vocab_size"] == 5000 and lat["predicted_speedup"] >= SPEEDUP


def test_the_search_chooses_among_the_coverages_at_the_least_estimated_loss(corpus):
    _, tj, counts = corpus
    dev = load_device("raspberry-pi-5")
    opts = vocab_options(tj, counts, coverage=0.999)
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, device=dev,
                      quant="Q4_0", speedup=SPEEDUP, head="keep", vocab=opts, **FAST)
    v = res.summary()["vocab"]
    assert v["decided"] and v["asked"] == opts[0].size and res.vocab in opts and v["size"] == res.vocab.size
    rows = v["options"]
    assert [r["size"] for r in rows] == [o.size for o in opts] and all(r["shapes"] > 0 for r in rows)
    cal_loss = res.log["calibration_loss"]
    for r, o in zip(rows, opts):
        assert r["cost"] == pytest.approx(o.growth * cal_loss, rel=1e-4, abs=1e-6)  # head kept: the trim's cost only
    assert all(r["head_cost"] == 0.0 for r in rows)  # head=keep: the preset's type, no quantization cost
    total = [r["cost"] + r["head_cost"] + r["least_body_saliency"] for r in rows]
    assert total[[r["size"] for r in rows].index(v["size"])] == pytest.approx(min(total))
    assert make_target(dev, "Q4_0", speedup=SPEEDUP, spec=SPEC).with_vocab(v["size"]).decode_tps_of(res.spec) \
        >= res.log["latency"]["target_decode_tps"]


def test_the_head_type_and_the_vocabulary_are_chosen_together(corpus):
    _, tj, counts = corpus
    dev = load_device("raspberry-pi-5")
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, device=dev,
                      quant="Q4_0", speedup=SPEEDUP, vocab=vocab_options(tj, counts, coverage=0.999), **FAST)
    head, v = res.summary()["head"], res.summary()["vocab"]
    # each record holds the other axis at its decided value; the decided pair is the least of both rows
    chosen_v = next(r for r in v["options"] if r["size"] == v["size"])
    for r in head["options"]:
        if r["least_body_saliency"] is not None:
            assert r["head_cost"] + r["least_body_saliency"] >= chosen_v["head_cost"] + chosen_v["least_body_saliency"] - 1e-5
    for r in v["options"]:
        assert r["cost"] + r["head_cost"] + r["least_body_saliency"] >= \
            chosen_v["cost"] + chosen_v["head_cost"] + chosen_v["least_body_saliency"] - 1e-5
    assert head["predicted_decode_bytes"] == v["predicted_decode_bytes"] == decode_weight_bytes(
        replace(res.spec, vocab_size=v["size"]), "Q4_0", head["type"])
    assert res.log["latency"]["vocab_size"] == v["size"] and res.log["latency"]["head_type"] == head["type"]


def test_without_a_decode_target_the_vocabulary_asked_stays(corpus):
    _, tj, counts = corpus
    opts = vocab_options(tj, counts, coverage=0.999)
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False, ratio=0.1,
                      axes="depth,ffn", vocab=opts, **FAST)
    assert res.vocab is opts[0] and not res.summary()["vocab"]["decided"]


def test_prune_writes_the_chosen_vocabulary_and_its_gguf_has_those_rows(corpus, tmp_path, capsys):
    from edgeprune.export.llamacpp_runner import have_llamacpp

    root, _, _ = corpus
    save_checkpoint(build_model(SPEC, 0), tmp_path / "m", tokenizer_dir=REF / "tokenizer",
                    config_extra={"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0})
    common = ["--method", "search", "--device", "raspberry-pi-5", "--quant", "Q4_0", "--speedup", str(SPEEDUP),
              "--data", str(root / "data.txt"), "--align", "8", "--calib-samples", "8", "--calib-len", "16",
              "--reconstruct", "none", "--opt", "steps=1", "--opt", "finalists=2", "--opt", "refine=0",
              "--opt", "head=keep"]
    # without a trimming flag the vocabulary is never an option: the target is out of reach
    assert main(["prune", str(tmp_path / "m"), "--out", str(tmp_path / "plain"), *common]) == 2
    assert "no shape" in capsys.readouterr().err and not (tmp_path / "plain").exists()
    assert main(["prune", str(tmp_path / "m"), "--out", str(tmp_path / "out"), "--vocab-coverage", "0.999",
                 *common]) == 0
    out = load_checkpoint(tmp_path / "out")
    decided = out.meta["pruning"]["vocab"]
    assert out.spec.vocab_size == decided["size"] == out.meta["vocab"]["size"] == len(out.meta["vocab"]["kept_ids"])
    assert decided["size"] < SPEC.vocab_size and out.meta["vocab"]["covered"] >= 0.99
    assert out.meta["pruning"]["log"]["latency"]["vocab_size"] == decided["size"]
    if not have_llamacpp():
        pytest.skip("needs llama-cpp-python for the GGUF")
    from edgeprune.data.tokens import load_tokenizer
    from edgeprune.export.gguf_export import export_gguf
    from edgeprune.files.gguf_reader import open_gguf

    check = torch.tensor(load_tokenizer(tmp_path / "out").encode((REF / "valid.txt").read_text()[300_000:301_000])[:32])
    (art,) = export_gguf(out, tmp_path / "gguf", ["Q4_0"], check, greedy_tokens=0, progress=False)
    reader = open_gguf(art.path)
    emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert int(emb.shape[1]) == decided["size"]  # gguf lists a matrix's shape innermost first
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == decided["size"]


def test_the_plain_prune_without_a_flag_keeps_the_vocabulary(tmp_path):
    res = prune_model(build_model(SPEC, seed=0), method="search", calib=CALIB, align=8, progress=False,
                      device=load_device("raspberry-pi-5"), quant="Q4_0", speedup=1.3, head="keep", **FAST)
    assert res.vocab is None and "vocab" not in res.summary() and res.spec.vocab_size == SPEC.vocab_size
    assert res.log["latency"]["vocab_size"] == SPEC.vocab_size


def test_a_parameter_method_s_count_is_found_at_the_trimmed_head():
    from edgeprune.prune.request import PruneRequest

    req = PruneRequest(method="uniform", speedup=1.02, device="raspberry-pi-5", quant="Q4_0", align=8)
    whole, trimmed = req.resolve(SPEC), req.resolve(SPEC, vocab_size=14000)
    assert trimmed.latency.vocab_size == 14000 and whole.latency.vocab_size is None
    assert trimmed.target_params > whole.target_params  # fewer head rows to read: less of the body has to go


def test_a_measured_target_times_each_try_as_the_trimmed_file_it_ships_as(corpus, tmp_path, monkeypatch, capsys):
    """--measure-rounds with --vocab: the file each landing try times has the trimmed rows, the try
    names its vocabulary, and the model written is the kept try's, trimmed the same way."""
    from edgeprune.export.llamacpp_runner import have_llamacpp
    from edgeprune.pipeline.land_target import DeviceMeasure

    if not have_llamacpp():
        pytest.skip("needs llama-cpp-python to time the files")
    root, _, _ = corpus
    save_checkpoint(build_model(SPEC, 0), tmp_path / "m", tokenizer_dir=REF / "tokenizer",
                    config_extra={"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 0})
    timed = []  # (name, vocabulary rows) of every file the landing exported
    real_export = DeviceMeasure._export

    def spy(self, ckpt, name):
        timed.append((name, ckpt.spec.vocab_size))
        return real_export(self, ckpt, name)
    monkeypatch.setattr(DeviceMeasure, "_export", spy)
    assert main(["prune", str(tmp_path / "m"), "--out", str(tmp_path / "out"), "--method", "depth",
                 "--speedup", "1.2", "--device", "local", "--quant", "Q8_0", "--measure-rounds", "2", "--tries", "1",
                 "--vocab", "4000", "--data", str(root / "data.txt"), "--align", "8", "--calib-samples", "8",
                 "--calib-len", "16", "--reconstruct", "none"]) == 0
    out = load_checkpoint(tmp_path / "out")
    size = out.meta["vocab"]["size"]
    assert size <= 4000 and out.spec.vocab_size == size
    assert timed[0] == ("original", SPEC.vocab_size)  # the reference is the user's whole model
    cuts = [rows for name, rows in timed if name != "original"]
    assert cuts == [size]  # the one try was timed with the rows that ship
    (tried,) = out.meta["pruning"]["log"]["landing"]["tries"]
    assert tried["shape"].endswith(f"vocab {size:,}") and tried["params"] == out.meta["pruning"]["params_after"]


def test_the_option_a_prune_decided_is_found_or_the_change_of_data_is_named(corpus):
    from edgeprune.prune.vocab_axis import option_of_size

    _, tj, counts = corpus
    opts = vocab_options(tj, counts, coverage=0.999)
    assert option_of_size(opts, None) is opts[0]
    assert option_of_size(opts, opts[-1].size) is opts[-1]
    with pytest.raises(PruneError, match="data changed"):
        option_of_size(opts, opts[0].size + 1)
