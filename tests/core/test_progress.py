"""Progress reads well in a log and on a terminal: plain periodic lines with an ETA when stderr is
redirected (never `\\r` frames), a tqdm bar on a TTY, heartbeat lines while a slow step runs, and
a plan that states its steps first and prices the ones left once the first is measured."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from edgeprune.base.plan import Plan
from edgeprune.base.progress import LineProgress, human_duration, progress_bar

LINE = re.compile(r"^work: (\d+)/20 step \((\d+)%\), \d+s elapsed, ETA (\d+s|after the first step)$")
SCRIPT = ("from edgeprune.base.progress import progress_bar\n"
          "for _ in progress_bar(range(20), desc='work', unit='step'):\n"
          "    pass\n")


def _run(env_every: str, **popen) -> str:
    env = dict(os.environ, EDGEPRUNE_PROGRESS_EVERY=env_every)
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, timeout=120, **popen)
    assert done.returncode == 0
    return done.stderr if isinstance(done.stderr, str) else ""


def test_redirected_stderr_gets_plain_lines_with_an_eta_and_no_carriage_returns():
    err = _run("0", capture_output=True, text=True)  # 0: a line at every update
    assert "\r" not in err
    lines = err.splitlines()
    progress = [ln for ln in lines if LINE.match(ln)]
    assert len(progress) == 20, err  # the start line and one per step but the last (the end line says it)
    assert LINE.match(lines[0]).group(3) == "after the first step"
    assert all(LINE.match(ln).group(3).endswith("s") for ln in progress[1:])
    assert re.fullmatch(r"work: done 20/20 step in \d+s", lines[-1])


def test_default_interval_writes_nothing_for_a_loop_done_within_it():
    """Work shorter than the interval leaves no lines: a verb's one-line error stays one line."""
    assert _run("", capture_output=True, text=True) == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_terminal_gets_the_tqdm_bar():
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        _run("0", stderr=slave, stdout=subprocess.DEVNULL)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    out = b"".join(chunks).decode(errors="replace")
    assert "\r" in out and "20/20" in out and "elapsed" not in out


class _Signalling(io.StringIO):
    def __init__(self):
        super().__init__()
        self.wrote = threading.Event()

    def write(self, s):
        self.wrote.set()
        return super().write(s)


def test_heartbeat_writes_while_a_step_makes_no_progress():
    out = _Signalling()
    bar = LineProgress(total=3, desc="slow", unit="file", every_s=0.05, file=out)
    out.wrote.clear()
    assert out.wrote.wait(30), "no heartbeat line while the first step ran"
    bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "slow: 0/3 file (0%), 0s elapsed, ETA after the first file"  # the heartbeat's
    assert lines[-1].startswith("slow: stopped at 1/3 file in ")


def test_disabled_bar_is_silent(capsys):
    for _ in progress_bar(range(3), desc="x", disable=True):
        pass
    assert capsys.readouterr().err == ""


def test_human_duration():
    assert [human_duration(s) for s in (4.4, 70, 3599, 7500)] == ["4s", "1m10s", "59m59s", "2h05m"]


def test_plan_states_its_steps_then_prices_the_rest_from_the_first(caplog):
    caplog.set_level(logging.INFO, logger="edgeprune.plan")
    plan = Plan("job", [("small", 1.0), ("big", 3.0), ("named", 2.0)], every_s=0)
    with plan.step(0):
        time.sleep(0.01)
    # the big step is priced at three times the measured one: the same seconds per cost unit
    assert plan.estimate(1) == pytest.approx(3 * plan.seconds[0])
    plan.skip(2, "reused")
    with plan.step(1):
        pass
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs[0] == ("job plan: 3 steps: 1) small, 2) big, 3) named; an ETA follows once the first step "
                       "is measured")
    assert msgs[1] == "job [1/3] small ..."
    done = msgs[2]
    assert done.startswith("job [1/3] small done in ")
    assert re.search(r"; ETA 2\) ~\d+s, 3\) ~\d+s; about \d+s left in all$", done), done
    assert msgs[3] == "job [3/3] named: reused"
    assert re.fullmatch(r"job \[2/3\] big \.\.\. \(~\d+s\)", msgs[4])


def test_plan_with_a_prior_rate_prices_every_step_up_front(caplog):
    caplog.set_level(logging.INFO, logger="edgeprune.plan")
    Plan("ship", [("prune", 60.0), ("recover", 600.0)], seconds_per_cost=1.0, every_s=0)
    assert caplog.records[0].getMessage() == "ship plan: 2 steps: 1) prune ~1m00s, 2) recover ~10m00s; about 11m00s in all"


def test_plan_heartbeat_says_how_long_a_step_has_run(caplog):
    caplog.set_level(logging.INFO, logger="edgeprune.plan")
    plan = Plan("long", ["wait"], every_s=0.02)
    seen = threading.Event()

    class Hook(logging.Handler):
        def emit(self, record):
            if "elapsed" in record.getMessage():
                seen.set()

    h = Hook()
    logging.getLogger("edgeprune.plan").addHandler(h)
    try:
        with plan.step(0):
            assert seen.wait(30), "no heartbeat while the step ran"
    finally:
        logging.getLogger("edgeprune.plan").removeHandler(h)
    assert any(re.fullmatch(r"long \[1/1\] wait: \d+s elapsed", r.getMessage()) for r in caplog.records)
