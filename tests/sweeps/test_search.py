"""The Optuna searcher after a driver crash: the study holds each trial once."""

import optuna
import pytest
import yaml

from sweeps.layout import SweepSettings
from sweeps.search import make_searcher
from sweeps.space import load_space


def _space(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "s", "base": {"model": {"name": "tiny-2l"}},
        "parameters": {"method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0}},
        "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
        "initial_points": [{"method.beta1": 5.0}],
        "budget": {"num_samples": 4, "seed": 0}}))
    return load_space(path)


def test_a_study_trial_orphaned_by_a_driver_crash_is_adopted_not_duplicated(tmp_path):
    space, settings = _space(tmp_path), SweepSettings(out_dir=str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    first = make_searcher(space, settings.study_storage, "study")
    assert first.suggest("a") == {"method.beta1": 5.0}  # the initial point
    first.on_trial_complete("a", {"forget_quality": 0.5})
    orphan_params = first.suggest("b")  # asked, then the driver dies before Tune records trial "b"

    # The resumed sweep (no Tune checkpoint yet: a fresh searcher on the same study)
    resumed = make_searcher(space, settings.study_storage, "study", resume=True)
    assert resumed.suggest("c") == orphan_params  # the orphan's point, not a new trial
    resumed.on_trial_complete("c", {"forget_quality": 0.25})
    resumed.suggest("d")
    study = optuna.load_study(study_name="study", storage=settings.study_storage)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.RUNNING]
    assert study.trials[1].value == 0.25
    assert len([t for t in study.trials if t.params == {"method.beta1": 5.0}]) == 1  # not enqueued twice


def test_the_study_is_told_the_record_not_the_last_epoch_and_each_constraint(tmp_path):
    from sweeps.record import Bound, make_record

    space, settings = _space(tmp_path), SweepSettings(out_dir=str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    bound = Bound("model_utility", "min", 0.5, "absolute")
    searcher = make_searcher(space, settings.study_storage, "study", (bound,))
    searcher.suggest("a")
    for epoch, fq in ((1, 0.9), (2, 0.1)):  # the kept epoch is 1; the last reported one is 2
        searcher.on_trial_result("a", {"epoch": epoch, "training_iteration": epoch, "forget_quality": fq,
                                       "model_utility": 0.6})
    finals = [{"forget_quality": 0.9, "model_utility": 0.45}, {"forget_quality": 0.7, "model_utility": 0.45}]
    record = make_record([{"index": i, "seed": i, "dir": "", "final": f, "best_epoch": 1} for i, f in enumerate(finals)],
                         "mean", [bound], ["forget_quality"])
    searcher.on_trial_result("a", record.to_result())  # not an intermediate value
    searcher.on_trial_complete("a", {**record.to_result(), "epoch": 2})

    searcher.suggest("b")  # stopped early (ASHA): no record, its last evaluated epoch is told
    searcher.on_trial_result("b", {"epoch": 1, "training_iteration": 1, "forget_quality": 0.3, "model_utility": 0.7})
    searcher.on_trial_complete("b", {"epoch": 1, "forget_quality": 0.3, "model_utility": 0.7})

    a, b = optuna.load_study(study_name="study", storage=settings.study_storage).trials
    assert a.value == pytest.approx(0.8) and a.intermediate_values == {1: 0.9, 2: 0.1}
    assert a.constraints == {"model_utility_min": pytest.approx(0.05)}  # 0.45 < 0.5: infeasible
    assert b.value == pytest.approx(0.3) and b.constraints == {"model_utility_min": pytest.approx(-0.2)}


def test_a_space_without_constraints_sets_none(tmp_path):
    space, settings = _space(tmp_path), SweepSettings(out_dir=str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    searcher = make_searcher(space, settings.study_storage, "study")
    searcher.suggest("a")
    searcher.on_trial_complete("a", {"forget_quality": 0.5})
    assert optuna.load_study(study_name="study", storage=settings.study_storage).trials[0].constraints == {}


def test_the_private_state_the_searcher_reads_is_where_ray_and_optuna_keep_it(tmp_path):
    """``RayOptunaState`` reads OptunaSearch's and Optuna's private state: this fails when an upgrade moves it."""
    from sweeps.search import RayOptunaState

    space, settings = _space(tmp_path), SweepSettings(out_dir=str(tmp_path / "out"))
    (tmp_path / "out").mkdir()
    searcher = make_searcher(space, settings.study_storage, "study")
    searcher.suggest("a")
    study = RayOptunaState.study(searcher)
    assert isinstance(study, optuna.Study) and study.study_name == "study"
    trials = RayOptunaState.trials(searcher)
    assert list(trials) == ["a"] and isinstance(trials["a"], optuna.trial.Trial) and trials["a"].number == 0
    assert RayOptunaState.is_define_by_run(searcher)
    frozen = study.get_trials(deepcopy=False)[0]
    adopted = RayOptunaState.adopt(study, frozen)
    assert adopted.number == frozen.number and adopted.params == frozen.params
