"""RMU's terms against a naive reference written here (float64, value and gradient), its control vector,
its configuration errors, and the trainable-parameter selection on a real tiny Llama."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unlearn.errors import ConfigError
from unlearn.losses import build_method
from unlearn.losses.rmu import REFERENCE_TRAINABLE, activation_mse, control_vector, parameter_selection

B, T, H = 3, 7, 5


def naive_mean_sq(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1 / #counted positions) * sum over counted (b, t) of (1/H) sum_k (h[b,t,k] - target[b,t,k])^2, by loops."""
    total, count = h.new_zeros(()), 0
    for b in range(h.shape[0]):
        for t in range(h.shape[1]):
            if mask[b, t]:
                total = total + sum((h[b, t, k] - target[b, t, k]) ** 2 for k in range(h.shape[2])) / h.shape[2]
                count += 1
    return total / count


@pytest.fixture
def acts() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    ref = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False  # right padding of different lengths
    mask[2, 6:] = False
    return h, ref, mask


def test_control_vector_is_seeded_uniform_and_scaled():
    state = torch.random.get_rng_state()
    c = control_vector(64, 20.0, torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is never used
    assert c.shape == (64,) and c.dtype == torch.float32
    assert float(c.norm()) == pytest.approx(20.0, rel=1e-6)
    assert bool((c >= 0).all())  # the reference's torch.rand direction: one orthant
    u = torch.rand(64, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(c, u / u.norm() * 20.0)
    assert torch.equal(c, control_vector(64, 20.0, torch.Generator().manual_seed(3)))
    assert not torch.equal(c, control_vector(64, 20.0, torch.Generator().manual_seed(4)))


def test_method_control_vector_comes_from_the_run_seed():
    m = build_method("uniform", objective="rmu", steering_coeff=6.5)
    assert torch.equal(m.control_vector(32, seed=7), control_vector(32, 6.5, torch.Generator().manual_seed(7)))
    assert not torch.equal(m.control_vector(32, seed=7), m.control_vector(32, seed=8))


@pytest.mark.parametrize(("gamma", "coeff"), [(1.0, 20.0), (0.5, 3.0)])
def test_forget_term_value_and_gradient(acts, gamma, coeff):
    h, _, mask = acts
    m = build_method("uniform", objective="rmu", gamma=gamma, steering_coeff=coeff)
    c = m.control_vector(H, seed=0).double()
    h1 = h.clone().requires_grad_(True)
    out = m.activation_forget_term(h1, mask, c)
    out.loss.backward()
    h2 = h.clone().requires_grad_(True)
    ref = gamma * naive_mean_sq(h2, c.expand(B, T, H), mask)
    ref.backward()
    torch.testing.assert_close(out.loss.double(), ref, rtol=1e-5, atol=1e-9)  # fp32 maths inside
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-5, atol=1e-9)
    assert out.stats["forget_act_mse"] == pytest.approx(float(ref.detach()) / gamma, rel=1e-5)
    assert bool((h1.grad[~mask] == 0).all())  # padding carries no gradient


def test_full_length_sequences_equal_both_references(acts):
    """Without padding, the token mean is open-unlearning's per-sequence mean then batch mean and the WMDP
    reference's mse_loss(h, c) over every element; with padding only open-unlearning's per-sequence view and
    this project's token mean differ (README fidelity table: the reference also averages over padding)."""
    h, _, mask = acts
    m = build_method("uniform", objective="rmu")
    c = m.control_vector(H, seed=0).double()
    full = torch.ones(B, T, dtype=torch.bool)
    ours = m.activation_forget_term(h, full, c).loss.double()
    wmdp = F.mse_loss(h, c.expand_as(h))
    per_seq = ((h - c) ** 2).mean(-1).sum(1) / T
    torch.testing.assert_close(ours, wmdp, rtol=1e-5, atol=0)
    torch.testing.assert_close(ours, per_seq.mean(), rtol=1e-5, atol=0)
    padded = m.activation_forget_term(h, mask, c).loss.double()
    assert abs(float(padded - F.mse_loss(h, c.expand_as(h)))) > 1e-4  # the reference counts padding


def test_embed_retain_term_value_and_gradient(acts):
    h, ref_h, mask = acts
    m = build_method("uniform", objective="rmu", alpha=30.0)
    assert m.retain_kind == "embed" and m.needs_reference and m.alpha == 30.0
    h1 = h.clone().requires_grad_(True)
    out = m.retain_term(embed=activation_mse(h1, ref_h), mask=mask)
    out.loss.backward()
    h2 = h.clone().requires_grad_(True)
    expect = 30.0 * naive_mean_sq(h2, ref_h, mask)
    expect.backward()
    torch.testing.assert_close(out.loss.double(), expect, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(h1.grad, h2.grad, rtol=1e-5, atol=1e-9)


def test_sum_reduction_does_not_divide(acts):
    h, _, mask = acts
    m = build_method("uniform", objective="rmu", reduction="sum")
    c = m.control_vector(H, seed=0).double()
    expect = naive_mean_sq(h, c.expand(B, T, H), mask) * mask.sum()
    torch.testing.assert_close(m.activation_forget_term(h, mask, c).loss.double(), expect, rtol=1e-5, atol=1e-9)


def test_defaults_are_the_references():
    r = build_method("uniform", objective="rmu").cfg.resolved()
    # WMDP's rmu/unlearn.py: steering 20, alpha 100, layer 7, layers 5-7's mlp.down_proj.weight
    assert (r["steering_coeff"], r["alpha"], r["layer"], r["gamma"], r["retain"]) == (20.0, 100.0, 7, 1.0, "embed")
    assert r["trainable"] == REFERENCE_TRAINABLE
    assert build_method("uniform", objective="rmu", retain="nll").alpha == 1.0  # nll keeps its own default
    m = build_method("uniform", objective="rmu")
    assert (m.forget_unit, m.retain_unit, m.needs_activations) == ("label", "label", True)


@pytest.mark.parametrize(("params", "match"), [
    ({"weighting": "satimp"}, r"weighting='satimp' does not apply to objective='rmu'.*valid: weighting='uniform'"),
    ({"granularity": "instance"}, r"granularity='instance' does not apply"),
    ({"importance": True}, r"importance=True does not apply"),
    ({"steering_coeff": 0.0}, r"steering_coeff=0.0 is out of range"),
    ({"layer": -1}, r"layer=-1 is out of range"),
    ({"trainable": "model.layers.(5"}, r"trainable='model.layers.\(5' is not a regular expression"),
    ({"beta1": 5.0}, r"parameter 'beta1' does not apply.*steering_coeff"),
])
def test_bad_rmu_configs_name_the_value(params, match):
    with pytest.raises(ConfigError, match=match):
        build_method(**{"name": "uniform", "objective": "rmu", **params})


def test_embed_retain_needs_rmu_and_rmu_params_need_rmu():
    with pytest.raises(ConfigError, match=r"retain='embed'.*needs objective='rmu'"):
        build_method("uniform", objective="ga", retain="embed")
    with pytest.raises(ConfigError, match=r"parameter 'steering_coeff' does not apply"):
        build_method("uniform", objective="gd", steering_coeff=20.0)
    with pytest.raises(ConfigError, match=r"activation_forget_term"):
        build_method("uniform", objective="rmu").forget_term(torch.zeros(1, 2), torch.ones(1, 2))


def test_parameter_selection_matches_in_full():
    names = [f"model.layers.{i}.mlp.{p}.weight" for i in range(8) for p in ("up_proj", "down_proj")]
    assert parameter_selection(names, REFERENCE_TRAINABLE) == [f"model.layers.{i}.mlp.down_proj.weight" for i in (5, 6, 7)]
    with pytest.raises(ConfigError, match=r"matches none of the model's 16 parameters.*model.layers.0.mlp.up_proj"):
        parameter_selection(names, r"layers\.5\.mlp\.down_proj\.weight")  # not anchored: no full match
