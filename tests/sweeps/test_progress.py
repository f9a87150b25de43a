"""The live progress line: rewritten in place on a terminal, a line per event in a log, and a best that
is never an infeasible trial."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest

from sweeps.progress import ProgressCallback
from sweeps.record import Bound, make_record
from sweeps.space import load_space


@dataclass
class Trial:
    """What the callback reads of a Tune trial."""

    trial_id: str
    status: str = "RUNNING"
    last_result: dict = field(default_factory=dict)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


UTILITY = Bound("model_utility", "min", 0.8, "test")


@pytest.fixture(scope="module")
def space():
    from dataclasses import replace

    from sweeps.space import Objective

    shipped = load_space("satimp", ["budget.num_samples=4"])  # the shipped one minimises forget_w1
    return replace(shipped, objectives=(Objective("forget_quality", "maximize"),))


def _record(fq: float, mu: float) -> dict:
    final = {"forget_quality": fq, "model_utility": mu}
    return make_record([{"index": 0, "seed": 0, "dir": "d", "final": final, "best_epoch": None}],
                       "mean", [UTILITY], ["forget_quality", "model_utility"]).to_result()


def _sweep(cb: ProgressCallback) -> None:
    """Two trials: ``a`` reports 5 epochs (infeasible ones first), then finishes feasible; ``b`` fails."""
    cb.setup()
    a, b = Trial("a"), Trial("b")
    trials = [a, b]
    for epoch in range(5):
        result = {"epoch": epoch, "forget_quality": 0.9, "model_utility": 0.5 if epoch < 3 else 0.85}
        cb.on_trial_result(0, trials, a, result)
        a.last_result = result
    record = _record(0.3, 0.85)
    cb.on_trial_result(0, trials, a, record)
    a.last_result = record
    cb.on_trial_complete(0, trials, a)  # Tune calls back before it sets the status
    a.status = "TERMINATED"
    cb.on_trial_error(0, trials, b)
    b.status = "ERROR"
    cb.on_experiment_end(trials)


def test_a_log_gets_a_line_per_event_not_per_epoch(space, monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    _sweep(ProgressCallback(space, bounds=[UTILITY]))
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    # 8 events: the first feasible epoch (a new best), the record (a new best), a's end, b's failure
    assert [line.split("] ", 1)[1] for line in lines] == [
        "trials 0 done, 2 running, 0 failed, 2 to go | best forget_quality=0.9 (a)",
        "trials 0 done, 2 running, 0 failed, 2 to go | best forget_quality=0.3 (a)",
        "trials 1 done, 1 running, 0 failed, 2 to go | best forget_quality=0.3 (a)",
        "trials 1 done, 0 running, 1 failed, 2 to go | best forget_quality=0.3 (a)",
    ]


def test_a_terminal_gets_one_line_rewritten_in_place(space, monkeypatch):
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    _sweep(ProgressCallback(space, bounds=[UTILITY]))
    text = err.getvalue()
    assert text.count("\r") == 8 and text.count("\n") == 1 and text.endswith("\x1b[K\n")  # every event, one line
    assert text.split("\r")[1].endswith("| best: -\x1b[K")  # an infeasible epoch is not a best


def test_the_best_is_never_infeasible(space, monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    cb = ProgressCallback(space, bounds=[UTILITY])
    cb.setup()
    running = Trial("run", last_result={"forget_quality": 0.99, "model_utility": 0.1})  # breaks the bound
    missing = Trial("mis", last_result={"forget_quality": 0.98})  # the constrained metric not evaluated yet
    broke = Trial("brk", "TERMINATED", _record(0.97, 0.5))  # its record is infeasible
    kept = Trial("ok", "TERMINATED", _record(0.2, 0.9))
    assert cb._best([running, missing, broke, kept], None) == (0.2, "ok")
    assert cb._best([running, missing, broke], None) is None
    # without constraints every value counts
    assert ProgressCallback(space)._best([running, kept], None) == (0.99, "run")


def test_quiet_prints_nothing(space, monkeypatch):
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    _sweep(ProgressCallback(space, enabled=False, bounds=[UTILITY]))
    assert err.getvalue() == ""
