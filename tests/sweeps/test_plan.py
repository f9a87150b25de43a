"""A trial's plan: resolved in one place, the same for the trial and the driver."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
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
        "budget": {"num_samples": 4, "replicates": replicates, "seeds": "common"},
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


def test_common_seeds_are_common_across_points_and_confirmation_seeds_are_fresh(tmp_path):
    from dataclasses import replace

    from sweeps.racing import FIRST_TEST
    from sweeps.space import common_seed, confirm_seed
    from sweeps.space.schema import MIN_CONFIRM_ROUNDS

    space = _space(tmp_path)
    assert space.budget.seeds == "common"
    a, b = resolve_trial(space, {"method.beta1": 1.0}), resolve_trial(space, {"method.beta1": 2.0})
    assert [r.seed for r in a.replicates] == [r.seed for r in b.replicates] == [common_seed(0, r) for r in range(3)]
    assert len({r.seed for r in a.replicates}) == 3
    other = replace(space, budget=replace(space.budget, seed=7))
    assert [r.seed for r in resolve_trial(other, {"method.beta1": 1.0}).replicates] != [r.seed for r in a.replicates]
    per_point = replace(space, budget=replace(space.budget, seeds="per_point"))
    pa, pb = resolve_trial(per_point, {"method.beta1": 1.0}), resolve_trial(per_point, {"method.beta1": 2.0})
    assert not {r.seed for r in pa.replicates} & {r.seed for r in pb.replicates}
    confirm = [confirm_seed(space, c) for c in range(50)]
    assert len(set(confirm)) == 50 and not set(confirm) & {common_seed(0, r) for r in range(100)}
    assert MIN_CONFIRM_ROUNDS == FIRST_TEST  # the schema's check and the race agree


def test_adaptive_replication_stops_a_point_that_cannot_beat_the_incumbent(tmp_path):
    from sweeps.layout import write_json_atomic
    from sweeps.record import make_record
    from sweeps.trial import TrialContext, _can_still_beat, incumbent

    space = _space(tmp_path)
    ctx = TrialContext(space, str(tmp_path / "sweep"), str(tmp_path / "ray"))
    assert incumbent(ctx, "mine") is None  # no finished trial: nothing to beat

    def finished(trial_id, values):
        reps = [{"index": i, "seed": i, "dir": "", "final": {"forget_quality": v}, "best_epoch": None}
                for i, v in enumerate(values)]
        write_json_atomic(tmp_path / "sweep" / "trials" / trial_id / "record.json",
                          make_record(reps, "mean", (), ["forget_quality"]).to_dict())

    finished("good", [0.8, 0.9, 0.85])
    finished("mine", [0.99, 0.99, 0.99])  # the trial itself is never its own incumbent
    assert incumbent(ctx, "mine") == pytest.approx(0.85)
    low = [{"final": {"forget_quality": v}} for v in (0.01, 0.02)]
    close = [{"final": {"forget_quality": v}} for v in (0.5, 0.9)]
    assert not _can_still_beat(ctx, "mine", low) and _can_still_beat(ctx, "mine", close)
    (tmp_path / "sweep" / "trials" / "bad").mkdir()
    (tmp_path / "sweep" / "trials" / "bad" / "record.json").write_text("{not json")
    assert incumbent(ctx, "mine") == pytest.approx(0.85)  # a damaged record is no incumbent
