"""Parity with the SatImp reference (tmlr-group/SatImp) and open-unlearning, from their definitions.

Each reference below is written here from the definition (README's fidelity table), not from this
package: float64, length-500 sequences, value and gradient, several hyper-parameter values.
"""

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

from unlearn.losses import build_method, shift_mask, token_ce, token_kl

B, T, V = 3, 501, 8  # 500 positions after the causal shift


@pytest.fixture(scope="module")
def long_batch():
    g = torch.Generator().manual_seed(500)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 1.5
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :20] = -100            # prompt
    labels[1, 300:] = -100           # padding
    ref_logits = logits + 0.4 * torch.randn(B, T, V, generator=g, dtype=torch.float64)
    attention = torch.ones(B, T, dtype=torch.long)
    attention[1, 301:] = 0
    importance = torch.rand(B, T, generator=g) < 0.3  # aligned with labels, as the batches carry it
    return logits, labels, ref_logits, attention, importance


def ref_ce(logits, labels):
    """Per-token CE after the shift, (B, T-1), 0 where ignored (nn.functional.cross_entropy, not this package)."""
    x, y = logits[:, :-1], labels[:, 1:]
    ce = F.cross_entropy(x.reshape(-1, x.shape[-1]), y.reshape(-1), ignore_index=-100, reduction="none")
    return ce.view(y.shape), y != -100


WEIGHTINGS = {
    "satimp": [({"beta1": 5.0, "beta2": 0.1}, lambda p: p**5.0 * (1 - p) ** 0.1),
               ({"beta1": 1.0, "beta2": 1.0}, lambda p: p * (1 - p))],
    "simsat": [({"beta": 0.5}, lambda p: p**0.5), ({"beta": 3.0}, lambda p: p**3.0)],
    "simimp": [({"beta": 0.2}, lambda p: (1 - p) ** 0.2), ({"beta": 2.0}, lambda p: (1 - p) ** 2.0)],
    "wga": [({"beta": 1.0}, lambda p: p)],
    "uniform": [({}, lambda p: torch.ones_like(p))],
}
CASES = [(name, params, f) for name, items in WEIGHTINGS.items() for params, f in items]
CASE_IDS = [f"{n}-{'-'.join(map(str, p.values()))}" for n, p, _ in CASES]


def check(ours_fn, ref_fn, logits, rtol=1e-9):
    """Value and gradient w.r.t. the logits of ``ours_fn(x)`` and ``ref_fn(x)``."""
    x1, x2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours, ref = ours_fn(x1), ref_fn(x2)
    assert float(ours.detach()) == pytest.approx(float(ref.detach()), rel=rtol, abs=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-7, atol=1e-12)


def ours(method, labels, **kw):
    def fn(x):
        ce, mask = token_ce(x, labels)
        return method.forget_term(ce, mask, **kw).loss
    return fn


# ---------------------------------------------------------------- granularity (dataloader_granu.py)
@pytest.mark.parametrize("name,params,f", CASES, ids=CASE_IDS)
def test_token_granularity(long_batch, name, params, f):
    """satimp / simsat_ga, WGA: -(1/N) sum_t f(p_t) CE_t over the answer tokens."""
    logits, labels = long_batch[:2]

    def ref(x):
        ce, mask = ref_ce(x, labels)
        return -(f(torch.exp(-ce.detach())) * ce)[mask].sum() / mask.sum()

    check(ours(build_method(name, **params), labels), ref, logits)


@pytest.mark.parametrize("name,params,f", CASES, ids=CASE_IDS)
def test_instance_granularity(long_batch, name, params, f):
    """instance_*: w_b = f(exp(-sum_t CE_bt)); loss -(1/B) sum_b w_b sum_t CE_bt."""
    logits, labels = long_batch[:2]
    params = {k: v / 50 for k, v in params.items()}  # sequence CE ~ 500 tokens: keep the weights off 0

    def ref(x):
        seq = (ref_ce(x, labels)[0]).sum(1)
        w = f_seq(name, params)(seq.detach())
        return -(w * seq).mean()

    check(ours(build_method(name, granularity="instance", **params), labels), ref, logits)


@pytest.mark.parametrize("name,params,f", CASES, ids=CASE_IDS)
def test_batch_granularity(long_batch, name, params, f):
    """batch_*: w = mean_b f(p_b); loss -(1/B) sum_b w sum_t CE_bt (global batch: see the loop's test)."""
    logits, labels = long_batch[:2]
    params = {k: v / 50 for k, v in params.items()}

    def ref(x):
        seq = (ref_ce(x, labels)[0]).sum(1)
        w = f_seq(name, params)(seq.detach()).mean()
        return -(w * seq).mean()

    check(ours(build_method(name, granularity="batch", **params), labels), ref, logits)


