"""Picking the best trial and the Pareto set from stored results (no Ray)."""

from dataclasses import replace
from pathlib import Path

import yaml

from sweeps.record import TrialRecord
from sweeps.report import TrialRow, pick_best
from sweeps.space import load_space


def _space(tmp_path, objectives):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "objectives": objectives, "parameters": {
        "method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0}}}))
    return load_space(path)


def _trial(tid, **metrics):
    return TrialRow(tid, "FINISHED", Path(tid), Path(tid), metrics=metrics, config={"seed": 0})


def _record(feasible=True, intervals=None):
    return TrialRecord({}, "mean", (), intervals or {}, None, (), feasible)


def test_ties_on_the_objective_go_to_the_better_utility(tmp_path):
    space = _space(tmp_path, [{"metric": "forget_quality", "direction": "maximize"}])
    trials = [_trial("a", forget_quality=0.7, model_utility=0.0), _trial("b", forget_quality=0.7, model_utility=0.86),
              _trial("c", forget_quality=0.2, model_utility=0.9)]
    best, pareto = pick_best(space, trials)
    assert best.trial_id == "b" and pareto == [best]


def test_pareto_set_for_two_objectives(tmp_path):
    space = _space(tmp_path, [{"metric": "forget_quality", "direction": "maximize"},
                              {"metric": "model_utility", "direction": "maximize"}])
    trials = [_trial("a", forget_quality=0.9, model_utility=0.1), _trial("b", forget_quality=0.5, model_utility=0.8),
              _trial("c", forget_quality=0.4, model_utility=0.7), _trial("d", forget_quality=0.2, model_utility=0.9)]
    best, pareto = pick_best(space, trials)
    assert {t.trial_id for t in pareto} == {"a", "b", "d"}  # c is dominated by b
    assert best.trial_id == "a"


def test_failed_and_unfinished_trials_are_never_best(tmp_path):
    space = _space(tmp_path, [{"metric": "forget_quality", "direction": "maximize"}])
    trials = [replace(_trial("a", forget_quality=1.0), status="FAILED"), replace(_trial("b", forget_quality=0.9), config=None),
              _trial("c", forget_quality=0.1)]
    assert pick_best(space, trials)[0].trial_id == "c"


def test_infeasible_trials_are_never_best_and_leave_the_pareto_set(tmp_path):
    from sweeps.record import Bound

    space = _space(tmp_path, [{"metric": "forget_quality", "direction": "maximize"},
                              {"metric": "model_utility", "direction": "maximize"}])
    trials = [replace(_trial("a", forget_quality=0.9, model_utility=0.1), record=_record(feasible=False)),  # its record says so
              _trial("b", forget_quality=0.5, model_utility=0.8), _trial("c", forget_quality=0.4, model_utility=0.7),
              _trial("d", forget_quality=0.6, model_utility=0.3)]  # no record: judged on its metrics
    best, pareto = pick_best(space, trials, [Bound("model_utility", "min", 0.5, "absolute")])
    assert best.trial_id == "b" and [t.trial_id for t in pareto] == ["b"]  # c is dominated by b
    assert pick_best(space, trials, [Bound("model_utility", "min", 0.95, "absolute")]) == (None, [])


def test_overlap_of_intervals():
    from sweeps.report.select import overlap

    def row(intervals):
        return replace(_trial("t"), record=_record(intervals=intervals))

    a, b = row({"m": (0.5, 0.7)}), row({"m": (0.65, 0.9)})
    assert overlap(a, b, "m") is True and overlap(a, row({"m": (0.71, 0.8)}), "m") is False
    assert overlap(a, row({}), "m") is None
