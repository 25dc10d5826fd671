"""An output may never be the input, lie inside it, or contain it — for every verb that reads a
model or data and writes an --out, with or without --overwrite: one line, exit 2, nothing touched."""

import shutil

import pytest

from tests.reliability.conftest import cli, one_line_exit_2, snapshot


def _cases(world, tmp):
    m, d = world["model"], world["data"]
    inside = m / "sub"
    return {
        "prune out=model": (["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", d, "--out", m,
                             "--overwrite"], "is the input"),
        "prune out inside model": (["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", d, "--out",
                                    inside], "inside the input"),
        "prune out contains model": (["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", d, "--out",
                                      m.parent, "--overwrite"], "contains the input"),
        "export out=model": (["export", m, "--formats", "gguf", "--quant", "Q8_0", "--out", m], "is the input"),
        "export out inside model": (["export", m, "--formats", "gguf", "--quant", "Q8_0", "--out", inside],
                                    "inside the input"),
        "train out=model": (["train", m, "--data", d, "--tokens", "1000", "--out", m, "--overwrite"],
                            "is the input"),
        "train out=data": (["train", m, "--data", d, "--tokens", "1000", "--out", d, "--overwrite"],
                           "is the input"),
        "ship out=model": (["ship", m, "--data", d, "--out", m], "is the input"),
        "eval json=data": (["eval", m, "--data", d, "--json", d], "is the input"),
    }


CASES = ["prune out=model", "prune out inside model", "prune out contains model", "export out=model",
         "export out inside model", "train out=model", "train out=data", "ship out=model", "eval json=data"]


@pytest.mark.parametrize("case", CASES)
def test_output_overlapping_the_input_is_refused_before_any_work(world, tmp_path, case):
    # a private copy: a failure of this guard must not damage the shared fixture
    root = tmp_path / "w"
    shutil.copytree(world["root"], root)
    w = {"model": root / "model", "data": root / "data.txt", "root": root}
    args, needle = _cases(w, tmp_path)[case]
    before = snapshot(root)
    res = cli(*args, cwd=tmp_path)
    line = one_line_exit_2(res.returncode, res.stderr)
    assert needle in line, line
    assert snapshot(root) == before  # nothing written, nothing replaced