def test_batch_weight_given_for_the_global_batch_is_used(long_batch):
    logits, labels = long_batch[:2]
    ce, mask = token_ce(logits, labels)
    m = build_method("simsat", beta=0.01, granularity="batch")
    parts = m.batch_weight_parts(ce, mask)
    seq = ce.sum(1)
    assert parts.tolist() == pytest.approx([float(torch.exp(-0.01 * seq).sum()), 3.0])
    out = m.forget_term(ce, mask, batch_weight=torch.tensor(0.25)).loss
    assert float(out) == pytest.approx(float(-0.25 * seq.mean()))


def f_seq(name, params):
    """The weighting of a sequence's CE sum S (p = exp(-S)), in the log domain: exp(-S) underflows to 0 for
    S > ~745 in float64 (~103 in the reference's fp32), p^beta does not for small beta."""
    if name == "satimp":
        return lambda S: torch.exp(-params["beta1"] * S) * (-torch.expm1(-S)) ** params["beta2"]
    if name in ("simsat", "wga"):
        return lambda S: torch.exp(-params["beta"] * S)
    if name == "simimp":
        return lambda S: (-torch.expm1(-S)) ** params["beta"]
    return lambda S: torch.ones_like(S)


def ref_group(w_row, g):
    """Weights sorted descending; consecutive groups of g share their mean; the last, partial group last."""
    order = sorted(range(len(w_row)), key=lambda t: -float(w_row[t]))
    out = torch.zeros_like(w_row)
    for start in range(0, len(order), g):
        idx = order[start:start + g]
        out[idx] = w_row[idx].mean()
    return out


def test_group_example_descending():
    w = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]], dtype=torch.float64)
    perm = torch.tensor([3, 0, 4, 1, 2])
    for order in (torch.arange(5), perm):  # the token order does not matter, only the weights'
        ce = -torch.log(w[:, order])
        got = build_method("simsat", beta=1.0, granularity="group", group_size=2).weights(ce, torch.ones_like(ce).bool())
        torch.testing.assert_close(got, torch.tensor([[0.85, 0.85, 0.65, 0.65, 0.5]], dtype=torch.float64)[:, order])


@pytest.mark.parametrize("group_size", [2, 10, 37])
@pytest.mark.parametrize("name,params,f", [CASES[0], CASES[2], CASES[5]], ids=[CASE_IDS[0], CASE_IDS[2], CASE_IDS[5]])
def test_group_granularity(long_batch, name, params, f, group_size):
    """group_*: grouped weights; loss -(1/N) sum over answer tokens of w_group CE (a token mean)."""
    logits, labels = long_batch[:2]

    def ref(x):
        ce, mask = ref_ce(x, labels)
        w = f(torch.exp(-ce.detach()))
        wg = torch.zeros_like(w)
        for b in range(B):
            wg[b, mask[b]] = ref_group(w[b, mask[b]], group_size)
        return -(wg * ce)[mask].sum() / mask.sum()

    check(ours(build_method(name, granularity="group", group_size=group_size, **params), labels), ref, logits)


# ---------------------------------------------------------------- hard sampling (dataloader_hardsampling.py)
def ref_topk(ce_row, k):
    """Reference ga_topk: CE strictly greater than the (1 - k)-quantile."""
    return ce_row > torch.quantile(ce_row, 1 - k)


def ref_bottomk_h(ce_row, h):
    """Reference ga_bottomk with its parameter h: CE strictly below the (1 - h)-quantile."""
    return ce_row < torch.quantile(ce_row, 1 - h)


KS = [round(0.1 * i, 1) for i in range(1, 10)]


def rows_of_every_length(max_n=40, seed=0):
    """Row n-1 has n distinct CE values (n = 1..max_n) at random positions, the rest masked."""
    g = torch.Generator().manual_seed(seed)
    ce = torch.rand(max_n, max_n + 5, generator=g, dtype=torch.float64) * 5
    mask = torch.zeros_like(ce, dtype=torch.bool)
    for n in range(1, max_n + 1):
        mask[n - 1, torch.randperm(max_n + 5, generator=g)[:n]] = True
    return ce * mask, mask


