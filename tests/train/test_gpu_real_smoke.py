"""The GPU benchmark's CPU smoke (`SMOKE=1 benchmarks/gpu_real.sh`): every step of the one-call GPU
run — teacher samples, prune with each method, KD recovery, bits/byte, Q4_0 / Q8_0 export, chat
in llama.cpp, the reference comparison, the trainer's throughput — end to end on tiny models, so
the GPU call can only fail on the GPU itself. A method the checkout lacks is recorded, not fatal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ("{% for m in messages %}<|endoftext|>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|endoftext|>assistant: {% endif %}")


def _model(path: Path, seed: int) -> Path:
    d = embedded_tokenizer_dir()
    tok = load_tokenizer(d)
    spec = ArchSpec.uniform(family="llama", vocab_size=tok.vocab_size, hidden_size=64, n_layers=4, n_heads=4,
                            n_kv_heads=2, ffn_dim=512, head_dim=16, max_position_embeddings=256)
    out = Path(save_checkpoint(build_model(spec, seed=seed), path, tokenizer_dir=d,
                               config_extra={"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}))
    (out / "chat_template.jinja").write_text(TEMPLATE)
    return out


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash + timeout")
def test_gpu_real_smoke_runs_every_step_on_the_cpu(tmp_path):
    pytest.importorskip("llama_cpp")
    import edgeprune

    model, ref = _model(tmp_path / "model", 1), _model(tmp_path / "ref", 2)
    valid = tmp_path / "valid.txt"
    valid.write_text("\n\f\n".join(p.read_text() for p in sorted(Path(edgeprune.__file__).parent.rglob("*.py"))[:6]))
    env = {**os.environ, "PYTHON": sys.executable, "SMOKE": "1", "MODEL": str(model), "REF_TEACHER": str(ref),
           "VALID_TEXT": str(valid), "METHODS": "uniform no-such-method", "REF_METHODS": "adapt",
           "EDGEPRUNE_CACHE": str(tmp_path / "cache"), "EXTRA": "--n-prompts 3"}
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_real.sh"), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    log = (out / "gpu_real.log").read_text() if (out / "gpu_real.log").is_file() else ""
    assert (out / "gpu_real.json").is_file(), done.stderr[-3000:] + log[-3000:]
    res = json.loads((out / "gpu_real.json").read_text())
    bad = [s for s in res["steps"] if s["status"] != "ok"]
    if bad and all("export" in s["step"] and "llama.cpp crashed" in s["status"] for s in bad):
        # some llama.cpp builds segfault on quantized files on some CPUs: everything else passed
        pytest.xfail("llama.cpp crashes on quantized GGUF files on this machine: export and chat not checked")
    assert done.returncode == 0, done.stderr[-3000:] + log[-3000:]
    assert [s for s in res["steps"] if s["status"] != "ok"] == []
    a = res["smollm"]
    assert a["teacher_samples"]["chat_template"] and a["teacher_samples"]["tokens"] >= 3000
    uniform, missing = a["runs"]
    assert "not registered" in missing["skipped"]
    assert uniform["bpb_recovered"] > 0 and uniform["recovery"]["tokens"] >= 2048
    assert uniform["recovery"]["tokens_per_s"] > 0
    assert set(uniform["files"]) == {"Q4_0", "Q8_0"} and all(Path(f["path"]).is_file() for f in uniform["files"].values())
    assert len(a["original"]["answers"]) == len(uniform["answers"]) == 3  # beside each other in the report
    (ref_run,) = res["reference"]["runs"]
    assert ref_run["ppl_recovered"] > 0 and ref_run["ppl_vs_159M_from_scratch"] > 0
    md = (out / "gpu_real.md").read_text()
    assert "What is the capital of France?" in md and "Trainer throughput" in md
