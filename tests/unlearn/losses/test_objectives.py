import pytest
import torch
import torch.nn.functional as F

from unlearn.losses import build_method, token_kl

from .conftest import naive_ce


def test_gd_adds_alpha_times_retain_nll(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    r_logits = logits.flip(0)
    r_labels = labels.roll(1, 0)
    rce, rmask = naive_ce(r_logits, r_labels)
    out = build_method("satimp", objective="gd", alpha=0.7, gamma=2.0)(ce, mask, retain_ce=rce, retain_mask=rmask)
    p = torch.exp(-ce)
    forget = -2.0 * (p**5 * (1 - p) ** 0.1 * ce)[mask].mean()
    assert float(out.loss) == pytest.approx(float(forget + 0.7 * rce[rmask].mean()), rel=1e-6)
    assert "retain_ce" in out.stats


def test_kl_is_reference_to_current_at_every_attended_position(batch):
    """KL(ref || current) over the vocabulary at each attended position, prompt included, no label shift."""
    logits, labels = batch
    ref_logits = logits + 0.3 * torch.randn_like(logits)
    attention = torch.ones(labels.shape, dtype=torch.long)
    attention[1, 7:] = 0  # padding
    x = logits.clone().requires_grad_(True)
    kl = token_kl(x, ref_logits, attention)
    assert kl.shape == labels.shape
    manual = torch.zeros(labels.shape, dtype=logits.dtype)
    for b, t in attention.nonzero().tolist():
        lp = F.log_softmax(logits[b, t], -1)
        lq = F.log_softmax(ref_logits[b, t], -1)
        manual[b, t] = (lq.exp() * (lq - lp)).sum()
    torch.testing.assert_close(kl.detach(), manual)
    ce, fmask = naive_ce(x, labels)
    out = build_method("uniform", objective="kl", alpha=0.5)(ce, fmask, retain_kl=kl, retain_mask=attention)
    assert float(out.loss) == pytest.approx(float(-ce[fmask].mean() + 0.5 * manual[attention.bool()].mean()), rel=1e-6)
    assert torch.autograd.gradcheck(lambda z: token_kl(z, ref_logits, attention).sum(), (logits.clone().requires_grad_(True),))


def test_npo_matches_reference_formula(batch):
    logits, labels = batch
    ref_ce, _ = naive_ce(logits + 0.5, labels.roll(0))
    ref_ce, mask = naive_ce(logits * 0.8, labels)
    x = logits.clone().requires_grad_(True)
    ce, _ = naive_ce(x, labels)
    out = build_method("uniform", objective="npo", npo_beta=0.5, alpha=0.0).forget_term(ce, mask, ref_ce=ref_ce)
    vals = []
    for b in range(ce.shape[0]):
        if mask[b].any():
            log_ratio = float((ref_ce[b] - ce[b])[mask[b]].sum())
            vals.append(-(2 / 0.5) * F.logsigmoid(torch.tensor(-0.5 * log_ratio)))
    assert float(out.loss) == pytest.approx(float(sum(vals) / len(vals)), rel=1e-6)
    # gradcheck of the NPO term w.r.t. logits (uniform weights: no detached dependence)
    f = lambda z: build_method("uniform", objective="npo").forget_term(naive_ce(z, labels)[0], mask, ref_ce=ref_ce).loss
    assert torch.autograd.gradcheck(f, (logits.clone().requires_grad_(True),))


def test_simnpo_matches_reference_formula(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    out = build_method("simsat", beta=1.0, objective="simnpo", npo_beta=2.5, delta=0.3).forget_term(ce, mask)
    p = torch.exp(-ce)
    vals = []
    for b in range(ce.shape[0]):
        if mask[b].any():
            m = float((p[b] * ce[b])[mask[b]].sum()) / int(mask[b].sum())
            vals.append(-(2 / 2.5) * F.logsigmoid(torch.tensor(2.5 * m - 0.3)))
    assert float(out.loss) == pytest.approx(float(sum(vals) / len(vals)), rel=1e-6)


def test_npo_requires_reference(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    with pytest.raises(ValueError, match="ref_ce"):
        build_method("uniform", objective="npo").forget_term(ce, mask)


@pytest.mark.parametrize("objective", ["ga", "gd", "kl", "npo", "simnpo"])
def test_empty_batch_is_zero_not_nan(objective):
    ce = torch.zeros(2, 4, requires_grad=True)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    m = build_method("satimp", objective=objective)
    loss = m(ce, mask, ref_ce=torch.zeros(2, 4), retain_ce=torch.zeros(2, 4), retain_kl=torch.zeros(2, 4),
             retain_mask=mask).loss
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(ce.grad == 0)
