import pytest

from unlearn.errors import ConfigError, UnknownNameError
from unlearn.losses import MethodConfig, build_method


def test_unknown_weighting_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"unknown weighting 'satimpp'.*satimp, simimp.*did you mean 'satimp'"):
        build_method("satimpp")


def test_unknown_objective_lists_valid_names():
    with pytest.raises(UnknownNameError, match=r"objective 'npp'.*ga, gd, kl, npo, simnpo"):
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
                 "importance": False, "beta1": 5.0, "beta2": 0.1, "gamma": 1.0, "alpha": 0.5}


def test_label():
    assert MethodConfig(weighting="simsat", granularity="group", sampling="topk", objective="npo").label == \
        "simsat/group/topk-npo"


def test_reference_needs():
    assert build_method("satimp", objective="npo").needs_reference
    assert build_method("satimp", objective="kl").needs_reference
    assert not build_method("satimp", objective="gd").needs_reference
    assert not build_method("satimp", objective="simnpo").needs_reference