@pytest.mark.parametrize("k", KS)
def test_topk_bottomk_selection_follows_the_quantile_rule(k):
    ce, mask = rows_of_every_length()
    top = build_method("uniform", sampling="topk", k=k).weights(ce, mask)
    bottom = build_method("uniform", sampling="bottomk", k=k).weights(ce, mask)
    bottom_h = build_method("uniform", sampling="bottomk", k=1 - k).weights(ce, mask)  # the reference's h = k
    for b in range(ce.shape[0]):
        n, row = b + 1, ce[b][mask[b]]
        assert top[b][mask[b]].bool().tolist() == ref_topk(row, k).tolist()
        assert bottom[b][mask[b]].bool().tolist() == (row < torch.quantile(row, k)).tolist()
        # the mapping to the reference's bottom-k parameter: h = 1 - k (k = 1 - h, exactly as floats)
        assert bottom_h[b][mask[b]].bool().tolist() == ref_bottomk_h(row, k).tolist()
        assert not top[b][~mask[b]].any() and not bottom[b][~mask[b]].any()
        # distinct values, in exact arithmetic: top-k keeps n - 1 - floor((1 - k)(n - 1)) ~ ceil(k (n - 1)), none
        # when n = 1; bottom-k ceil(k (n - 1)). Where the quantile's position is an integer, float rounding of
        # the position may count the value at it as well.
        top_pos, bottom_pos = (1 - Fraction(str(k))) * (n - 1), Fraction(str(k)) * (n - 1)
        top_n = n - 1 - math.floor(top_pos)
        assert int(top[b].sum()) in ({top_n} if top_pos.denominator > 1 else {top_n, top_n + 1})
        bottom_n = math.ceil(bottom_pos)
        assert int(bottom[b].sum()) in ({bottom_n} if bottom_pos.denominator > 1 else {bottom_n, bottom_n + 1})
        if n == 1:
            assert top[b].sum() == 0 and bottom[b].sum() == 0


@pytest.mark.parametrize("s", [1.0, 0.7, 0.15])
@pytest.mark.parametrize("k", KS)
def test_random_selection_floor_k_n_get_s(k, s):
    ce, mask = rows_of_every_length()
    w = build_method("uniform", sampling="random", k=k, s=s).weights(ce, mask, torch.Generator().manual_seed(1))
    for b in range(ce.shape[0]):
        n, row = b + 1, w[b][mask[b]]
        chosen = sum(1 for v in row.tolist() if v == pytest.approx(s))
        assert chosen == math.floor(k * n)
        assert all(v == pytest.approx(s) or v == pytest.approx(1 - s) for v in row.tolist())  # fractional s kept
        assert not w[b][~mask[b]].any()


def test_random_selection_is_uniform_over_tokens():
    ce, mask = torch.ones(1, 10, dtype=torch.float64), torch.ones(1, 10, dtype=torch.bool)
    m = build_method("uniform", sampling="random", k=0.3, s=1.0)
    counts = sum(m.weights(ce, mask, torch.Generator().manual_seed(i)) for i in range(200))[0]
    assert counts.sum() == 600 and counts.min() >= 30 and counts.max() <= 90  # expected 60 each (sd ~ 6.5)


@pytest.mark.parametrize("k", [0.15, 0.5, 0.9])
@pytest.mark.parametrize("sampling", ["topk", "bottomk"])
def test_hard_sampling_ga_sum_reduction(long_batch, sampling, k):
    """ga_topk / ga_bottomk (h = 1 - k): -sum of the kept tokens' CE, no division (method.reduction=sum)."""
    logits, labels = long_batch[:2]

    def ref(x):
        ce, mask = ref_ce(x, labels)
        keep = torch.zeros_like(mask)
        for b in range(B):
            row = ce[b, mask[b]].detach()
            keep[b, mask[b]] = ref_topk(row, k) if sampling == "topk" else ref_bottomk_h(row, 1 - k)
        return -(keep * ce).sum()

    check(ours(build_method("uniform", sampling=sampling, k=k, reduction="sum"), labels), ref, logits)


