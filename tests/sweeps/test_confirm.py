"""The confirmation stage: its race replayed from runs (no Ray). A real sweep with the stage whose driver is
killed mid-stage and resumed: tests/sweeps/test_faults.py (the chained driver faults, step 5)."""

from dataclasses import replace

import pytest

from sweeps.confirm import Candidate, next_jobs, replay, summary
from sweeps.record import Bound
from sweeps.space import Confirm, confirm_seed, load_space
from tests.helpers import tiny_space


def _space(tmp_path, cache_dir, top=3, runs=12):
    space = load_space(tiny_space(tmp_path, cache_dir))
    return replace(space, budget=replace(space.budget, confirm=Confirm(top=top, runs=runs)))


def _finals(table):
    return {t: {i: {"forget_quality": v, "model_utility": 0.8} for i, v in enumerate(vs)} for t, vs in table.items()}


CANDS = [Candidate("a", {"method.beta1": 1.0}), Candidate("b", {"method.beta1": 2.0}),
         Candidate("c", {"method.beta1": 3.0})]


def test_every_point_gets_the_same_fresh_seed_each_round_until_the_first_test(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir)
    state = replay(space, CANDS, _finals({"a": [], "b": [], "c": []}), ())
    jobs = next_jobs(space, state)
    assert [(j.trial_id, j.index, j.seed) for j in jobs] == [(t, 0, confirm_seed(space, 0)) for t in "abc"]
    state = replay(space, CANDS, _finals({"a": [0.5, 0.6], "b": [0.1, 0.1], "c": [0.4, 0.5]}), ())
    assert state.stopped is None and state.survivors == ("a", "b", "c")  # no test before FIRST_TEST seeds
    assert {j.index for j in next_jobs(space, state)} == {2}


def test_a_point_clearly_worse_is_eliminated_and_a_separated_best_stops_the_race(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir)
    a, b, c = [0.5, 0.55, 0.6], [0.1, 0.12, 0.11], [0.45, 0.62, 0.5]
    state = replay(space, CANDS, _finals({"a": a, "b": b, "c": c}), ())
    assert "b" in state.out and "eliminated after 3 seeds" in state.out["b"] and set(state.survivors) == {"a", "c"}
    assert state.stopped is None and [(j.trial_id, j.index) for j in next_jobs(space, state)] == [("a", 3), ("c", 3)]
    # a far ahead on every further seed: one left, or separated at 95 %
    state = replay(space, CANDS, _finals({"a": a + [0.9] * 4, "b": b, "c": c + [0.1] * 4}), ())
    assert state.stopped in ("one point left", "the best separated at 95%")
    doc = summary(space, state)
    assert doc["best"] == "a" and doc["prob_best"] > 0.9 and doc["runner_up"] in ("b", "c")
    # the same runs give the same decisions (a resumed stage decides the same)
    assert replay(space, CANDS, _finals({"a": a + [0.9] * 4, "b": b, "c": c + [0.1] * 4}), ()) == state


def test_the_runs_budget_ends_the_race_and_a_last_round_goes_to_the_best_means(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir, top=3, runs=10)
    close = {"a": [0.5, 0.4, 0.6], "b": [0.45, 0.55, 0.5], "c": [0.52, 0.48, 0.44]}
    state = replay(space, CANDS, _finals(close), ())
    assert state.stopped is None and state.runs == 9
    jobs = next_jobs(space, state)
    assert [j.trial_id for j in jobs] == ["a"]  # one run left: the best mean (0.5, 0.5, 0.48: a first of ties)
    state = replay(space, CANDS, _finals({**close, "a": close["a"] + [0.5]}), ())
    assert state.stopped == "the runs are spent (10 of 10)" and next_jobs(space, state) == []


def test_a_point_whose_confirmed_runs_surely_break_a_constraint_leaves_the_race(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir)
    bound = (Bound("model_utility", "min", 0.7, "0.9 x target"),)
    finals = _finals({"a": [0.5, 0.55, 0.6], "b": [0.45, 0.5, 0.52], "c": [0.3, 0.6, 0.5]})
    for f, u in zip(finals["a"].values(), (0.5, 0.52, 0.49)):
        f["model_utility"] = u
    state = replay(space, CANDS, finals, bound)
    assert state.out["a"].startswith("infeasible after 3 seeds") and "a" not in state.survivors
    assert "one-sided 95 % t test" in state.out["a"]
    assert state.infeasible == {"a"}  # recorded as such, not read back from the reason's wording
    assert summary(space, state)["best"] != "a"
    # a mean below the bound within noise (0.69 [0.63, 0.75]) is not shown infeasible: a stays in the race
    for f, u in zip(finals["a"].values(), (0.66, 0.72, 0.69)):
        f["model_utility"] = u
    state = replay(space, CANDS, finals, bound)
    assert "a" not in state.out and "a" in state.survivors


def test_the_confirmed_best_says_how_sure_its_feasibility_is(tmp_path, cache_dir):
    from sweeps.confirm import feasibility
    from sweeps.report.select import describe_confirmation

    bound = Bound("model_utility", "min", 0.7, "0.9 x target")
    runs = lambda us: {i: {"model_utility": u} for i, u in enumerate(us)}  # noqa: E731
    verdict = lambda us: feasibility(runs(us), [bound])[0]["verdict"]  # noqa: E731
    assert verdict([0.80, 0.81, 0.79]) == "shown feasible"  # 0.80 [0.775, 0.825]
    assert verdict([0.72, 0.69, 0.74]) == "feasible within noise"  # 0.717 [0.654, 0.779]
    assert verdict([0.66, 0.72, 0.69]) == "below the bound within noise"  # 0.69 [0.615, 0.765]
    assert verdict([0.60, 0.61, 0.59]) == "shown infeasible"
    f = feasibility(runs([0.66, 0.72, 0.69]), [bound])[0]
    assert f["mean"] == pytest.approx(0.69) and f["seeds"] == 3 and f["interval"][0] < 0.7 < f["interval"][1]
    # the report's line, from the stage's summary
    space = _space(tmp_path, cache_dir)
    finals = _finals({"a": [0.5, 0.55, 0.6], "b": [0.1, 0.12, 0.11], "c": [0.45, 0.62, 0.5]})
    for f_, u in zip(finals["a"].values(), (0.72, 0.69, 0.74)):
        f_["model_utility"] = u
    doc = summary(space, replay(space, CANDS, finals, (bound,)), (bound,))
    assert doc["best"] == "a" and doc["feasibility"][0]["verdict"] == "feasible within noise"
    line = next(x for x in describe_confirmation(doc) if x.startswith("feasibility:"))
    assert "model_utility >= 0.7" in line and "over 3 seeds: feasible within noise" in line


# A real sweep with the stage whose driver is killed mid-stage, then resumed: step 5 of
# tests/sweeps/test_faults.py::test_driver_faults_in_one_sweep_lose_and_duplicate_nothing.
