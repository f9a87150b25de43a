"""The Optuna searcher after a driver crash: the study holds each trial once."""

import optuna
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
