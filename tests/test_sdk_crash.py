"""A real process running a durable workflow is SIGKILLed and restarted; the workflow finishes with the
same result as an uninterrupted run, and every step ran exactly once except the one in flight.

The program is tests/programs/crash_workflow.py. Waits poll the side file with a bounded deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

PROGRAM = os.path.join(os.path.dirname(__file__), "programs", "crash_workflow.py")
STEPS = 20
EXPECTED = sum(i * i for i in range(1, STEPS + 1))
DEADLINE = 30.0
EXIT_LOCKED = 3


class Run:
    def __init__(self, short_dir: str) -> None:
        self.db = os.path.join(short_dir, "r.db")
        self.side = os.path.join(short_dir, "side.txt")
        self.procs: list[subprocess.Popen[str]] = []

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, PROGRAM, "--db", self.db, "--side", self.side, "--id", "wf",
                "--steps", str(STEPS), *extra]

    def start(self, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.args(*extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def finish(self, *extra: str) -> int:
        proc = subprocess.run(self.args(*extra), capture_output=True, text=True, timeout=DEADLINE)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])["result"]

    def lines(self) -> list[str]:
        try:
            with open(self.side) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def steps(self) -> Counter[int]:
        return Counter(int(line.split()[1]) for line in self.lines() if line.startswith("step "))

    def wait_for(self, line: str, proc: subprocess.Popen[str]) -> None:
        wait_until(lambda: line in self.lines(), proc)

    def kill(self, proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=DEADLINE)
        assert proc.returncode == -signal.SIGKILL


def wait_until(cond: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    tick = threading.Event()
    for _ in range(int(DEADLINE / 0.005)):
        if cond():
            return
        if proc.poll() is not None:
            raise AssertionError(f"program exited early ({proc.returncode}): {proc.stderr.read()}")  # type: ignore[union-attr]
        tick.wait(0.005)
    raise AssertionError("the program did not get there in time")


@pytest.fixture
def run(short_dir: str) -> Iterator[Run]:
    r = Run(short_dir)
    try:
        yield r
    finally:
        for p in r.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=DEADLINE)
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()


def test_uninterrupted_run(run: Run) -> None:
    assert run.finish() == EXPECTED
    assert run.steps() == Counter(range(1, STEPS + 1))
    assert run.finish() == EXPECTED  # a re-run of the finished id runs nothing
    assert run.steps() == Counter(range(1, STEPS + 1))


@pytest.mark.parametrize("k", [1, 7, 15, STEPS])
def test_kill_while_a_step_is_in_flight(run: Run, k: int) -> None:
    proc = run.start("--pause-in", str(k))
    run.wait_for(f"step {k}", proc)
    run.kill(proc)
    assert run.finish() == EXPECTED
    counts = run.steps()
    assert set(counts) == set(range(1, STEPS + 1))
    assert {i: n for i, n in counts.items() if n != 1} == {k: 2}  # only the step in flight ran again


@pytest.mark.parametrize("k", [2, 12])
def test_kill_between_steps(run: Run, k: int) -> None:
    proc = run.start("--pause-before", str(k))
    run.wait_for(f"paused {k}", proc)
    run.kill(proc)
    assert run.finish() == EXPECTED
    assert run.steps() == Counter(range(1, STEPS + 1))  # step k-1 was recorded: nothing ran twice


def test_kill_at_an_arbitrary_point(run: Run) -> None:
    proc = run.start("--pace", "0.01")
    run.wait_for("step 9", proc)
    run.kill(proc)
    assert run.finish() == EXPECTED
    counts = run.steps()
    assert set(counts) == set(range(1, STEPS + 1))
    assert sum(n - 1 for n in counts.values()) <= 1  # at most one step (the one in flight) twice


def test_killed_twice_then_finished(run: Run) -> None:
    first = run.start("--pause-in", "5")
    run.wait_for("step 5", first)
    run.kill(first)
    second = run.start("--pause-in", "11")
    run.wait_for("step 11", second)
    run.kill(second)
    assert run.finish() == EXPECTED
    assert {i: n for i, n in run.steps().items() if n != 1} == {5: 2, 11: 2}


def test_second_process_on_the_same_db_is_refused(run: Run) -> None:
    holder = run.start("--pause-in", "3")
    run.wait_for("step 3", holder)
    intruder = subprocess.run(run.args(), capture_output=True, text=True, timeout=DEADLINE)
    assert intruder.returncode == EXIT_LOCKED
    assert "in use by another process" in intruder.stderr and f"pid {holder.pid}" in intruder.stderr
    assert intruder.stdout == ""
    assert run.steps()[4] == 0  # the intruder ran nothing
    run.kill(holder)
    assert run.finish() == EXPECTED  # the file is still usable
    assert {i: n for i, n in run.steps().items() if n != 1} == {3: 2}
