"""`edgeprune info` and the CLI's error contract: one line on stderr, exit 2, no traceback."""

import json

import pytest

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.cli import main
from edgeprune.shape.model import build_model
from tests.conftest import hetero_spec


@pytest.fixture
def hetero_dir(tmp_path):
    return save_checkpoint(build_model(hetero_spec(), seed=0), tmp_path / "het")


def test_info_prints_per_layer_table(hetero_dir, capsys):
    assert main(["info", str(hetero_dir)]) == 0
    out = capsys.readouterr().out
    assert "heterogeneous" in out
    rows = [line for line in out.splitlines() if line.startswith("| 2 ") or line.startswith("| 3 ")]
    assert rows[0].split("|")[2].strip() == "0"  # layer 2 has no attention
    assert rows[1].split("|")[4].strip() == "0"  # layer 3 has no MLP
    for q in ("F32", "F16", "Q8_0", "Q4_0", "Q4_K"):
        assert f"| {q} " in out


def test_info_json(hetero_dir, capsys):
    assert main(["info", str(hetero_dir), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["params"]["total"] == hetero_spec().n_params
    assert [x["ffn_dim"] for x in d["layers"]] == [96, 64, 128, 0, 32]


def _corrupt(tmp_path, hetero_dir):
    f = hetero_dir / "model.safetensors"
    f.write_bytes(b"\x00" * 40)
    return hetero_dir


@pytest.mark.parametrize("case, needle", [
    ("missing", "does not exist"),
    ("not_lm", "not a causal LM"),
    ("gpt2", "gpt2"),
    ("corrupt", "safetensors"),
    ("bad_spec", "not divisible"),
    ("no_config", "no config.json"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, hetero_dir, capsys, case, needle):
    target = tmp_path / case
    if case == "not_lm":
        target.mkdir()
        (target / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    elif case == "gpt2":
        target.mkdir()
        (target / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"],
                                                        "model_type": "gpt2"}))
    elif case == "corrupt":
        target = _corrupt(tmp_path, hetero_dir)
    elif case == "bad_spec":
        d = hetero_spec().to_dict()
        d["layers"][1]["n_heads"] = 3  # 3 query heads cannot share 2 KV heads
        d["layers"][1]["n_kv_heads"] = 2
        target = tmp_path / "spec.json"
        target.write_text(json.dumps(d))
    elif case == "no_config":
        target.mkdir()
    rc = main(["info", str(target)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("edgeprune: error:") and needle in err[0], err


def test_unknown_verb_and_bad_flag(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["info"]) == 2  # missing argument: argparse's one-line usage error
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "Traceback" not in err
