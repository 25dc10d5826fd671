"""A full disk, for every verb that writes, is one line naming the output (with what the writer
could not write, when it says, and the space left), exit 2; the run's partial outputs are removed
(no empty --out left) and an earlier output at the same place is intact. (ship's --out is a work
folder a rerun resumes from: the stages it finished stay, temporaries do not.)

Two ways to fill the disk: a real 256 KiB tmpfs where this machine lets the test mount one (root
with CAP_SYS_ADMIN), and everywhere a fault injected at the writers' own write calls, in the
words each reports it with: safetensors' SafetensorError ("os error 28"), numpy's short write of a
GGUF tensor ("N requested and M written", no errno) and Python's OSError(ENOSPC / EDQUOT)."""

from __future__ import annotations

import errno
import os
import pathlib
import re
import shutil
import subprocess
from contextlib import contextmanager

import pytest

from edgeprune.cli import main
from edgeprune.base.outdir import write_marker

from .conftest import one_line_exit_2, snapshot

VERBS = {  # verb -> argv writing to OUT, and the flag naming OUT
    "export-gguf": (lambda m, d, out: ["export", m, "--formats", "gguf", "--greedy-tokens", "0", "--out", out], "--out"),
    "export-hf": (lambda m, d, out: ["export", m, "--formats", "hf", "--out", out], "--out"),
    "prune": (lambda m, d, out: ["prune", m, "--method", "uniform", "--ratio", "0.3", "--data", d,
                                 "--calib-samples", "4", "--calib-len", "32", "--out", out], "--out"),
    "train": (lambda m, d, out: ["train", m, "--data", d, "--tokens", "512", "--seq-len", "32", "--no-progress",
                                 "--out", out], "--out"),
    "pretrain": (lambda m, d, out: ["pretrain", "--arch", "tiny", "--data", d, "--tokens", "512", "--seq-len", "32",
                                    "--no-progress", "--out", out], "--out"),
    "ship": (lambda m, d, out: ["ship", m, "--data", d, "--method", "uniform", "--ratio", "0.3", "--recover-tokens",
                                "0", "--calib-samples", "4", "--calib-len", "32", "--devices", "local", "--no-progress",
                                "--out", out], "--out"),
    "eval": (lambda m, d, out: ["eval", m, "--data", d, "--max-tokens", "256", "--seq-len", "32", "--json", out],
             "--json"),
    "bench": (lambda m, d, out: ["bench", "--predict-only", "--model", m, "--devices", "raspberry-pi-5", "--out", out],
              "--out"),
    "compare": (lambda m, d, out: ["compare", m, "--data", d, "--eval-chars", "4000", "--seq-len", "32", "--out", out],
                "--out"),
}
FILE_OUTPUTS = ("eval", "bench")  # verbs whose output is one small file
FILLED = (*FILE_OUTPUTS, "compare")  # small outputs: the disk is filled for them
# ship's --out is a work folder a rerun resumes from: the stages it finished stay (its recipe and
# stage records); what must hold is that nothing earlier changed and no temporary is left
WORK_OUTPUTS = ("ship",)


def _unchanged(verb, before, after) -> None:
    if verb not in WORK_OUTPUTS:
        assert after == before  # the earlier output intact, nothing partial, no temporary, no lock
        return
    assert {k: after.get(k) for k in before if k != ".edgeprune-output" and not k.endswith("/.edgeprune-output")} \
        == {k: v for k, v in before.items() if k != ".edgeprune-output" and not k.endswith("/.edgeprune-output")}
    left = [k for k in after if ".tmp-" in k or ".old-" in k or k.endswith(".lock") or ".export-tmp-" in k]
    assert not left, left


@contextmanager
def _tmpfs(path, size: str):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("no tmpfs can be mounted here (needs CAP_SYS_ADMIN); the injected rows cover it")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC


def _previous(out) -> None:
    """An earlier output of edgeprune's at OUT (ours, so the run may replace it)."""
    if out.suffix == ".json":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text('{"earlier": true}')
        write_marker(out.parent, [out.name])
    else:
        out.mkdir(parents=True)
        (out / "earlier.txt").write_text("an earlier output\n")
        write_marker(out, ["earlier.txt"])


def _check(verb, rc, err, flag, out, root, before):
    line = one_line_exit_2(rc, err)
    assert line.split(": error: ", 1)[1].startswith(f"{flag} {out}:") and "no space left" in line, line
    _unchanged(verb, before, snapshot(root))
    return line


