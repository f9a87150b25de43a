"""The methods' sweeps side by side: each its own driver process (``sweeps.compare.driver``) on one cluster, at
most ``at_once`` at a time, started in the spec's order as others end. One method's failure never stops the
others: each ends with an ``Outcome`` (its driver's last line, else its exit code and log).

A driver's output goes to its log (``DIR/logs/<method>.log``), not the terminal: side by side, progress
lines would interleave. Drivers run in sessions of their own, so a Ctrl-C at the terminal reaches the
comparison's driver only, which passes the stop signal on once to each (a second one stops them at once,
as it does a single sweep); each stops gracefully, resumable. A driver dies with the comparison's driver
(``PR_SET_PDEATHSIG``): a killed comparison leaves no sweep running on, and the same call continues it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sweeps.compare.driver import FAILED, INTERRUPTED, OUTCOME
from sweeps.compare.spec import CompareSpec
from sweeps.signals import Interrupt, on_stop_signals
from sweeps.tuner import trial_cpus

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 0.2


@dataclass(frozen=True)
class Job:
    """A driver to run: ``argv`` with its output appended to ``log``."""

    name: str
    argv: tuple[str, ...]
    log: Path


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # finished | failed | interrupted
    why: str = ""


def methods_at_once(spec: CompareSpec, resources: Mapping[str, float]) -> int:
    """How many methods' sweeps run side by side: ``budget.methods_at_once``, else as many as the cluster
    holds with each running ``budget.max_concurrent`` trials (at least 1, at most every method). Either way
    at most ``methods_at_once x max_concurrent`` trials run at once."""
    n = len(spec.methods)
    if spec.methods_at_once is not None:
        return min(spec.methods_at_once, n)
    space = spec.methods[0].space
    trials = space.budget.max_concurrent
    fit = int(resources.get("CPU", 0.0) // (trial_cpus(space) * trials))
    scaling = space.base_config.scaling
    if scaling.use_gpu:
        fit = min(fit, int(resources.get("GPU", 0.0) // (scaling.workers * trials)))
    return max(1, min(n, fit))


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def set_death_signal() -> None:  # in the child, before exec
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return set_death_signal


def _start(job: Job, env: Mapping[str, str]) -> subprocess.Popen:
    job.log.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "ab") as log:
        return subprocess.Popen(job.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env), start_new_session=True, preexec_fn=_die_with_parent(os.getpid()))


def read_outcome(job: Job, returncode: int) -> Outcome:
    """The driver's own last word (``OUTCOME`` line), else what its exit code and log's last line say."""
    last = ""
    try:
        lines = job.log.read_text(errors="replace").splitlines()[-200:]
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith(OUTCOME):
            try:
                said = json.loads(line[len(OUTCOME):])
                return Outcome(job.name, str(said["status"]), str(said.get("why") or ""))
            except (ValueError, KeyError, TypeError):
                break
        last = last or line.strip()
    how = (f"killed by {signal.Signals(-returncode).name}" if returncode < 0 and -returncode in signal.valid_signals()
           else f"exit code {returncode}")
    return Outcome(job.name, FAILED, f"its driver ended ({how}) without an outcome; last line: {last[:300]!r}; "
                                     f"log: {job.log}")


@contextmanager
def _forward_stop_signals(running: Mapping[str, subprocess.Popen]) -> Iterator[Interrupt]:
    """Ctrl-C or SIGTERM: recorded, and passed on to every running driver (only in the main thread)."""
    interrupt = Interrupt()

    def on_signal(signum, frame) -> None:
        interrupt.signum = signum
        for proc in list(running.values()):
            if proc.poll() is None:
                proc.send_signal(signum)

    with on_stop_signals(on_signal):
        yield interrupt


def run_pool(jobs: Sequence[Job], at_once: int, *, env: Mapping[str, str] | None = None,
             on_end: Callable[[Outcome], None] = lambda o: None,
             on_start: Callable[[Job], None] = lambda j: None) -> tuple[dict[str, Outcome], int | None]:
    """Run ``jobs`` at most ``at_once`` at a time; ``on_end`` hears each outcome as it comes.

    Returns each job's outcome, and the stop signal that ended the pool early (None: every job ran); after
    a stop signal no job starts, and the running ones are waited for."""
    env = dict(os.environ if env is None else env)
    pending, running, jobs_by_name, outcomes = list(jobs), {}, {j.name: j for j in jobs}, {}
    with _forward_stop_signals(running) as interrupt:
        while pending or running:
            while pending and len(running) < at_once and interrupt.signum is None:
                job = pending.pop(0)
                on_start(job)
                running[job.name] = _start(job, env)
            for name, proc in list(running.items()):
                if proc.poll() is None:
                    continue
                del running[name]
                outcomes[name] = read_outcome(jobs_by_name[name], proc.returncode)
                if interrupt.signum is not None and outcomes[name].status == FAILED and proc.returncode in (
                        128 + interrupt.signum, -interrupt.signum):
                    outcomes[name] = Outcome(name, INTERRUPTED, outcomes[name].why)
                on_end(outcomes[name])
            if interrupt.signum is not None and not running:
                break
            time.sleep(POLL_S)
    return outcomes, interrupt.signum
