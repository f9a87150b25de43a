"""A one-line live progress display of a sweep: trials done / running / failed, best so far."""

from __future__ import annotations

import sys
import time
from typing import Any

from ray.tune import Callback

from sweeps.space import SearchSpace


class ProgressCallback(Callback):
    """Prints a status line whenever a trial reports, finishes or fails."""

    def __init__(self, space: SearchSpace, enabled: bool = True) -> None:
        self.metric = space.metric_names[0]
        self.maximize = space.directions[0] == "maximize"
        self.total = space.budget.num_samples
        self.enabled = enabled
        self.best: tuple[float, str] | None = None
        self.t0 = time.time()

    def _line(self, trials: list) -> None:
        if not self.enabled:
            return
        status = [t.status for t in trials]
        done, running, failed = status.count("TERMINATED"), status.count("RUNNING"), status.count("ERROR")
        best = f"best {self.metric}={self.best[0]:.4g} ({self.best[1]})" if self.best else "best: -"
        print(f"[sweep {time.time() - self.t0:6.0f}s] trials {done} done, {running} running, {failed} failed, "
              f"{self.total - len(trials)} to go | {best}", file=sys.stderr, flush=True)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if isinstance(value, (int, float)):
            better = self.best is None or (value > self.best[0] if self.maximize else value < self.best[0])
            if better:
                self.best = (float(value), trial.trial_id)
        self._line(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trials)
