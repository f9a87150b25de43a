"""Search spaces: loading, validation errors, the define-by-run function, trial configs and seeds."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from sweeps.space import (
    SPACES_DIR,
    SearchSpace,
    define_by_run,
    derive_trial_seed,
    load_space,
    space_from_dict,
    trial_run_config,
)
from tests.conftest import REPO
from unlearn.errors import ConfigError

SHIPPED = sorted(SPACES_DIR.glob("*.yaml"))

GOOD: dict[str, Any] = {
    "name": "good",
    "description": "a valid space the error cases break one field of",
    "base": {"method": {"weighting": "satimp", "objective": "gd"}, "optim": {"epochs": 6}},
    "parameters": {
        "method.weighting": {"distribution": "categorical", "choices": ["satimp", "simsat", "uniform"]},
        "method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0, "when": {"method.weighting": ["satimp"]}},
        "method.beta2": {"distribution": "uniform", "low": 0.0, "high": 1.0, "when": {"method.weighting": ["satimp"]}},
        "optim.lr": {"distribution": "loguniform", "low": 1.0e-4, "high": 1.0e-2},
        "optim.epochs": {"distribution": "int", "low": 3, "high": 12, "step": 1},
        "seed": {"distribution": "fixed", "value": 7},
    },
    "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
    "initial_points": [{"method.weighting": "satimp", "method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 3.0e-3}],
    "budget": {"num_samples": 4, "max_concurrent": 2, "time_budget_s": None, "seed": 0},
}


def write(tmp_path: Path, data: dict[str, Any] | str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def good() -> dict[str, Any]:
    return copy.deepcopy(GOOD)


@pytest.fixture(scope="module")
def reweighting() -> SearchSpace:
    return load_space(SPACES_DIR / "reweighting.yaml")


# ------------------------------------------------------------------ shipped spaces


def test_spaces_are_shipped() -> None:
    assert {p.stem for p in SHIPPED} >= {"satimp", "reweighting", "baselines"}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_space_loads_and_round_trips(path: Path, tmp_path: Path) -> None:
    space = load_space(path)
    assert space.name == path.stem
    assert space.source == str(path)
    assert all(m in space.base_config.metrics.names for m in space.metric_names)
    base = space.base_config
    assert base.model.name == "tiny"
    if base.data.benchmark == "muse":  # MUSE-News, capped to a small subset (the README runs it on the local copy)
        assert base.data.options.max_articles <= 16 and base.data.options.max_questions <= 16 and base.optim.epochs <= 5
    elif base.data.benchmark == "wmdp":  # capped corpora and questions, MMLU's subset per evaluation
        assert base.data.options.max_articles <= 64 and base.data.options.mmlu == "subset" and base.optim.epochs <= 5
    else:
        assert base.data.benchmark == "generated"
        assert 6 <= base.optim.epochs <= 10  # each default trial stays cheap
    assert load_space(write(tmp_path, space.to_yaml())) == space


def test_satimp_space() -> None:
    space = load_space("satimp")  # a shipped space by name
    assert not space.is_multi_objective
    assert (space.tune_metric, space.tune_mode, space.directions) == ("forget_w1", "min", ("minimize",))
    assert space.budget.seeds == "per_point" and (space.budget.confirm.top, space.budget.confirm.runs) == (3, 12)
    assert space.initial_points == ({"method.beta1": 5.0, "method.beta2": 0.1, "method.alpha": 1.0,
                                     "optim.lr": 2.0e-3, "optim.epochs": 8},)
    assert (space.budget.num_samples, space.budget.max_concurrent, space.budget.seed) == (16, 2, 0)
    cfg = trial_run_config(space, space.initial_points[0], seed=0)
    m = cfg.method.resolved()
    assert (m["weighting"], m["objective"], m["beta1"], m["beta2"], m["alpha"]) == ("satimp", "gd", 5.0, 0.1, 1.0)
    assert (cfg.optim.lr, cfg.optim.epochs) == (2e-3, 8)
    assert space.max_epochs == 10


def test_robust_space_selects_on_an_attack_metric_under_attack_bounds() -> None:
    space = load_space("robust")
    assert (space.tune_metric, space.tune_mode) == ("relearn_forget_w1", "min")
    assert [(c.metric, c.key) for c in space.constraints] == [("model_utility", "min_fraction_of_target"),
                                                              ("q4_forget_prob", "max")]
    for point in space.initial_points:  # every trial carries both attacks, configured once in the base
        cfg = trial_run_config(space, point, seed=0)
        assert cfg.eval.quant.bits == (4, 8) and cfg.eval.relearn.steps == 10 and cfg.eval.relearn.seed == 0
        assert {"q4_forget_prob", "q8_forget_quality", "relearn_forget_w1"} <= set(cfg.metrics.names)


def test_reweighting_space_is_multi_objective(reweighting: SearchSpace) -> None:
    assert reweighting.is_multi_objective
    assert reweighting.tune_metric == ["forget_quality", "model_utility"]
    assert reweighting.tune_mode == ["max", "max"]
    assert reweighting.directions == ("maximize", "maximize")
    assert reweighting.budget.num_samples == 16


def test_baselines_space_evaluates_exactly_its_initial_points() -> None:
    space = load_space("baselines")
    assert space.budget.num_samples == len(space.initial_points) == 4
    labels = [trial_run_config(space, p, seed=0).method.label for p in space.initial_points]
    assert labels == ["uniform-ga", "uniform-gd", "uniform-npo", "uniform-simnpo"]
    npo = trial_run_config(space, space.initial_points[2], seed=0).method.resolved()
    assert npo["npo_beta"] == 0.1 and npo["alpha"] == 1.0


# ------------------------------------------------------------------ errors name the file and the field


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation setting ``a/b/c`` (``/``-separated: parameter names contain dots)."""

    def mutate(d: dict) -> None:
        *parents, leaf = path.split("/")
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d.setdefault(p, {})
        if isinstance(d, list):
            d[int(leaf)] = value
        else:
            d[leaf] = value

    return mutate


