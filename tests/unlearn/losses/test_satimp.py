import math

import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.losses import satimp_loss, token_ce

from .conftest import naive_ce


def reference_satimp(logits, labels, beta1, beta2):
    ce, mask = naive_ce(logits, labels)
    p = torch.exp(-ce.detach())
    w = p**beta1 * (1 - p) ** beta2 * mask
    n = mask.sum()
    return -(w * ce).sum() / n


@pytest.mark.parametrize("beta1,beta2", [(5.0, 0.1), (1.0, 1.0), (0.0, 0.0), (3.0, 0.0)])
def test_satimp_value_and_gradient_match_reference(batch, beta1, beta2):
    logits, labels = batch
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    ours = satimp_loss(x1, labels, beta1=beta1, beta2=beta2)
    ref = reference_satimp(x2, labels, beta1, beta2)
    assert abs(float(ours) - float(ref)) < 1e-6 * max(1.0, abs(float(ref)))
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-9, rtol=1e-6)


def test_satimp_random_float32_matches_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 12, 50, generator=g)
    labels = torch.randint(0, 50, (3, 12), generator=g)
    labels[:, :4] = -100
    ce, mask = naive_ce(logits.double(), labels)
    p = torch.exp(-ce)
    expected = -(p**5 * (1 - p) ** 0.1 * ce)[mask].mean()
    assert abs(float(satimp_loss(logits, labels)) - float(expected)) < 1e-6


def test_ignored_tokens_get_exactly_zero_gradient(batch):
    logits, labels = batch
    x = logits.clone().requires_grad_(True)
    satimp_loss(x, labels).backward()
    shifted_ignored = torch.zeros_like(labels, dtype=torch.bool)
    shifted_ignored[:, :-1] = labels[:, 1:] == -100
    shifted_ignored[:, -1] = True  # the last position predicts nothing
    assert x.grad[shifted_ignored].abs().max() == 0
    assert x.grad[~shifted_ignored].abs().max() > 0


def test_weights_carry_no_gradient(batch):
    """The gradient is w * dCE: equal to the gradient of a loss whose weights are constants."""
    logits, labels = batch
    x = logits.clone().requires_grad_(True)
    satimp_loss(x, labels, beta1=2.0, beta2=0.5).backward()
    ce, mask = token_ce(logits, labels)
    p = torch.exp(-ce)
    w_const = (p**2.0 * (1 - p) ** 0.5 * mask).detach()
    y = logits.clone().requires_grad_(True)
    ce_y, _ = token_ce(y, labels)
    (-(w_const * ce_y).sum() / mask.sum()).backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_no_answer_tokens_gives_zero_not_nan():
    logits = torch.randn(2, 5, 7, requires_grad=True)
    labels = torch.full((2, 5), -100)
    loss = satimp_loss(logits, labels)
    loss.backward()
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    assert torch.all(logits.grad == 0)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ConfigError, match=r"\(2, 5, 7\).*\(2, 6\)"):
        satimp_loss(torch.randn(2, 5, 7), torch.zeros(2, 6, dtype=torch.long))


def test_negative_exponent_rejected_with_range():
    with pytest.raises(ConfigError, match=r"beta1=-1.0.*valid"):
        satimp_loss(torch.randn(1, 3, 4), torch.zeros(1, 3, dtype=torch.long), beta1=-1.0)
