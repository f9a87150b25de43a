import math

import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.losses import build_method

from .conftest import naive_ce


def satimp_w(ce, b1=5.0, b2=0.1):
    p = math.exp(-ce)
    return p**b1 * (1 - p) ** b2


def test_instance_weight_from_summed_ce(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    w = build_method("simsat", beta=0.05, granularity="instance").weights(ce, mask)
    for b in range(ce.shape[0]):
        if mask[b].any():
            expected = math.exp(-0.05 * float(ce[b][mask[b]].sum()))
            assert torch.allclose(w[b][mask[b]], torch.tensor(expected, dtype=w.dtype))
        assert torch.all(w[b][~mask[b]] == 0)


def test_batch_weight_is_mean_of_instance_weights(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    w = build_method("simsat", beta=0.05, granularity="batch").weights(ce, mask)
    inst = [math.exp(-0.05 * float(ce[b][mask[b]].sum())) for b in range(ce.shape[0]) if mask[b].any()]
    assert torch.allclose(w[mask], torch.tensor(sum(inst) / len(inst), dtype=w.dtype))
    assert torch.all(w[~mask] == 0)


def naive_group(ce_row, mask_row, g):
    """Weights sorted in descending order; consecutive groups of g share their mean (the last is partial)."""
    idx = [t for t in range(len(ce_row)) if mask_row[t]]
    ws = sorted(((satimp_w(float(ce_row[t]), 1.0, 1.0), t) for t in idx), key=lambda x: -x[0])
    out = [0.0] * len(ce_row)
    for start in range(0, len(ws), g):
        grp = ws[start:start + g]
        mean = sum(x for x, _ in grp) / len(grp)
        for _, t in grp:
            out[t] = mean
    return out


@pytest.mark.parametrize("group_size", [1, 2, 3, 100])
@pytest.mark.parametrize("T", [5, 17, 600])  # any length, unlike the seed's hard-coded 499
def test_group_means_match_reference(group_size, T):
    g = torch.Generator().manual_seed(T)
    ce = torch.rand(3, T, generator=g, dtype=torch.float64) * 4
    mask = torch.rand(3, T, generator=g) > 0.3
    w = build_method("satimp", beta1=1.0, beta2=1.0, granularity="group", group_size=group_size).weights(ce, mask)
    for b in range(3):
        ref = torch.tensor(naive_group(ce[b], mask[b], group_size), dtype=w.dtype)
        torch.testing.assert_close(w[b], ref)


def test_group_size_one_equals_token(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    a = build_method("satimp", granularity="group", group_size=1).weights(ce, mask)
    b = build_method("satimp").weights(ce, mask)
    torch.testing.assert_close(a, b)


def naive_keep(ce_row, mask_row, k, lowest_likelihood):
    """top-k: CE strictly above the (1-k)-quantile of the row's answer tokens; bottom-k: strictly below the k-quantile."""
    idx = [t for t in range(len(ce_row)) if mask_row[t]]
    if not idx:
        return set()
    thr = float(torch.quantile(ce_row[idx], 1 - k if lowest_likelihood else k))
    return {t for t in idx if (float(ce_row[t]) > thr if lowest_likelihood else float(ce_row[t]) < thr)}


@pytest.mark.parametrize("sampling,lowest", [("topk", True), ("bottomk", False)])
@pytest.mark.parametrize("k", [0.25, 0.5, 1.0])
def test_topk_bottomk_keep_the_right_tokens(batch, sampling, lowest, k):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    w = build_method("uniform", sampling=sampling, k=k).weights(ce, mask)
    for b in range(ce.shape[0]):
        kept = set(torch.nonzero(w[b]).flatten().tolist())
        assert kept == naive_keep(ce[b], mask[b], k, lowest)


def test_random_sampling_seeded_and_weighted(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    m = build_method("uniform", sampling="random", k=0.5, s=0.9)
    w1 = m.weights(ce, mask, torch.Generator().manual_seed(3))
    w2 = m.weights(ce, mask, torch.Generator().manual_seed(3))
    torch.testing.assert_close(w1, w2)
    assert all(v == pytest.approx(0.9) or v == pytest.approx(0.1) for v in w1[mask].tolist())
    for b in range(ce.shape[0]):
        n = int(mask[b].sum())
        assert int((w1[b] > 0.5).sum()) == math.floor(0.5 * n)
    others = [m.weights(ce, mask, torch.Generator().manual_seed(s)) for s in range(4, 10)]
    assert any(not torch.equal(w1, o) for o in others)


def test_random_sampling_requires_generator(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    with pytest.raises(ConfigError, match="Generator"):
        build_method("uniform", sampling="random").weights(ce, mask)


def test_importance_weights_key_tokens_s_and_the_others_one_minus_s(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    importance = torch.zeros_like(mask)
    importance[0, 2:5] = True
    key = mask & importance
    # s = 1 (the default): only key tokens carry a loss, normalised by the answer-token count
    out = build_method("uniform", importance=True).forget_term(ce, mask, importance=importance)
    assert float(out.loss) == pytest.approx(float(-ce[key].sum() / mask.sum()))
    out = build_method("uniform", importance=True, s=0.8).forget_term(ce, mask, importance=importance)
    assert float(out.loss) == pytest.approx(float(-(0.8 * ce[key].sum() + 0.2 * ce[mask & ~importance].sum()) / mask.sum()))
    with pytest.raises(ConfigError, match="importance"):
        build_method("uniform", importance=True).forget_term(ce, mask)
    with pytest.raises(ConfigError, match=r"importance mask shape \(4, 9\) != mask shape \(4, 8\).*importance\[:, 1:\]"):
        build_method("uniform", importance=True).forget_term(ce, mask, importance=torch.zeros(4, 9, dtype=torch.bool))


@pytest.mark.parametrize("kwargs,match", [
    ({"sampling": "topk", "k": 0.0}, r"k=0.0.*\(0.0, 1.0\]"),
    ({"sampling": "topk", "k": 1.5}, r"k=1.5"),
    ({"granularity": "group", "group_size": 0}, r"group_size=0.*>= 1"),
    ({"sampling": "random", "s": 2.0}, r"s=2.0"),
])
def test_bad_ranges_name_parameter_and_range(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_method("uniform", **kwargs)
