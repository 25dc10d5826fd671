"""`edgeprune ship` writes dist/app (the app bundle) and a report with the memory plan: weights +
KV per context, the overhead the local bench measured, and the fit on each device's RAM."""

import json

from edgeprune.cli import main
from edgeprune.devices.memory import CONTEXTS
from tests.pipeline.conftest import save_tiny

FAST = ["--recover-tokens", "0", "--calib-samples", "4", "--calib-len", "32", "--bench-prompt", "16",
        "--bench-gen", "8", "--bench-reps", "1", "--eval-tokens", "500", "--formats", "gguf", "--quants", "F16",
        "--seq-len", "64", "--no-progress"]


def test_ship_writes_app_bundle_and_memory_plan(tmp_path, embedded_tok, text_file, capsys):
    d, tok = embedded_tok
    teacher = save_tiny(tmp_path / "teacher", d, tok, [(4, 2, 256), (4, 2, 192), (4, 2, 256)], seed=3)
    out = tmp_path / "dist"
    rc = main(["ship", str(teacher), "--data", str(text_file), "--ratio", "0.3", "--method", "adapt",
               "--devices", "local,raspberry-pi-4", "--align", "8", "--out", str(out), *FAST])
    assert rc == 0, capsys.readouterr().err
    app = json.loads((out / "app" / "bundle.json").read_text())
    for f in app["files"]:
        assert (out / "app" / f["file"]).stat().st_size == f["bytes"] and f["file"].endswith("-F16.gguf")
    assert (out / "app" / "Modelfile").read_text().count(f"FROM ./{app['default']}") == 1
    readme = (out / "app" / "README.md").read_text()
    assert "| local " in readme and "measured" in readme  # the local bench's speed
    rep = json.loads((out / "report.json").read_text())
    (rec,) = rep["bench"]
    mem = rep["memory"]["files"][rec["model"]]
    assert [m["n_ctx"] for m in mem if m["cache_type"] == "f16"] == list(CONTEXTS)
    assert all(m["overhead_bytes"] == rec["memory"]["overhead_bytes"] > 0 for m in mem)
    md = (out / "report.md").read_text()
    assert "## Memory" in md and "## App bundle" in md
    fit = [ln for ln in md.split("## Memory")[1].splitlines() if ln.startswith("| raspberry-pi-4")]
    assert fit and all(ln.count("fits") == len(CONTEXTS) for ln in fit)  # a tiny model fits a 4 GB Pi
    assert rep["memory"]["warnings"] == []
