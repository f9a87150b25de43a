"""The shipped WMDP search space loads and dry-runs (``load_space`` builds the run config of its initial
points, its corner combinations and random samples of both methods), on the hub and on the fixture."""

from __future__ import annotations

from sweeps.space import load_space
from unlearn.benchmarks.wmdp import FIXTURE_DIR


def test_wmdp_space_loads_and_dry_runs():
    space = load_space("wmdp")
    assert (space.metric_names, space.directions) == (("wmdp_cyber_acc", "mmlu_acc"), ("minimize", "maximize"))
    base = space.base_config
    assert (base.data.benchmark, base.data.options.corpus, base.data.options.mmlu, base.model.name) == ("wmdp", "cyber", "subset", "tiny")
    assert [p["method.objective"] for p in space.initial_points] == ["gd", "rmu"]
    (constraint,) = space.constraints  # MMLU kept near the prepared target's
    assert (constraint.metric, constraint.key, constraint.min_fraction_of_target) == ("mmlu_acc", "min_fraction_of_target", 0.9)


def test_wmdp_space_on_the_offline_fixture():
    tasks = FIXTURE_DIR / "tasks"
    space = load_space("wmdp", [f"base.data.path={FIXTURE_DIR}", f"base.data.tasks_path={tasks}"])
    assert (space.base_config.data.path, space.base_config.data.options.tasks_path) == (str(FIXTURE_DIR), str(tasks))
