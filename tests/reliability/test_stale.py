"""Stale results: ship's stage fingerprints cover contents, not only paths; an
unreadable stage record means "run again", never a traceback."""

from __future__ import annotations

import os

from edgeprune.files.checkpoint import save_checkpoint
from edgeprune.base.hashing import content_fingerprint
from edgeprune.shape.model import build_model
from edgeprune.pipeline.stages import StageRunner
from tests.conftest import tiny_spec


def _runner(root, calls):
    def run(name, inputs, after=(), out=None):
        def fn():
            calls.append(name)
            return {"out": str(out)} if out else {}
        return StageRunner.run(r, name, inputs, fn, after=after)
    r = StageRunner(root, stream=open(os.devnull, "w"))
    return r, run


def test_rewriting_the_data_file_in_place_reruns_the_stage(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("first text\n")
    st = data.stat()
    calls: list[str] = []
    for expected in (["a"], ["a"]):  # second run: up to date
        _r, run = _runner(tmp_path / "w", calls)
        run("a", {"data": str(data)})
        assert calls == expected
    data.write_text("other text\n")  # same size, and the same mtime: only the content differs
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    _r, run = _runner(tmp_path / "w", calls)
    run("a", {"data": str(data)})
    assert calls == ["a", "a"]


def test_regenerated_teacher_reruns_every_stage_after_it(tmp_path):
    teacher = tmp_path / "teacher"
    save_checkpoint(build_model(tiny_spec(), seed=0), teacher)
    calls: list[str] = []

    def pipeline():
        r, run = _runner(tmp_path / "w", calls)
        run("teacher", {"model": "fixed-name"}, out=teacher)  # the path is recorded as an output
        run("prune", {"ratio": 0.3}, after=["teacher"])
        run("export", {"q": "Q8_0"}, after=["prune"])

    pipeline()
    pipeline()
    assert calls == ["teacher", "prune", "export"]  # the second pass skipped all three
    save_checkpoint(build_model(tiny_spec(), seed=1), teacher)  # retrained in place, same path
    pipeline()
    assert calls == ["teacher", "prune", "export"] * 2


def test_empty_or_corrupt_stage_record_runs_the_stage_again(tmp_path):
    calls: list[str] = []
    _r, run = _runner(tmp_path, calls)
    run("prune", {"ratio": 0.3})
    for bad in ("", "{not json", "[1, 2]", '{"outputs": 3}'):
        (tmp_path / ".stages" / "prune.json").write_text(bad)
        _r, run = _runner(tmp_path, calls)
        run("prune", {"ratio": 0.3})
    assert calls == ["prune"] * 5


def test_content_fingerprint_sees_weights_and_ignores_our_temporaries(tmp_path):
    a = save_checkpoint(build_model(tiny_spec(), seed=0), tmp_path / "a")
    fp = content_fingerprint(a)
    assert content_fingerprint(a) == fp and len(fp) == 16
    (a / ".a.lock").write_text("123")
    assert content_fingerprint(a) == fp
    save_checkpoint(build_model(tiny_spec(vocab=300), seed=0), a)  # another header
    assert content_fingerprint(a) != fp
    assert content_fingerprint(tmp_path / "missing") == ""