def test_hard_sampling_gd_sum_reduction(long_batch):
    """gd_topk: -sum of kept forget CE + sum of retain CE (both sums)."""
    logits, labels = long_batch[:2]
    r_logits, r_labels = logits.flip(0), labels.roll(1, 0)
    m = build_method("uniform", sampling="topk", k=0.15, objective="gd", reduction="sum")

    def fn(x):
        ce, mask = token_ce(x, labels)
        rce, rmask = token_ce(r_logits, r_labels)
        return m(ce, mask, retain_ce=rce, retain_mask=rmask).loss

    def ref(x):
        ce, mask = ref_ce(x, labels)
        keep = torch.zeros_like(mask)
        for b in range(B):
            keep[b, mask[b]] = ref_topk(ce[b, mask[b]].detach(), 0.15)
        return -(keep * ce).sum() + ref_ce(r_logits, r_labels)[0].sum()

    check(fn, ref, logits)


@pytest.mark.parametrize("npo_beta", [0.1, 0.5])
@pytest.mark.parametrize("sampling", ["topk", "bottomk"])
def test_hard_sampling_npo_per_sequence_log_ratios(long_batch, sampling, npo_beta):
    """npo_topk: the kept tokens' log-ratio *per sequence* (the reference pools the batch: not reproduced)."""
    logits, labels, ref_logits = long_batch[:3]
    r_ce, _ = ref_ce(ref_logits, labels)

    def ref(x):
        ce, mask = ref_ce(x, labels)
        vals = []
        for b in range(B):
            keep = torch.zeros_like(mask[b])
            keep[mask[b]] = ref_topk(ce[b, mask[b]].detach(), 0.3) if sampling == "topk" \
                else ref_bottomk_h(ce[b, mask[b]].detach(), 0.7)
            neg_log_ratio = (keep * (ce[b] - r_ce[b])).sum()
            vals.append(-F.logsigmoid(npo_beta * neg_log_ratio) * 2 / npo_beta)
        return torch.stack(vals).mean()

    k = 0.3 if sampling == "topk" else 1 - 0.7  # bottom-k: the reference's h = 0.7
    m = build_method("uniform", sampling=sampling, k=k, objective="npo", npo_beta=npo_beta)
    check(ours(m, labels, ref_ce=r_ce), ref, logits)


# ---------------------------------------------------------------- objectives and the retain term
@pytest.mark.parametrize("npo_beta", [0.05, 0.2, 1.0])
@pytest.mark.parametrize("name,params,f", [CASES[0], CASES[7]], ids=[CASE_IDS[0], CASE_IDS[7]])
def test_npo(long_batch, name, params, f, npo_beta):
    """npo: -(2/b) mean_b logsigmoid(b (sum_t CE - sum_t CE_ref)) on weighted tokens."""
    logits, labels, ref_logits = long_batch[:3]
    r_ce, _ = ref_ce(ref_logits, labels)

    def ref(x):
        ce, mask = ref_ce(x, labels)
        w = f(torch.exp(-ce.detach())) * mask
        neg = (w * (ce - r_ce)).sum(1)
        return (-F.logsigmoid(npo_beta * neg) * 2 / npo_beta).mean()

    check(ours(build_method(name, objective="npo", npo_beta=npo_beta, **params), labels, ref_ce=r_ce), ref, logits)


@pytest.mark.parametrize("npo_beta,margin", [(2.5, 0.0), (1.0, 0.5), (4.0, 2.0)])
def test_simnpo_margin_is_beta_times_theirs(long_batch, npo_beta, margin):
    """open-unlearning / reference SimNPO: -(2/b) logsigmoid(b (mean CE - margin)); here delta = b * margin."""
    logits, labels = long_batch[:2]

    def ref(x):
        ce, mask = ref_ce(x, labels)
        mean_ce = ce.sum(1) / mask.sum(1)
        return (-F.logsigmoid(npo_beta * (mean_ce - margin)) * 2 / npo_beta).mean()

    m = build_method("uniform", objective="simnpo", npo_beta=npo_beta, delta=npo_beta * margin, alpha=0.0)
    check(ours(m, labels), ref, logits)


def ref_kl(x, ref_logits, attention):
    """kl_div(log_softmax(current), log_softmax(ref), log_target=True) at each attended position, mean over them."""
    per = F.kl_div(F.log_softmax(x, -1), F.log_softmax(ref_logits, -1), reduction="none", log_target=True).sum(-1)
    return per[attention.bool()].mean()


def test_kl_matches_torch_kl_div(long_batch):
    logits, _, ref_logits, attention, _ = long_batch
    full = torch.ones_like(attention)
    # with every position attended: the reference's own batchmean over (B*T) rows
    batchmean = F.kl_div(F.log_softmax(logits, -1).view(-1, V), F.log_softmax(ref_logits, -1).view(-1, V),
                         reduction="batchmean", log_target=True)
    assert float(token_kl(logits, ref_logits, full).mean()) == pytest.approx(float(batchmean), rel=1e-12)
    m = build_method("uniform", objective="kl", alpha=1.0)
    check(lambda x: m.retain_term(kl=token_kl(x, ref_logits, attention), mask=attention).loss,
          lambda x: ref_kl(x, ref_logits, attention), logits)


