"""The sweep's searcher: Ray Tune's ``OptunaSearch`` extended where it tells Optuna a result, and its sampler."""

from __future__ import annotations

import warnings

import optuna
from ray.tune.search.optuna import OptunaSearch

from sweeps.record import (
    REPLICATE_KEY,
    Bound,
    ReportedRecord,
    violations_of,
)
from sweeps.space import SearchSpace, define_by_run


class SweepSearch(OptunaSearch):
    """OptunaSearch that tells Optuna each trial's value of record (``sweeps.record``) and its constraints.

    Ray's OptunaSearch tells the study the *last* result a trial reported. Here: a trial's last result
    is its record (its runs' final metrics, aggregated over replicates), and it is the record's values
    that the study receives, with each constraint's violation set on the study trial before ``tell``
    (``Trial.set_constraint``: Optuna's TPE then runs constrained, c-TPE).
    A trial stopped by ASHA reports no record: its last evaluated epoch is told, as before, and its
    violations are computed from that epoch's metrics.

    Intermediate results are passed on only when they carry the objective (evaluated epochs; never a
    replicate's or the record's result), and a study trial that is already finished is never updated
    (after a driver crash the study may hold a value that Tune's saved state had not recorded yet).
    """

    def __init__(self, *args, bounds: tuple[Bound, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bounds = tuple(bounds)

    def _already_finished(self, trial_id: str) -> bool:
        ot_trial = RayOptunaState.trials(self).get(trial_id)
        if ot_trial is None:
            return False
        finished = RayOptunaState.study(self).get_trials(deepcopy=False, states=_FINISHED)
        return any(t.number == ot_trial.number for t in finished)

    def _metrics(self) -> list[str]:
        return self.metric if isinstance(self.metric, list) else [self.metric]

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if REPLICATE_KEY in result or ReportedRecord.of(result) is not None:
            return
        if all(m in result for m in self._metrics()) and not self._already_finished(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trials = RayOptunaState.trials(self)
        if self._already_finished(trial_id):
            trials.pop(trial_id, None)
            return
        if result and not error:
            if (record := ReportedRecord.of(result)) is not None:
                result = {**result, **record.values}  # the record's values under the metrics' names
            ot_trial = trials.get(trial_id)
            if ot_trial is not None:
                for bound, v in zip(self.bounds, violations_of(result, len(self.bounds), self.bounds)):
                    ot_trial.set_constraint(bound.key, v)
        super().on_trial_complete(trial_id, result, error)

    def suggest(self, trial_id: str) -> dict | None:
        # A driver killed between ``study.ask()`` and Tune's next experiment checkpoint leaves a study
        # trial RUNNING that no Tune trial owns. The new Tune trial adopts it (same sampled point, the
        # study keeps each trial once) instead of asking a fresh one.
        trials = RayOptunaState.trials(self)
        if trial_id not in trials and RayOptunaState.is_define_by_run(self):
            owned = {t.number for t in trials.values()}
            study = RayOptunaState.study(self)
            running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            orphan = next((t for t in running if t.number not in owned), None)
            if orphan is not None:
                trials[trial_id] = RayOptunaState.adopt(study, orphan)
        return super().suggest(trial_id)


_FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)


class RayOptunaState:
    """The one place that reads Ray's ``OptunaSearch`` (and Optuna's) private state, which neither offers
    publicly: the study, the Tune-trial -> study-trial map, whether the space is define-by-run, and a
    study trial made from a frozen one. ``tests/sweeps/test_search.py`` fails when a Ray or Optuna
    upgrade changes any of them."""

    @staticmethod
    def study(search: OptunaSearch) -> optuna.Study:
        return search._ot_study

    @staticmethod
    def trials(search: OptunaSearch) -> dict[str, optuna.trial.Trial]:
        """Tune trial id -> the study trial it was given (the dict itself: adopting writes into it)."""
        return search._ot_trials

    @staticmethod
    def is_define_by_run(search: OptunaSearch) -> bool:
        return callable(search._space)

    @staticmethod
    def adopt(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.trial.Trial:
        """A live handle on an existing (RUNNING) study trial."""
        return optuna.trial.Trial(study, frozen._trial_id)


def tpe_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models anything: a third of the budget, 2..10. Optuna's default of 10
    would make a small sweep pure random search."""
    return max(2, min(10, num_samples // 3))


def tpe_sampler(seed: int, num_samples: int):
    """The sweep's sampler: multivariate TPE (multi-objective TPE when several objectives are given).

    ``tpe_startup_trials`` random trials first. Optuna 5 models the parameters jointly only for a
    single objective and only those present in every trial; asked for explicitly, several objectives
    get it too, and ``group=True`` models each set of parameters that occur together (the conditional
    ones of ``reweighting.yaml``) jointly instead of sampling them independently.
    With constraints it is Optuna's constrained TPE: the violations ``SweepSearch`` sets on each trial.
    ``bench.search_efficiency`` compares it with independent TPE and random search.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(num_samples),
                                          multivariate=True, group=True)


def make_searcher(space: SearchSpace, storage_url: str, study_name: str, bounds: tuple[Bound, ...] = (), *,
                  resume: bool = False) -> SweepSearch:
    """The sweep's searcher on its Optuna study (created, or loaded on a resume); ``bounds``: the space's
    constraints resolved (``sweeps.fit.resolve_bounds``)."""
    sampler = tpe_sampler(space.budget.seed, space.budget.num_samples)
    storage = optuna.storages.RDBStorage(storage_url)
    points = [dict(p) for p in space.initial_points] or None
    if resume and study_name in optuna.get_all_study_names(storage):
        points = None  # the driver died before Tune's first checkpoint: the study already holds them
    return SweepSearch(space=define_by_run(space), metric=space.tune_metric, mode=space.tune_mode,
                       points_to_evaluate=points, sampler=sampler, study_name=study_name, storage=storage,
                       bounds=bounds)