def _both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        for m in mutations:
            m(d)

    return mutate


def _rename(old: str, new: str) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        d["parameters"] = {new if k == old else k: v for k, v in d["parameters"].items()}
        for point in d["initial_points"]:
            point.pop(old, None)

    return mutate


BAD: dict[str, tuple[Callable[[dict], None], list[str]]] = {
    "unknown top-level key": (_set("objective", []), ["unknown key 'objective'", "objectives"]),
    "missing name": (lambda d: d.pop("name"), ["name: missing"]),
    "bad name": (_set("name", "sat imp"), ["name='sat imp'", "letters, digits"]),
    "bad base": (_set("base/optim/lrr", 1.0), ["base:", "optim.lrr", "lr"]),
    "unknown distribution": (_set("parameters/optim.lr/distribution", "gaussian"),
                             ["parameters.optim.lr.distribution", "'gaussian'", "loguniform, int, categorical"]),
    "beta3 is no field": (_rename("method.beta1", "method.beta3"), ["parameters", "'method.beta3'", "method.beta1"]),
    "optim.lrr is no field": (_rename("optim.lr", "optim.lrr"), ["parameters", "'optim.lrr'", "'optim.lr'"]),
    "a section": (_set("parameters/optim", {"distribution": "fixed", "value": 1}), ["'optim' is a section"]),
    "low >= high": (_set("parameters/method.beta1/low", 8.0), ["parameters.method.beta1", "low=8.0", "high=8.0"]),
    "loguniform low <= 0": (_set("parameters/optim.lr/low", 0.0), ["parameters.optim.lr.low", "low > 0"]),
    "int not integer": (_set("parameters/optim.epochs/high", 12.5), ["parameters.optim.epochs.high", "integer"]),
    "int step": (_set("parameters/optim.epochs/step", 2), ["parameters.optim.epochs", "multiple of step=2"]),
    "uniform on an int field": (_set("parameters/optim.epochs", {"distribution": "uniform", "low": 3, "high": 9}),
                                ["parameters.optim.epochs.distribution", "int, categorical, fixed"]),
    "key of another distribution": (_set("parameters/optim.lr/choices", [1e-3]),
                                    ["parameters.optim.lr.choices", "keys that apply", "low, high"]),
    "no choices": (_set("parameters/method.weighting/choices", []), ["parameters.method.weighting.choices"]),
    "fixed without value": (_set("parameters/seed", {"distribution": "fixed"}), ["parameters.seed", "'value'"]),
    "when unknown": (_set("parameters/method.beta2/when", {"method.weightin": ["satimp"]}),
                     ["parameters.method.beta2.when", "'method.weightin'", "method.weighting"]),
    "when later": (_set("parameters/method.beta1/when", {"method.beta2": [0.1]}),
                   ["parameters.method.beta1.when", "declared later", "move method.beta2 above"]),
    "when on a number": (_set("parameters/optim.epochs/when", {"optim.lr": [1e-3]}),
                         ["parameters.optim.epochs.when.optim.lr", "categorical or fixed"]),
    "when value not a choice": (_set("parameters/method.beta2/when", {"method.weighting": ["satimpp"]}),
                                ["parameters.method.beta2.when.method.weighting", "'satimpp'", "'satimp'"]),
    "unknown metric": (_set("objectives/0/metric", "forget_qualty"),
                       ["objectives[0]", "'forget_qualty'", "model_utility", "did you mean 'forget_quality'"]),
    "direction against the metric": (_set("objectives/0/direction", "minimize"),
                                     ["objectives[0]", "direction='minimize'", "valid: maximize"]),
    "duplicate objective": (lambda d: d["objectives"].append(dict(d["objectives"][0])),
                            ["objectives[1]", "listed twice"]),
    "no objectives": (_set("objectives", []), ["objectives", "non-empty"]),
    "ROUGE metric without ROUGE": (
        _both(_set("objectives", [{"metric": "model_utility", "direction": "maximize"}]),
              _set("base/eval", {"rouge": False})),
        ["objectives[0].metric='model_utility'", "runs do not produce it", "eval.rouge"]),
    "retain_rouge without ROUGE": (
        _both(_set("objectives/0", {"metric": "retain_rouge", "direction": "maximize"}),
              _set("base/eval", {"rouge": False})), ["objectives[0].metric='retain_rouge'", "do not produce"]),
    "early stopping unknown metric": (_both(_set("early_stopping", {"metric": "forget_qualty", "mode": "max"}),
                                            _set("base/epoch_eval", True)),
                                      ["early_stopping", "'forget_qualty'", "forget_quality"]),
    "early stopping mode": (_both(_set("early_stopping", {"metric": "forget_quality", "mode": "maximize"}),
                                  _set("base/epoch_eval", True)), ["early_stopping.mode", "max, min"]),
    "early stopping without epoch_eval": (_set("early_stopping", {"metric": "forget_quality", "mode": "max"}),
                                          ["early_stopping", "epoch_eval: true"]),
    "early stopping grace period": (
        _both(_set("early_stopping", {"metric": "forget_quality", "mode": "max", "grace_period": 12}),
              _set("base/epoch_eval", True)), ["early_stopping.grace_period=12", "< 12"]),
    "initial point unknown key": (_set("initial_points/0/method.gamma", 1.0),
                                  ["initial_points[0]", "'method.gamma'", "method.beta1"]),
    "initial point out of range": (_set("initial_points/0/method.beta1", 9.0),
                                   ["initial_points[0].method.beta1=9.0", "[0.5, 8.0]"]),
    "initial point not a choice": (_set("initial_points/0/method.weighting", "satimpp"),
                                   ["initial_points[0].method.weighting='satimpp'", "'simsat'"]),
    "initial point sets a fixed parameter": (_set("initial_points/0/seed", 7), ["initial_points[0].seed", "fixed"]),
    "initial point key that does not apply": (_set("initial_points/0/method.weighting", "uniform"),
                                              ["initial_points[0].method.beta1", "does not hold"]),
    "initial point without its condition": (lambda d: d["initial_points"][0].pop("method.weighting"),
                                            ["initial_points[0].method.beta1", "set them too"]),
    "num_samples": (_set("budget/num_samples", 0), ["budget", "num_samples=0", "[1, inf)"]),
    "fewer samples than initial points": (
        _both(_set("budget/num_samples", 1), lambda d: d["initial_points"].append({"optim.lr": 1e-3})),
        ["budget.num_samples=1", "2 initial_points"]),
    "max_concurrent": (_set("budget/max_concurrent", 0), ["budget", "max_concurrent=0"]),
    "time_budget_s": (_set("budget/time_budget_s", 0), ["budget", "time_budget_s=0"]),
    "unknown budget key": (_set("budget/num_sample", 3), ["budget.num_sample", "num_samples"]),
    "replicates 0": (_set("budget/replicates", 0), ["budget", "replicates=0", "[1, 100]"]),
    "aggregate": (_set("budget/aggregate", "max"), ["budget.aggregate='max'", "mean, median"]),
    "replicates with early stopping": (
        _both(_set("budget/replicates", 3), _set("base/epoch_eval", True), lambda d: d["parameters"].pop("seed"),
              _set("early_stopping", {"metric": "forget_quality", "mode": "max"})),
        ["budget.replicates=3 with early_stopping", "valid: replicates: 1, or no early_stopping"]),
    "replicates with a seed parameter": (_set("budget/replicates", 2), ["budget.replicates=2", "seed among the parameters"]),
    "constraints not a list": (_set("constraints", {"metric": "model_utility", "min": 0.5}), ["constraints must be a list"]),
    "constraint unknown metric": (_set("constraints", [{"metric": "model_utilty", "min": 0.5}]),
                                  ["constraints[0].metric", "'model_utilty'", "did you mean 'model_utility'"]),
    "constraint without bound": (_set("constraints", [{"metric": "model_utility"}]),
                                 ["constraints[0]", "sets no bound", "exactly one of min, max, min_fraction_of_target"]),
    "constraint with two bounds": (_set("constraints", [{"metric": "model_utility", "min": 0.5, "max": 0.9}]),
                                   ["constraints[0]", "sets min, max"]),
    "constraint unknown key": (_set("constraints", [{"metric": "model_utility", "minimum": 0.5}]),
                               ["'constraints[0].minimum'", "did you mean 'min'"]),
    "constraint not finite": (_set("constraints", [{"metric": "model_utility", "max": float("inf")}]),
                              ["constraints[0]", "max=inf", "finite"]),
    "constraint fraction not positive": (_set("constraints", [{"metric": "forget_truth_ratio", "min_fraction_of_target": 0}]),
                                         ["constraints[0]", "min_fraction_of_target=0", "out of range"]),
    "constraint given twice": (_set("constraints", [{"metric": "forget_prob", "max": 0.5}, {"metric": "forget_prob", "max": 0.4}]),
                               ["constraints[1]", "max on 'forget_prob' is given twice"]),
    "constraint on ROUGE without ROUGE": (
        _both(_set("constraints", [{"metric": "model_utility", "min": 0.5}]), _set("base/eval", {"rouge": False})),
        ["constraints[0].metric='model_utility'", "runs do not produce it"]),
    "relative constraint without a fine-tuned target": (
        _both(_set("constraints", [{"metric": "forget_truth_ratio", "min_fraction_of_target": 0.9}]),
              _set("base/prepare", {"finetune": False, "retain_stats": "x.json"}), _set("base/model", {"name": "m"})),
        ["constraints[0]", "prepare.finetune: false", "absolute min / max"]),
    "attack metric without the attack": (_set("objectives", [{"metric": "relearn_forget_w1", "direction": "minimize"}]),
                                         ["objectives[0]", "unknown metric 'relearn_forget_w1'"]),
    "attack setting as a parameter": (
        _both(_set("base/eval", {"relearn": {"steps": 5}}),
              _set("parameters/eval.relearn", {"distribution": "fixed", "value": None})),
        ["eval.relearn is a parameter", "attacked the same way", "set eval.quant / eval.relearn in base"]),
    "relative bound on an attack metric": (
        _both(_set("base/eval", {"quant": {"bits": [4]}}),
              _set("constraints", [{"metric": "q4_forget_prob", "max_fraction_of_target": 0.5}])),
        ["constraints[0]", "an attack's metric", "valid: an absolute min / max"]),
}


