"""Text sampled from the teacher (`--data teacher:N`): deterministic under a seed, chat prompts through
the model's own template, cached by content, resumable after a kill, and mixable with a corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.data.tokens import embedded_tokenizer_dir, load_tokenizer, token_file
from edgeprune.base.errors import DataError
from edgeprune.shape.model import build_model
from edgeprune.shape.spec import ArchSpec, LayerSpec
from edgeprune.train.teacher_settings import SamplingSettings
from edgeprune.data.text_sources import iter_documents, source_problem, split_sources, teacher_source_tokens
from edgeprune.train.teacher_text import resolve_teacher_sources, sample_teacher_text

# a template none of the seed text contains, so its markers prove the prompt went through it
TEMPLATE = ("{% for m in messages %}### {{ m['role'] }} says:\n{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}### assistant says:\n{% endif %}")
SMALL = dict(max_new_tokens=12, prompt_tokens=6, batch_size=4)


def _save(path: Path, template: bool) -> Path:
    d = embedded_tokenizer_dir()
    tok = load_tokenizer(d)
    spec = ArchSpec(family="llama", vocab_size=tok.vocab_size, hidden_size=32, head_dim=16,
                    layers=(LayerSpec(2, 1, 64), LayerSpec(2, 2, 48)), max_position_embeddings=256)
    out = save_checkpoint(build_model(spec, seed=3), path, tokenizer_dir=d,
                          config_extra={"bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id})
    if template:
        (Path(out) / "chat_template.jinja").write_text(TEMPLATE)
    return Path(out)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("teacher") / "model", template=True)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def seed_text(tmp_path_factory) -> Path:
    import edgeprune

    docs = [p.read_text() for p in sorted(Path(edgeprune.__file__).parent.rglob("*.py"))[:8]]
    f = tmp_path_factory.mktemp("seed") / "seed.txt"
    f.write_text("\n\f\n".join(docs))
    return f


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("shard-*.jsonl")) for line in f.read_text().splitlines()]


def test_same_seed_same_text_other_seed_other_text(teacher, tmp_path, seed_text):
    s = SamplingSettings(tokens=300, seed=7, **SMALL)
    a = sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False, cache_dir=tmp_path / "a")
    b = sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False, cache_dir=tmp_path / "b")
    assert _rows(a) == _rows(b) and sum(r["tokens"] for r in _rows(a)) >= 300
    c = sample_teacher_text(teacher, SamplingSettings(tokens=300, seed=8, **SMALL), seed_source=seed_text,
                            device="cpu", progress=False, cache_dir=tmp_path / "c")
    assert [r["text"] for r in _rows(c)] != [r["text"] for r in _rows(a)]
    assert any(r["new_tokens"] > 0 for r in _rows(a))  # the teacher wrote something after each prompt


def test_chat_prompts_use_the_models_template_and_settings_are_recorded(teacher, tmp_path, seed_text):
    s = SamplingSettings(tokens=400, temperature=0.7, top_p=0.9, chat_fraction=0.5, **SMALL)
    out = sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False)
    rows = _rows(out)
    chats = [r for r in rows if r["kind"] == "chat"]
    plain = [r for r in rows if r["kind"] == "continuation"]
    assert chats and plain
    for r in chats:
        assert r["text"].startswith("### user says:\n") and "\n### assistant says:\n" in r["text"]
    assert not any("### user says" in r["text"] for r in plain)
    seed = seed_text.read_text()
    assert all(r["text"][:8] in seed for r in plain)  # plain rows continue the seed text
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"]["temperature"] == 0.7 and meta["settings"]["top_p"] == 0.9
    assert meta["chat_template"] is True and meta["tokens"] == sum(r["tokens"] for r in rows)


def test_without_a_template_every_prompt_is_a_continuation(tmp_path, seed_text):
    plain = _save(tmp_path / "plain", template=False)
    out = sample_teacher_text(plain, SamplingSettings(tokens=200, chat_fraction=1.0, **SMALL),
                              seed_source=seed_text, device="cpu", progress=False)
    assert {r["kind"] for r in _rows(out)} == {"continuation"}


def test_second_call_is_a_cache_hit_without_sampling(teacher, seed_text, monkeypatch):
    import edgeprune.train.teacher_text as tt

    s = SamplingSettings(tokens=200, **SMALL)
    first = sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False)

    def no_sampling(*a, **k):
        raise AssertionError("sampled again")

    monkeypatch.setattr(tt, "sample_batch", no_sampling)
    assert sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False) == first
    with pytest.raises(AssertionError, match="sampled again"):  # other settings: another cache entry
        sample_teacher_text(teacher, SamplingSettings(tokens=200, temperature=0.5, **SMALL), seed_source=seed_text,
                            device="cpu", progress=False)


KILLER = """
import os, signal, sys
from pathlib import Path
import edgeprune.train.teacher_text as tt
from edgeprune.train.teacher_settings import SamplingSettings

