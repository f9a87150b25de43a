"""Comparison specs: the shipped ones load; bad input is refused with the bad value, before any compute."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sweeps.compare import compare_from_dict, load_compare
from tests.sweeps.compare.helpers import tiny_compare
from unlearn.errors import ConfigError

SHIPPED = sorted((Path(__file__).parents[3] / "search_spaces" / "compare").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_spec_loads(path):
    spec = load_compare(path)
    assert len(spec.methods) >= 2
    assert len({m.space.budget for m in spec.methods}) == 1  # one budget for every method


def test_every_method_shares_the_objective_constraints_and_budget(tmp_path, cache_dir):
    spec = compare_from_dict(tiny_compare(tmp_path, cache_dir))
    assert [m.name for m in spec.methods] == ["satimp", "ga"]
    assert {m.space.metric_names for m in spec.methods} == {("forget_quality",)}
    assert spec.method("satimp").space.initial_points[0] == {"method.beta1": 5.0}  # the default is run first
    assert spec.method("ga").space.base_config.method.objective == "ga"


def _bad(tmp_path, cache_dir, edit) -> str:
    data = copy.deepcopy(tiny_compare(tmp_path, cache_dir))
    edit(data)
    with pytest.raises(ConfigError) as e:
        compare_from_dict(data, source="spec.yaml")
    return str(e.value)


def test_a_method_with_a_budget_of_its_own_is_refused(tmp_path, cache_dir):
    msg = _bad(tmp_path, cache_dir, lambda d: d["methods"]["ga"].update(budget={"num_samples": 4}))
    assert "methods.ga.budget" in msg and "same budget" in msg


def test_an_objective_the_benchmark_does_not_report_is_refused(tmp_path, cache_dir):
    msg = _bad(tmp_path, cache_dir, lambda d: d.update(objectives=[{"metric": "wmdp_cyber_acc", "direction": "minimize"}]))
    assert "wmdp_cyber_acc" in msg and "methods.satimp" in msg


def test_methods_on_different_benchmarks_cannot_share_an_objective(tmp_path, cache_dir):
    msg = _bad(tmp_path, cache_dir, lambda d: d["methods"]["ga"].update(base={"model": {"name": "tiny"}}))
    assert "methods.ga" in msg and "model" in msg and "same benchmark" in msg


def test_rmu_on_a_setup_without_its_layer_is_refused(tmp_path, cache_dir):
    rmu = {"method": {"weighting": "uniform", "objective": "rmu", "layer": 9},
           "parameters": {"method.steering_coeff": {"distribution": "loguniform", "low": 2.0, "high": 50.0}}}
    msg = _bad(tmp_path, cache_dir, lambda d: d["methods"].update(rmu=rmu))
    assert "methods.rmu" in msg and "layer" in msg


def test_one_objective_two_methods_and_known_keys(tmp_path, cache_dir):
    two = [{"metric": "forget_quality", "direction": "maximize"}, {"metric": "model_utility", "direction": "maximize"}]
    assert "exactly one objective" in _bad(tmp_path, cache_dir, lambda d: d.update(objectives=two))
    assert "2 to" in _bad(tmp_path, cache_dir, lambda d: d["methods"].pop("ga"))
    assert "budgett" in _bad(tmp_path, cache_dir, lambda d: d.update(budgett={}))
    assert "paramters" in _bad(tmp_path, cache_dir, lambda d: d["methods"]["ga"].update(paramters={}))


def test_the_all_spec_holds_every_method_of_the_issue_each_with_its_default():
    spec = load_compare("all")
    methods = {m.name: m.space.base_config.method for m in spec.methods}
    weightings = {m.weighting for m in methods.values() if m.objective == "gd"}
    objectives = {m.objective for m in methods.values() if m.weighting == "uniform"}
    assert weightings >= {"satimp", "simsat", "simimp", "wga", "uniform"}
    assert objectives >= {"ga", "gd", "npo", "simnpo", "rmu"}
    assert all(m.default and m.space.initial_points[0] == m.default for m in spec.methods)  # each its untuned row
    assert len({m.space.budget for m in spec.methods}) == 1


def test_methods_at_once_is_the_comparisons_own_and_checked(tmp_path, cache_dir):
    data = tiny_compare(tmp_path, cache_dir)
    data["budget"]["methods_at_once"] = 1
    spec = compare_from_dict(data)
    assert spec.methods_at_once == 1 and spec.raw["budget"]["methods_at_once"] == 1
    assert len({m.space.budget for m in spec.methods}) == 1  # not part of a method's sweep budget
    assert compare_from_dict(tiny_compare(tmp_path, cache_dir)).methods_at_once is None
    for bad in (0, 1.5, "all", True):
        msg = _bad(tmp_path, cache_dir, lambda d: d["budget"].update(methods_at_once=bad))
        assert "budget.methods_at_once" in msg and repr(bad) in msg