def test_attack_metrics_are_objectives_and_constraints(tmp_path: Path) -> None:
    data = good()
    data["base"]["eval"] = {"quant": {"bits": [4, 8]}, "relearn": {"fraction": 0.25, "steps": 10}}
    data["objectives"] = [{"metric": "forget_quality", "direction": "maximize"},
                          {"metric": "relearn_forget_w1", "direction": "minimize"}]
    data["constraints"] = [{"metric": "relearn_forget_prob", "max": 0.3}, {"metric": "q4_forget_prob", "max": 0.2}]
    space = load_space(write(tmp_path, data))
    assert space.metric_names == ("forget_quality", "relearn_forget_w1")
    assert [c.metric for c in space.constraints] == ["relearn_forget_prob", "q4_forget_prob"]
    data["objectives"] = [{"metric": "relearn_forget_w1", "direction": "maximize"}]
    with pytest.raises(ConfigError, match="direction='maximize' does not suit 'relearn_forget_w1'; valid: minimize"):
        load_space(write(tmp_path, data, "wrong.yaml"))


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_space_names_file_and_field(case: str, tmp_path: Path) -> None:
    mutate, fragments = BAD[case]
    data = good()
    mutate(data)
    path = write(tmp_path, data, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in: {msg}"


def test_the_good_space_is_good(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, good()))
    assert [p.name for p in space.parameters] == list(GOOD["parameters"])


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nparameters: {a: [\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_space(path)
    assert str(path) in str(info.value)


def test_missing_file_lists_shipped_spaces() -> None:
    with pytest.raises(ConfigError, match="satimp"):
        load_space("no-such-space")


def test_dry_run_reports_the_forgotten_when(tmp_path: Path) -> None:
    data = good()
    data["initial_points"] = []
    del data["parameters"]["method.beta2"]["when"]  # beta2 sampled with weighting=simsat / uniform
    with pytest.raises(ConfigError) as info:
        load_space(write(tmp_path, data))
    msg = str(info.value)
    for fragment in ("parameters:", "method.beta2", "does not apply", "`when`"):
        assert fragment in msg, msg
    assert "method.weighting: 'simsat'" in msg or "method.weighting: 'uniform'" in msg


def test_dry_run_checks_numeric_bounds(tmp_path: Path) -> None:
    data = good()
    data["parameters"]["method.sampling"] = {"distribution": "fixed", "value": "topk"}
    data["parameters"]["method.k"] = {"distribution": "uniform", "low": 0.0, "high": 1.0}  # k must be > 0
    with pytest.raises(ConfigError, match=r"low bound.*method\.k: 0\.0.*k=0\.0 is out of range"):
        load_space(write(tmp_path, data))


def test_dry_run_reports_a_bad_initial_point(tmp_path: Path) -> None:
    data = good()
    data["parameters"]["method.objective"] = {"distribution": "categorical", "choices": ["ga", "gd"]}
    data["parameters"]["method.alpha"] = {"distribution": "uniform", "low": 0.5, "high": 2.0}  # ga takes none
    data["initial_points"] = [{"method.objective": "ga", "method.alpha": 1.0}]
    with pytest.raises(ConfigError, match=r"initial_points\[0\].*method\.alpha: 1\.0.*'alpha' does not apply"):
        load_space(write(tmp_path, data))


# ------------------------------------------------------------------ overrides


def test_overrides_apply_to_the_yaml() -> None:
    space = load_space("satimp", ["budget.num_samples=4", "base.optim.epochs=3", "parameters.optim.lr.high=0.02",
                                  "parameters.optim.weight_decay={distribution: uniform, low: 0.0, high: 0.1}"])
    assert space.budget.num_samples == 4
    assert space.base_config.optim.epochs == 3
    assert space.param_map["optim.lr"].high == 0.02
    assert space.parameters[-1].name == "optim.weight_decay"


def test_override_removes_a_parameter_and_adds_a_condition(tmp_path: Path) -> None:
    data = good()
    data["initial_points"] = []
    data["parameters"]["method.beta2"].pop("when")
    path = write(tmp_path, data)
    with pytest.raises(ConfigError):
        load_space(path)
    space = load_space(path, ["parameters.method.beta2.when.method.weighting=[satimp]", "parameters.seed=null"])
    assert space.param_map["method.beta2"].when == {"method.weighting": ("satimp",)}
    assert "seed" not in space.param_map


def test_bad_override_names_the_file() -> None:
    with pytest.raises(ConfigError, match=r"satimp\.yaml: budget: num_samples=0"):
        load_space("satimp", ["budget.num_samples=0"])
    with pytest.raises(ConfigError, match=r"satimp\.yaml: override .*no parameter 'method\.beta9'"):
        load_space("satimp", ["parameters.method.beta9.low=1"])


# ------------------------------------------------------------------ define-by-run


def _sample(space: SearchSpace, n: int, seed: int = 0) -> list[tuple[dict, dict | None]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for point in space.initial_points:
        study.enqueue_trial(dict(point))
    fn = define_by_run(space)
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = fn(trial)
        out.append((trial.params, fixed))
    return out


EXPECTED_WHEN: dict[str, Callable[[dict], bool]] = {
    "method.beta": lambda p: p["method.weighting"] in ("simsat", "simimp"),
    "method.beta1": lambda p: p["method.weighting"] == "satimp",
    "method.beta2": lambda p: p["method.weighting"] == "satimp",
    "method.group_size": lambda p: p["method.granularity"] == "group",
    "method.k": lambda p: p["method.sampling"] != "none",
    "method.s": lambda p: p["method.sampling"] == "random",
    "method.alpha": lambda p: p["method.objective"] in ("gd", "npo"),
    "method.npo_beta": lambda p: p["method.objective"] == "npo",
}


def test_define_by_run_samples_only_applicable_params(reweighting: SearchSpace) -> None:
    samples = _sample(reweighting, 200)
    for params, fixed in samples:
        assert fixed is None  # the reweighting space has no fixed parameters
        for name, applies in EXPECTED_WHEN.items():
            assert (name in params) == applies(params), (name, params)
        for name, value in params.items():
            assert reweighting.param_map[name].contains(value), (name, value)
    uniform = [p for p, _ in samples if p["method.weighting"] == "uniform"]
    assert uniform and not any({"method.beta", "method.beta1", "method.beta2"} & set(p) for p in uniform)
    seen = {p["method.weighting"] for p, _ in samples} | {p["method.objective"] for p, _ in samples}
    assert seen == {"simsat", "simimp", "satimp", "uniform", "ga", "gd", "npo"}


def test_define_by_run_returns_fixed_params_and_respects_ranges(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, good()))
    for params, fixed in _sample(space, 100, seed=1)[1:]:
        assert fixed == {"seed": 7} and "seed" not in params
        assert 1e-4 <= params["optim.lr"] <= 1e-2
        assert isinstance(params["optim.epochs"], int) and 3 <= params["optim.epochs"] <= 12


def test_define_by_run_uses_only_suggest_calls(reweighting: SearchSpace) -> None:
    calls: list[str] = []

    class Recorder:
        def __getattr__(self, name: str) -> Any:
            def call(pname: str, *args: Any, **kwargs: Any) -> Any:
                calls.append(name)
                return args[0][0] if name == "suggest_categorical" else args[0]

            return call

    define_by_run(reweighting)(Recorder())
    assert calls and set(calls) <= {"suggest_float", "suggest_int", "suggest_categorical"}


def test_define_by_run_pickles(reweighting: SearchSpace) -> None:
    fn = pickle.loads(pickle.dumps(define_by_run(reweighting)))  # OptunaSearch.save pickles its space
    assert fn == define_by_run(reweighting)


def test_initial_points_pass_through(reweighting: SearchSpace) -> None:
    point = reweighting.initial_points[0]
    params, _ = _sample(reweighting, 1)[0]
    assert params == point
    cfg = trial_run_config(reweighting, params, seed=3)
    assert cfg.method.label == "satimp-gd" and cfg.method.beta1 == 5.0 and cfg.optim.lr == 3e-3


def test_baselines_run_their_initial_points_in_order() -> None:
    space = load_space("baselines")
    assert [params for params, _ in _sample(space, 4)] == list(space.initial_points)


def test_initial_point_leaves_other_params_to_the_sampler() -> None:
    space = load_space("satimp", ["initial_points=[{method.beta1: 5.0}]"])
    params, _ = _sample(space, 1)[0]
    assert params["method.beta1"] == 5.0
    assert set(params) == {p.name for p in space.parameters}


# ------------------------------------------------------------------ trial configs and seeds


def test_trial_run_config_applies_params_and_seed(tmp_path: Path) -> None:
    data = good()
    del data["parameters"]["seed"]
    space = load_space(write(tmp_path, data))
    cfg = trial_run_config(space, {"method.beta1": 2.0, "optim.lr": 5e-4}, seed=11)
    assert cfg.seed == 11
    assert cfg.optim.lr == 5e-4 and cfg.optim.epochs == 6  # the base's epochs kept
    assert (cfg.method.weighting, cfg.method.objective, cfg.method.beta1) == ("satimp", "gd", 2.0)  # merged


def test_trial_run_config_keeps_a_fixed_seed(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, good()))
    assert trial_run_config(space, {"seed": 7}, seed=11).seed == 7


def test_trial_run_config_without_base_method_starts_from_the_default() -> None:
    space = space_from_dict({
        "name": "lr", "parameters": {"optim.lr": {"distribution": "loguniform", "low": 1e-4, "high": 1e-2}},
        "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
    })
    cfg = trial_run_config(space, {"method.beta1": 3.0}, seed=0)
    assert (cfg.method.label, cfg.method.beta1, cfg.method.beta2) == ("satimp-gd", 3.0, 0.1)


def test_trial_run_config_errors_name_the_params(tmp_path: Path) -> None:
    space = load_space(write(tmp_path, good()))
    with pytest.raises(ConfigError, match=r"trial parameters .*method\.weighting: 'uniform'.*'beta1'"):
        trial_run_config(space, {"method.weighting": "uniform", "method.beta1": 1.0}, seed=0)
    with pytest.raises(ConfigError, match=r"'optim\.lrr'.*did you mean 'optim\.lr'"):
        trial_run_config(space, {"optim.lrr": 1e-3}, seed=0)


def test_derive_trial_seed_is_distinct_and_stable() -> None:
    seeds = [derive_trial_seed(0, n) for n in range(20_000)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**32 for s in seeds)
    assert seeds[:3] == [derive_trial_seed(0, n) for n in range(3)]
    assert derive_trial_seed(0, 0) == 804215951  # pinned: stable across processes and versions
    assert [derive_trial_seed(1, n) for n in range(5)] != seeds[:5]
    with pytest.raises(ConfigError, match="trial_number"):
        derive_trial_seed(0, -1)


# ------------------------------------------------------------------ round trip


def test_to_yaml_round_trips_every_field(tmp_path: Path) -> None:
    data = good()
    data["base"]["epoch_eval"] = True
    data["early_stopping"] = {"metric": "forget_quality", "mode": "max", "grace_period": 2, "reduction_factor": 3}
    data["objectives"].append({"metric": "forget_prob", "direction": "minimize"})
    data["budget"]["time_budget_s"] = 600
    data["constraints"] = [{"metric": "forget_prob", "max": 0.5}, {"metric": "forget_truth_ratio",
                                                                  "min_fraction_of_target": 0.9}]
    space = load_space(write(tmp_path, data))
    again = load_space(write(tmp_path, space.to_yaml(), "again.yaml"))
    assert again == space
    assert again.to_dict() == space.to_dict()
    assert again.tune_mode == ["max", "min"] and again.early_stopping.reduction_factor == 3
    assert [c.key for c in again.constraints] == ["max", "min_fraction_of_target"]


def test_per_point_replicate_seeds_extend_the_trial_seed(tmp_path: Path) -> None:
    from sweeps.space import replicate_seeds, trial_seed

    data = good()
    data["parameters"].pop("seed")
    data["budget"]["replicates"] = 4
    data["budget"]["seeds"] = "per_point"
    space = load_space(write(tmp_path, data))
    point = {"method.weighting": "satimp", "method.beta1": 5.0}
    seeds = replicate_seeds(space, point)
    assert seeds[0] == trial_seed(space, point)  # one replicate runs as a sweep without replicates did
    assert len(set(seeds)) == 4 and seeds == replicate_seeds(space, dict(reversed(list(point.items()))))
    assert seeds[1:] == [derive_trial_seed(seeds[0], r) for r in (1, 2, 3)]
    assert replicate_seeds(space, {**point, "method.beta1": 4.0})[0] != seeds[0]


def test_budget_seeds_and_confirm_are_checked_at_load(tmp_path: Path) -> None:
    data = good()
    data["parameters"].pop("seed")
    data["budget"]["seeds"] = "per_trial"
    with pytest.raises(ConfigError, match="budget.seeds='per_trial' is not valid; valid: common, per_point"):
        load_space(write(tmp_path, data))
    data["budget"]["seeds"] = "common"
    data["budget"].update(adaptive=True, replicates=2)
    with pytest.raises(ConfigError, match="budget.adaptive with replicates=2.*valid: replicates >= 3"):
        load_space(write(tmp_path, data))
    data["budget"]["replicates"] = 3
    assert load_space(write(tmp_path, data)).budget.adaptive
    data["budget"].update(adaptive=False, replicates=1)
    data["budget"]["confirm"] = {"top": 3, "runs": 6}
    with pytest.raises(ConfigError, match=r"confirm.runs=6 is too few for confirm.top=3.*valid: runs >= 9"):
        load_space(write(tmp_path, data))
    data["budget"]["confirm"] = {"top": 1, "runs": 6}
    with pytest.raises(ConfigError, match="top"):
        load_space(write(tmp_path, data))
    data["budget"]["confirm"] = {"top": 2, "runs": 6}
    assert load_space(write(tmp_path, data)).budget.confirm.runs == 6
    data["parameters"]["seed"] = {"distribution": "int", "low": 0, "high": 3}
    with pytest.raises(ConfigError, match="budget.confirm with seed among the parameters"):
        load_space(write(tmp_path, data))


def test_constraints_resolve_against_the_target() -> None:
    from sweeps.space import Constraint

    assert Constraint("model_utility", min=0.8).resolve(None).threshold == 0.8
    relative = Constraint("model_utility", min_fraction_of_target=0.95).resolve({"model_utility": 0.6})
    assert (relative.kind, relative.threshold) == ("min", pytest.approx(0.57)) and "0.95 x target 0.6" in relative.text
    assert Constraint("forget_rouge", max_fraction_of_target=0.5).resolve({"forget_rouge": 0.4}).kind == "max"
    with pytest.raises(ConfigError, match="no value of 'model_utility'.*absolute min / max"):
        Constraint("model_utility", min_fraction_of_target=0.95).resolve({"forget_quality": 0.1})


def test_relative_data_paths_become_absolute_in_the_driver(tmp_path, monkeypatch) -> None:
    """A trial's process runs in its own working directory: a relative base.data.path (as README's MUSE
    command gives) is resolved where the sweep is launched (a MUSE sweep's trials all failed without it)."""
    monkeypatch.chdir(REPO)
    space = load_space("muse", ["base.data.path=../shared/data/muse_news"])
    assert space.base["data"]["path"] == str((REPO / ".." / "shared" / "data" / "muse_news").resolve())
    assert space.base_config.data.path == space.base["data"]["path"]
    fixture = "unlearn/benchmarks/wmdp/fixture"
    wmdp = load_space("wmdp", [f"base.data.path={fixture}", f"base.data.tasks_path={fixture}/tasks"])
    assert wmdp.base["data"]["tasks_path"] == str(REPO / fixture / "tasks")


def test_base_may_be_a_run_config_file(tmp_path):
    """A setup written once: ``base`` names a run-config YAML (relative to the space's directory), which
    ``unlearn-sweep run FILE`` runs as it is; overrides of the space still reach into it."""
    (tmp_path / "presets").mkdir()
    write(tmp_path / "presets", {"method": {"weighting": "satimp", "objective": "gd"}, "optim": {"epochs": 6}}, "run.yaml")
    space = load_space(write(tmp_path, {**good(), "base": "presets/run.yaml"}), ["base.optim.batch_size=2"])
    assert space.base == {"method": {"weighting": "satimp", "objective": "gd"}, "optim": {"epochs": 6, "batch_size": 2}}
    with pytest.raises(ConfigError, match=r"base 'presets/none.yaml' is not a file.*relative to the space's directory"):
        load_space(write(tmp_path, {**good(), "base": "presets/none.yaml"}))
