"""A one-line live progress display of a sweep: trials done / running / failed, best so far."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback

from sweeps.record import Bound, ReportedRecord, violations_of
from sweeps.space import SearchSpace


class ProgressCallback(Callback):
    """A status line of the sweep. On a terminal it is rewritten in place (``\\r``) whenever a trial reports,
    finishes or fails; otherwise (a log file, a pipe) a new line is printed only when a trial ends or
    fails or the best changes, so that a log holds a line per event rather than one per epoch."""

    bounds: tuple[Bound, ...] = ()  # (a callback pickled by an older version, restored by a resume, has none)
    QUIET = (0, 0, None)  # (done, failed, best) before anything happened: not worth a line in a log

    def __init__(self, space: SearchSpace, enabled: bool = True, bounds: Sequence[Bound] = ()) -> None:
        self.metric = space.metric_names[0]
        self.maximize = space.directions[0] == "maximize"
        self.total = space.budget.num_samples
        self.enabled = enabled
        self.bounds = tuple(bounds)
        self.t0 = time.time()
        self.live = False  # stderr is a terminal
        self.shown: tuple = self.QUIET  # what the last printed line said (done, failed, best)
        self.drawn = False

    def setup(self, **info: Any) -> None:
        # this launch's (or resume's) start and console: Tune restores callbacks with their state
        self.t0 = time.time()
        self.live = sys.stderr.isatty()
        self.shown, self.drawn = self.QUIET, False

    def _feasible(self, result: dict) -> bool:
        """A record's feasibility; a running trial's epoch is judged by the bounds on its own metrics (one
        without the constrained metrics is not feasible yet)."""
        return all(v <= 0 for v in violations_of(result, len(self.bounds), self.bounds))

    def _best(self, trials: list, latest: tuple[Any, dict] | None) -> tuple[float, str] | None:
        """The best feasible value any trial reported (those a resumed sweep ran before included); ``latest``:
        a trial's result that Tune has not recorded yet (callbacks see it first)."""
        results = [(t, latest[1] if latest and t is latest[0] else t.last_result or {}) for t in trials]
        # a finished trial's value is its record (its last result); a running one's its latest epoch
        values = [(float(v), t.trial_id) for t, r in results
                  if isinstance(v := self._value(r), (int, float)) and self._feasible(r)]
        return (max if self.maximize else min)(values, key=lambda x: x[0]) if values else None

    def _value(self, result: dict) -> Any:
        """The objective in a result: its record's value, or a running trial's epoch's."""
        record = ReportedRecord.of(result)
        return record.values.get(self.metric) if record is not None else result.get(self.metric)

    def _line(self, trials: list, latest: tuple[Any, dict] | None = None, ended: tuple[Any, str] | None = None) -> None:
        """``ended``: a trial and the status it is ending with (Tune calls back before it sets it)."""
        if not self.enabled:
            return
        status = [ended[1] if ended and t is ended[0] else t.status for t in trials]
        done, running, failed = status.count("TERMINATED"), status.count("RUNNING"), status.count("ERROR")
        best = self._best(trials, latest)
        if not self.live and (done, failed, best) == self.shown:
            return
        self.shown, self.drawn = (done, failed, best), True
        best = f"best {self.metric}={best[0]:.4g} ({best[1]})" if best else "best: -"
        line = (f"[sweep {time.time() - self.t0:6.0f}s] trials {done} done, {running} running, {failed} failed, "
                f"{self.total - len(trials)} to go | {best}")
        # on a terminal: back to the line's start, the line, then clear what a longer one left
        print(f"\r{line}\x1b[K" if self.live else line, end="" if self.live else "\n", file=sys.stderr, flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._line(trials, (trial, result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, ended=(trial, "TERMINATED"))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials, ended=(trial, "ERROR"))

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self.enabled and self.live and self.drawn:
            print(file=sys.stderr, flush=True)  # the report starts on a line of its own
