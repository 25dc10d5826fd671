"""The report's reproduction end to end: retrain the teacher in place, or rewrite the
--data file in place, and rerun `ship` — the stages that depend on it run again. (That an unchanged
rerun skips every stage is tested in tests/pipeline/test_ship.py; the data-file case at the stage
level in test_stale.py: each ship run costs ~10 s of CPU.)"""

from __future__ import annotations

import json

from edgeprune.files.checkpoint import load_checkpoint, save_checkpoint
from edgeprune.cli import main
from edgeprune.shape.model import build_model


def test_ship_reruns_after_teacher_or_data_change_in_place(world, tmp_path, capsys):
    import shutil

    teacher, data = tmp_path / "teacher", tmp_path / "data.txt"
    shutil.copytree(world["model"], teacher)
    shutil.copy(world["data"], data)
    args = ["ship", str(teacher), "--data", str(data), "--method", "uniform", "--ratio", "0.3", "--recover-tokens",
            "0", "--devices", "raspberry-pi-5", "--formats", "gguf", "--quants", "F32", "--calib-samples", "4",
            "--calib-len", "32", "--eval-tokens", "500", "--seq-len", "32", "--no-progress",
            "--out", str(tmp_path / "dist")]

    def ship() -> str:
        capsys.readouterr()
        assert main(args) == 0
        return capsys.readouterr().err

    ship()
    ppl0 = json.loads((tmp_path / "dist" / "report.json").read_text())["eval"]["teacher"]["ppl"]
    spec = load_checkpoint(teacher).spec
    save_checkpoint(build_model(spec, seed=7), teacher, tokenizer_dir=world["model"])  # retrained, same path
    err = ship()
    for stage in ("prune", "eval", "export"):
        assert f"[{stage}] running" in err, err
    assert json.loads((tmp_path / "dist" / "report.json").read_text())["eval"]["teacher"]["ppl"] != ppl0