real, written = tt.atomic_write_text, []
def write(path, text):
    if Path(path).name.endswith(".jsonl") and len(written) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # killed while the third shard is being sampled
    if Path(path).name.endswith(".jsonl"):
        written.append(path)
    return real(path, text)
tt.atomic_write_text = write
s = SamplingSettings(tokens=int(sys.argv[3]), max_new_tokens=12, prompt_tokens=6, batch_size=4)
tt.sample_teacher_text(sys.argv[1], s, seed_source=sys.argv[2], device="cpu", progress=False)
"""


def test_a_killed_run_resumes_from_its_last_complete_shard(teacher, seed_text, tmp_path):
    env = {**os.environ, "EDGEPRUNE_CACHE": str(tmp_path / "killed")}
    done = subprocess.run([sys.executable, "-c", KILLER, str(teacher), str(seed_text), "2000"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    (folder,) = (tmp_path / "killed" / "teacher_text").iterdir()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        ["shard-00000.jsonl", "shard-00000.sha256", "shard-00001.jsonl", "shard-00001.sha256"]  # two whole shards,
    # each with its content hash; no meta, no half-written file
    s = SamplingSettings(tokens=2000, **SMALL)
    resumed = sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False,
                                  cache_dir=tmp_path / "killed" / "teacher_text")
    assert resumed == folder and json.loads((folder / "meta.json").read_text())["resumed_from_shard"] == 2
    straight = sample_teacher_text(teacher, s, seed_source=seed_text, device="cpu", progress=False,
                                   cache_dir=tmp_path / "straight")
    assert _rows(resumed) == _rows(straight)


def test_teacher_source_names_and_mixes(tmp_path):
    assert teacher_source_tokens("teacher:20M") == 20_000_000
    assert teacher_source_tokens("teacher:1.5k") == 1500
    assert split_sources("a.txt,teacher:5M") == ["a.txt", "teacher:5M"]
    comma = tmp_path / "x,y.txt"
    comma.write_text("hi")
    assert split_sources(str(comma)) == [str(comma)]  # an existing path is one source
    assert "teacher:N" in source_problem("teacher:lots")
    assert "does not exist" in source_problem("teacher:5M,/no/such.txt")
    assert source_problem(f"teacher:5M,{tmp_path}") is None
    with pytest.raises(DataError, match="needs a run with a teacher"):
        list(iter_documents("teacher:5M"))


def test_a_mix_reads_teacher_samples_first_and_the_corpus_last(teacher, seed_text, tmp_path):
    with pytest.raises(DataError, match="this run has none"):
        resolve_teacher_sources(f"{seed_text},teacher:200", None)
    mixed = resolve_teacher_sources(f"{seed_text},teacher:200", teacher, device="cpu", progress=False, **SMALL)
    first, last = split_sources(mixed)
    assert Path(first).is_dir() and last == str(seed_text)
    docs = list(iter_documents(mixed))
    assert docs[-1] == seed_text.read_text().split("\n\f\n")[-1]  # the held-out tail is the user's text
    rows = _rows(Path(first))
    assert docs[: len(rows)] == [r["text"] for r in rows]
    seed = seed_text.read_text()
    assert all(r["text"][:8] in seed for r in rows if r["kind"] == "continuation")  # seeded by the corpus
    tokens = token_file(mixed, load_tokenizer(teacher), progress=False)
    assert len(tokens) > sum(r["tokens"] for r in rows)
