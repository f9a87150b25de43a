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
    idx = [t for t in range(len(ce_row)) if mask_row[t]]
    ws = sorted(((satimp_w(float(ce_row[t]), 1.0, 1.0), t) for t in idx), key=lambda x: x[0])
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
    idx = [t for t in range(len(ce_row)) if mask_row[t]]
    n = math.ceil(len(idx) * k)
    ranked = sorted(idx, key=lambda t: float(ce_row[t]), reverse=lowest_likelihood)
    return set(ranked[:n])


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
        assert int((w1[b] > 0.5).sum()) == math.ceil(0.5 * n)
    others = [m.weights(ce, mask, torch.Generator().manual_seed(s)) for s in range(4, 10)]
    assert any(not torch.equal(w1, o) for o in others)


def test_random_sampling_requires_generator(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    with pytest.raises(ConfigError, match="Generator"):
        build_method("uniform", sampling="random").weights(ce, mask)


def test_importance_mask_restricts_counted_tokens(batch):
    logits, labels = batch
    ce, mask = naive_ce(logits, labels)
    importance = torch.zeros_like(mask)
    importance[0, 2:5] = True
    out = build_method("uniform", importance=True).forget_term(ce, mask, importance=importance)
    counted = mask & importance
    assert float(out.loss) == pytest.approx(float(-(ce[counted]).mean()))
    with pytest.raises(ConfigError, match="importance"):
        build_method("uniform", importance=True).forget_term(ce, mask)


@pytest.mark.parametrize("kwargs,match", [
    ({"sampling": "topk", "k": 0.0}, r"k=0.0.*\(0.0, 1.0\]"),
    ({"sampling": "topk", "k": 1.5}, r"k=1.5"),
    ({"granularity": "group", "group_size": 0}, r"group_size=0.*>= 1"),
    ({"sampling": "random", "s": 2.0}, r"s=2.0"),
])
def test_bad_ranges_name_parameter_and_range(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        build_method("uniform", **kwargs)
