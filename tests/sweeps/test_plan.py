"""A trial's plan: resolved in one place, the same for the trial and the driver."""

from __future__ import annotations

import pickle
from pathlib import Path

import yaml

from sweeps.plan import DRIVER_CPU, TrialPlans, resolve_trial
from sweeps.space import load_space, replicate_seeds, trial_run_config
from sweeps.tracking import flatten
from unlearn.config import to_dict


def _space(tmp_path: Path, replicates: int = 3, launcher: str = "local"):
    data = {
        "name": "plan", "base": {"model": {"name": "tiny-2l"}, "scaling": {"launcher": launcher}},
        "parameters": {"method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0}},
        "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
        "budget": {"num_samples": 4, "replicates": replicates},
    }
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_space(path)


def test_the_plan_holds_each_replicates_seed_and_config(tmp_path):
    space = _space(tmp_path)
    params = {"method.beta1": 2.0}
    plan = resolve_trial(space, params)
    seeds = replicate_seeds(space, params)
    assert [r.seed for r in plan.replicates] == seeds and [r.index for r in plan.replicates] == [0, 1, 2]
    for r in plan.replicates:
        assert r.config == trial_run_config(space, params, seed=r.seed)
        assert r.config.method.beta1 == 2.0 and r.config.method.label == "satimp-gd"  # the default method kept
    assert plan.config is plan.replicates[0].config
    assert plan.mlflow_params == {**flatten(to_dict(plan.config)), "trial.sampled": "method.beta1"}
    doc = plan.to_dict()
    assert doc["params"] == params and [r["seed"] for r in doc["replicates"]] == seeds
    assert doc["replicates"][1]["config"] == to_dict(plan.replicates[1].config)


def test_the_resources_follow_the_launcher(tmp_path):
    assert resolve_trial(_space(tmp_path, 1, "local"), {"method.beta1": 1.0}).resources == {"CPU": 1.0}
    assert resolve_trial(_space(tmp_path, 1, "ray_train"), {"method.beta1": 1.0}).resources == {"CPU": DRIVER_CPU}


def test_the_driver_resolves_each_point_once(tmp_path):
    plans = TrialPlans(_space(tmp_path))
    first = plans.get({"method.beta1": 3.0})
    assert plans.get({"method.beta1": 3.0}) is first and plans.get({"method.beta1": 4.0}) is not first
    clone = pickle.loads(pickle.dumps(plans))  # Tune pickles it into its state: without the plans
    assert clone.get({"method.beta1": 3.0}) == first
