import pytest

from unlearn.errors import ConfigError, UnknownNameError
from unlearn.losses import MethodConfig, build_method


def test_unknown_weighting_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown weighting 'satimpp'.*satimp, simimp.*did you mean 'satimp'"):
        build_method("satimpp")


def test_unknown_objective_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"objective 'npp'.*ga, gd, kl, npo, rmu, simnpo"):
        build_method("satimp", objective="npp")


def test_unknown_parameter_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown key 'method.beta3'.*valid keys"):
        build_method("satimp", beta3=1.0)


def test_parameter_of_another_component_is_rejected():
    with pytest.raises(ConfigError, match=r"parameter 'beta' does not apply.*beta1, beta2"):
        build_method("satimp", beta=2.0)
    with pytest.raises(ConfigError, match=r"'alpha' does not apply.*objective='ga'"):
        build_method("satimp", alpha=1.0)


def test_resolved_fills_defaults_of_applicable_params_only():
    r = MethodConfig(weighting="satimp", objective="gd", alpha=0.5).resolved()
    assert r == {"weighting": "satimp", "granularity": "token", "sampling": "none", "objective": "gd",
                 "retain": "nll", "importance": False, "reduction": "mean", "beta1": 5.0, "beta2": 0.1, "gamma": 1.0,
                 "alpha": 0.5}
    npo_kl = MethodConfig(weighting="uniform", objective="npo", retain="kl", importance=True).resolved()
    assert npo_kl == {"weighting": "uniform", "granularity": "token", "sampling": "none", "objective": "npo",
                      "retain": "kl", "importance": True, "reduction": "mean", "gamma": 1.0, "npo_beta": 0.1,
                      "alpha": 1.0, "s": 1.0}


def test_label():
    assert MethodConfig(weighting="simsat", granularity="group", sampling="topk", objective="npo").label == \
        "simsat/group/topk-npo"
    assert MethodConfig(weighting="uniform", objective="npo", retain="kl").label == "uniform-npo+kl"
    assert MethodConfig(weighting="uniform", objective="ga", retain="nll").label == "uniform-ga+nll"


def test_retain_is_its_own_axis():
    assert build_method("uniform", objective="ga").retain_kind == "none"
    for objective, retain in (("gd", "nll"), ("kl", "kl"), ("npo", "nll"), ("simnpo", "nll")):
        assert build_method("uniform", objective=objective).retain_kind == retain
    for objective in ("ga", "npo", "simnpo"):
        for retain in ("none", "nll", "kl"):
            m = build_method("uniform", objective=objective, retain=retain)
            assert m.retain_kind == retain
            assert m.needs_reference == (objective == "npo" or retain == "kl")
    with pytest.raises(ConfigError, match=r"retain='kl' does not apply to objective='gd'.*objective='ga' with retain='kl'"):
        build_method("uniform", objective="gd", retain="kl")
    with pytest.raises(ConfigError, match=r"'alpha' does not apply.*retain='none'"):
        build_method("uniform", objective="npo", retain="none", alpha=1.0)
    with pytest.raises(UnknownNameError, match=r"unknown retain 'kll'.*kl, nll, none"):
        build_method("uniform", retain="kll")


def test_reduction_and_importance_parameters_are_validated():
    with pytest.raises(ConfigError, match=r"reduction='avg' is not valid; valid: mean, sum"):
        build_method("uniform", reduction="avg")
    with pytest.raises(ConfigError, match=r"parameter 's' does not apply.*importance=False"):
        build_method("uniform", s=0.5)
    assert build_method("uniform", importance=True, s=0.5).cfg.resolved()["s"] == 0.5
    with pytest.raises(ConfigError, match=r"s=1.5 is out of range"):
        build_method("uniform", importance=True, s=1.5)


def test_reference_needs():
    assert build_method("satimp", objective="npo").needs_reference
    assert build_method("satimp", objective="kl").needs_reference
    assert not build_method("satimp", objective="gd").needs_reference
    assert not build_method("satimp", objective="simnpo").needs_reference
    assert build_method("satimp", objective="simnpo", retain="kl").needs_reference


def test_catalog_lists_the_retain_axis_and_the_options():
    from unlearn.losses.catalog import format_catalog

    text = format_catalog()
    assert "retain:" in text and "kl         alpha=1.0" in text and "npo        gamma=1.0, npo_beta=0.1" in text
    for needle in ("method.retain=kl", "importance=true", "reduction: mean", "delta = npo_beta *", "h is 1 - k"):
        assert needle in text, needle
