import math

import pytest
import torch

from unlearn.losses import WEIGHTINGS, build_method

from .conftest import naive_ce

CASES = {
    "satimp": ({"beta1": 2.0, "beta2": 0.5}, lambda p: p**2.0 * (1 - p) ** 0.5),
    "simsat": ({"beta": 3.0}, lambda p: p**3.0),
    "wga": ({"beta": 1.5}, lambda p: p**1.5),
    "simimp": ({"beta": 0.7}, lambda p: (1 - p) ** 0.7),
    "uniform": ({}, lambda p: 1.0),
}


def test_every_registered_weighting_is_covered():
    assert set(WEIGHTINGS.names()) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_token_weights_match_formula_elementwise(name, batch):
    params, formula = CASES[name]
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    w = build_method(name, **params).weights(ce, mask)
    for b, t in mask.nonzero().tolist():
        p = math.exp(-float(ce[b, t]))
        assert w[b, t].item() == pytest.approx(formula(p), rel=1e-6, abs=1e-12)
    assert torch.all(w[~mask] == 0)
    assert not w.requires_grad


@pytest.mark.parametrize("name", list(CASES))
def test_ga_loss_and_gradient_per_weighting(name, batch):
    params, formula = CASES[name]
    logits, labels = batch
    x = logits.clone().requires_grad_(True)
    ce, mask = naive_ce(x, labels)
    out = build_method(name, **params).forget_term(ce, mask)
    p = torch.exp(-ce.detach())
    w_ref = torch.tensor([[formula(float(pi)) for pi in row] for row in p], dtype=ce.dtype) * mask
    y = logits.clone().requires_grad_(True)
    ce_y, _ = naive_ce(y, labels)
    ref = -(w_ref * ce_y).sum() / mask.sum()
    assert float(out.loss) == pytest.approx(float(ref), rel=1e-6, abs=1e-12)
    out.loss.backward()
    ref.backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_weights_are_fp32_for_bf16_ce():
    ce = torch.rand(2, 5).to(torch.bfloat16)
    w = build_method("satimp").weights(ce, torch.ones(2, 5, dtype=torch.bool))
    assert w.dtype == torch.float32


def test_one_minus_p_is_accurate_for_tiny_ce():
    """(1-p) via expm1: ce=1e-8 gives 1-p ~ 1e-8, where 1 - exp(-ce) in fp32 would give 0."""
    ce = torch.tensor([[1e-8]])
    w = build_method("simimp", beta=1.0).weights(ce, torch.ones(1, 1, dtype=torch.bool))
    assert w.item() == pytest.approx(1e-8, rel=1e-3)


def test_statistics_reported(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    stats = build_method("satimp", beta1=50.0).forget_term(ce, mask).stats
    assert set(stats) == {"mean_weight", "low_weight_frac", "forget_ce"}
    assert 0.0 <= stats["low_weight_frac"] <= 1.0
    assert stats["low_weight_frac"] > 0.5  # beta1=50 switches most tokens off
    assert stats["forget_ce"] == pytest.approx(float(ce[mask].mean()), rel=1e-6)