@pytest.mark.timeout(120)
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "earlier-output"])
@pytest.mark.parametrize("verb", list(VERBS))
def test_real_full_disk_is_one_line(world, tmp_path, monkeypatch, capsys, verb, earlier):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    argv, flag = VERBS[verb]
    with _tmpfs(tmp_path / "small", "256k"):
        out = "small/r.json" if verb in FILE_OUTPUTS else "small/ex"
        if earlier:
            _previous(tmp_path / out)
        if verb in FILLED:  # a few KB of JSON: leave no page free for it
            _fill(tmp_path / "small" / "filler")
        before = snapshot(tmp_path / "small")
        rc = main(argv(str(world["model"]), str(world["data"]), out))
        _check(verb, rc, _without_bars(capsys.readouterr().err), flag, out, tmp_path / "small", before)


def _inject(monkeypatch, kind: str) -> None:
    """Make every writer of kind `kind` fail as a full disk makes it fail."""
    import gguf
    import safetensors.torch

    if kind == "safetensors":
        from safetensors import SafetensorError

        def full(*a, **k):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        monkeypatch.setattr(safetensors.torch, "save_file", full)
    elif kind == "numpy":
        def full(self, *a, **k):
            raise OSError("262144 requested and 228384 written")
        monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", full)
    else:
        code = errno.EDQUOT if kind == "quota" else errno.ENOSPC
        real_write_text, real_write_bytes = pathlib.Path.write_text, pathlib.Path.write_bytes

        def full(self, *a, **k):
            if ".tmp-" in self.name and "outs" in self.parts:  # edgeprune's writes of the output
                raise OSError(code, os.strerror(code), str(self))
            return (real_write_text if isinstance(a[0], str) else real_write_bytes)(self, *a, **k)
        monkeypatch.setattr(pathlib.Path, "write_text", full)
        monkeypatch.setattr(pathlib.Path, "write_bytes", full)


def _without_bars(err: str) -> str:
    """stderr less eval's progress bar (no flag turns it off) and ship's stage lines (`[prune] running
    ...`): progress, not error lines."""
    return "\n".join(ln for ln in err.replace("\r", "\n").splitlines()
                     if not re.search(r"\d+%\|", ln) and not re.match(r"^\[\w+\] ", ln))


INJECTED = [("export-gguf", "numpy", "33,760 bytes"), ("export-hf", "safetensors", None), ("prune", "safetensors", None),
            ("train", "safetensors", None), ("pretrain", "safetensors", None), ("ship", "safetensors", None),
            ("eval", "enospc", None), ("eval", "quota", None), ("bench", "enospc", None), ("compare", "enospc", None),
            ("export-hf", "enospc", None)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("verb, kind, says", INJECTED, ids=[f"{v}-{k}" for v, k, _ in INJECTED])
def test_injected_full_disk_is_one_line(world, tmp_path, monkeypatch, capsys, verb, kind, says):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEPRUNE_CACHE", str(tmp_path / "cache"))
    out = "outs/r.json" if verb in FILE_OUTPUTS else "outs/ex"
    _previous(tmp_path / out)
    before = snapshot(tmp_path / "outs")
    argv, flag = VERBS[verb]
    with monkeypatch.context() as faults:  # undone on leaving, unlike the test's own chdir and env
        _inject(faults, kind)
        rc = main(argv(str(world["model"]), str(world["data"]), out))
    line = one_line_exit_2(rc, _without_bars(capsys.readouterr().err))
    assert line.split(": error: ", 1)[1].startswith(f"{flag} {out}:"), line
    assert ("quota" if kind == "quota" else "no space left") in line, line
    assert says is None or says in line, line
    _unchanged(verb, before, snapshot(tmp_path / "outs"))
    shutil.rmtree(tmp_path / "outs")  # and a new output: nothing at all is left where it would have gone
    with monkeypatch.context() as faults:
        _inject(faults, kind)
        rc = main(argv(str(world["model"]), str(world["data"]), out))
    one_line_exit_2(rc, _without_bars(capsys.readouterr().err))
    if verb in WORK_OUTPUTS:
        _unchanged(verb, {}, snapshot(tmp_path / "outs"))
    else:
        assert not (tmp_path / "outs").exists()


def test_a_report_of_several_files_is_all_new_or_all_old(tmp_path):
    """atomic_files: the disk filling up at the last file of a report leaves every file as it was."""
    from edgeprune.base.atomic_io import atomic_files, atomic_write_text

    for name in ("a.json", "b.md", "c.png"):
        (tmp_path / name).write_text("old")
    with pytest.raises(OSError):
        with atomic_files():
            atomic_write_text(tmp_path / "a.json", "new")
            atomic_write_text(tmp_path / "b.md", "new")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / ".c.png.tmp-1"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.md", "c.png"]  # no temporary left
    assert {p.read_text() for p in tmp_path.iterdir()} == {"old"}
    with atomic_files():
        atomic_write_text(tmp_path / "a.json", "new")
        atomic_write_text(tmp_path / "a.json", "newer")  # written twice: the last one wins
        atomic_write_text(tmp_path / "b.md", "new")
    assert (tmp_path / "a.json").read_text() == "newer" and (tmp_path / "b.md").read_text() == "new"
