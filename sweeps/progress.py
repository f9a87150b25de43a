"""A one-line live progress display of a sweep: trials done / running / failed, best so far."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from sweeps.record import FEASIBLE_KEY, RECORD_PREFIX
from sweeps.space import SearchSpace


class ProgressCallback(Callback):
    """Prints a status line whenever a trial reports, finishes or fails."""

    def __init__(self, space: SearchSpace, enabled: bool = True) -> None:
        self.metric = space.metric_names[0]
        self.maximize = space.directions[0] == "maximize"
        self.total = space.budget.num_samples
        self.enabled = enabled
        self.t0 = time.time()

    def setup(self, **info: Any) -> None:
        self.t0 = time.time()  # this launch's (or resume's) start: Tune restores callbacks with their state

    def _best(self, trials: list, latest: tuple[Any, dict] | None) -> tuple[float, str] | None:
        """The best value any trial reported (those a resumed sweep ran before included); ``latest``: a
        trial's result that Tune has not recorded yet (callbacks see it first)."""
        results = [(t, latest[1] if latest and t is latest[0] else t.last_result or {}) for t in trials]
        # a finished trial's value is its record (its last result), if feasible; a running one's its latest epoch
        values = [(float(v), t.trial_id) for t, r in results if r.get(FEASIBLE_KEY, 1)
                  and isinstance(v := r.get(RECORD_PREFIX + self.metric, r.get(self.metric)), (int, float))]
        return (max if self.maximize else min)(values, key=lambda x: x[0]) if values else None

    def _line(self, trials: list, latest: tuple[Any, dict] | None = None) -> None:
        if not self.enabled:
            return
        status = [t.status for t in trials]
        done, running, failed = status.count("TERMINATED"), status.count("RUNNING"), status.count("ERROR")
        best = self._best(trials, latest)
        best = f"best {self.metric}={best[0]:.4g} ({best[1]})" if best else "best: -"
        print(f"[sweep {time.time() - self.t0:6.0f}s] trials {done} done, {running} running, {failed} failed, "
              f"{self.total - len(trials)} to go | {best}", file=sys.stderr, flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._line(trials, (trial, result))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials)