@pytest.mark.parametrize("alpha,npo_beta", [(1.0, 0.1), (0.3, 0.5)])
def test_npo_kl(long_batch, alpha, npo_beta):
    """npo_KL: NPO forget term + alpha * KL(ref || current) on the retain batch (coefficients gamma, alpha)."""
    logits, labels, ref_logits, attention, _ = long_batch
    f_logits = logits.flip(1)
    r_ce, _ = ref_ce(ref_logits, labels)
    m = build_method("uniform", objective="npo", retain="kl", npo_beta=npo_beta, alpha=alpha, gamma=2.0)

    def fn(x):
        ce, mask = token_ce(x + f_logits, labels)
        return m(ce, mask, ref_ce=r_ce, retain_kl=token_kl(x, ref_logits, attention), retain_mask=attention).loss

    def ref(x):
        ce, mask = ref_ce(x + f_logits, labels)
        npo = (-F.logsigmoid(npo_beta * (ce - r_ce).sum(1)) * 2 / npo_beta).mean()
        return 2.0 * npo + alpha * ref_kl(x, ref_logits, attention)

    check(fn, ref, logits)


@pytest.mark.parametrize("objective", ["ga", "simnpo"])
def test_weighted_forget_plus_kl(long_batch, objective):
    logits, labels, ref_logits, attention, _ = long_batch
    m = build_method("satimp", objective=objective, retain="kl", alpha=0.5)
    ce, mask = token_ce(logits, labels)
    kl = token_kl(logits, ref_logits, attention)
    out = m(ce, mask, retain_kl=kl, retain_mask=attention).loss
    expected = m.forget_term(ce, mask).loss + 0.5 * ref_kl(logits, ref_logits, attention)
    assert float(out) == pytest.approx(float(expected), rel=1e-12)


# ---------------------------------------------------------------- importance (dataloader_imp.py)
@pytest.mark.parametrize("s", [1.0, 0.8, 0.3])
@pytest.mark.parametrize("granularity", ["token", "instance"])
def test_importance_s_and_one_minus_s_on_the_shifted_mask(long_batch, s, granularity):
    """Key tokens weighted s, the others 1 - s; the (B, T) mask is shifted like the labels."""
    logits, labels, _, _, importance = long_batch
    m = build_method("simsat", beta=0.01 if granularity == "instance" else 1.0, granularity=granularity,
                     importance=True, s=s)
    key = importance[:, 1:]  # position t of the CE predicts token t + 1

    def ref(x):
        ce, mask = ref_ce(x, labels)
        factor = torch.where(key, s, 1 - s) * mask
        if granularity == "token":
            return -(torch.exp(-ce.detach()) * factor * ce).sum() / mask.sum()
        w = torch.exp(-0.01 * ce.detach().sum(1, keepdim=True))
        return -(w * factor * ce).sum() / B

    check(ours(m, labels, importance=shift_mask(importance)), ref, logits)


def test_importance_s1_is_only_key_tokens_with_npo(long_batch):
    """att_ variants with NPO: each sequence's log-ratio over its key tokens only."""
    logits, labels, ref_logits, _, importance = long_batch
    r_ce, _ = ref_ce(ref_logits, labels)
    key = shift_mask(importance)

    def ref(x):
        ce, mask = ref_ce(x, labels)
        neg = ((ce - r_ce) * (key & mask)).sum(1)
        return (-F.logsigmoid(0.5 * neg) * 2 / 0.5).mean()

    m = build_method("uniform", objective="npo", npo_beta=0.5, importance=True)
    check(ours(m, labels, ref_ce=r_ce, importance=key), ref, logits)


def test_shift_mask_aligns_with_shifted_labels():
    labels = torch.tensor([[-100, -100, 5, 6, 7, -100]])
    importance = torch.tensor([[False, False, False, True, False, False]])  # the key token is id 6 at t = 3
    _, mask = token_ce(torch.zeros(1, 6, 9), labels)
    shifted = shift_mask(importance)
    assert shifted.shape == mask.shape
    assert shifted.nonzero().tolist() == [[0, 2]]  # CE at position 2 predicts token 3
    assert mask[0, 2]
