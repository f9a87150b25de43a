import math
import zlib

import numpy as np
import pytest
import torch

from unlearn.data.formatting import EncodedQA
from unlearn.errors import ConfigError, UnknownNameError
from unlearn.metrics import mia
from unlearn.metrics.mia import (
    ATTACKS,
    SequenceStats,
    attack_auc,
    delong_interval,
    loss_score,
    mia_metrics,
    mink_score,
    minkpp_score,
    per_sequence,
    privleak,
    score_examples,
    token_stats,
    zlib_score,
)


@pytest.fixture
def seed():
    torch.manual_seed(0)
    return 0


def random_batch(seed: int, B: int = 3, T: int = 10, V: int = 7, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, V, generator=g, dtype=torch.float64) * 3).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :3] = -100      # prompt
    labels[1, 8:] = -100      # padding
    labels[2, 4:] = -100      # a single scored token
    return logits, labels


def naive_stats(logits, labels):
    """Per scored position (b, t): log p(label), mean and variance of log p(v), from an explicit softmax."""
    out = {}
    B, T, V = logits.shape
    for b in range(B):
        for t in range(T - 1):
            y = int(labels[b, t + 1])
            if y == -100:
                continue
            x = [float(v) for v in logits[b, t]]
            z = sum(math.exp(v) for v in x)
            p = [math.exp(v) / z for v in x]
            logq = [math.log(q) for q in p]
            mu = sum(q * lq for q, lq in zip(p, logq))
            var = sum(q * (lq - mu) ** 2 for q, lq in zip(p, logq))
            out[b, t] = (logq[y], mu, var)
    return out


def naive_rows(logits, labels):
    """Each row's (logp, mu, var) lists over its scored positions, in order."""
    stats = naive_stats(logits, labels)
    rows = []
    for b in range(logits.shape[0]):
        cols = sorted(t for bb, t in stats if bb == b)
        rows.append(tuple([stats[b, t][i] for t in cols] for i in range(3)))
    return rows


def naive_lowest_mean(values, k):
    n = max(1, math.floor(len(values) * k))
    return sum(sorted(values)[:n]) / n


def naive_mink(logp, k):
    kept = logp[:-1]  # open-unlearning leaves out the last scored token
    return 0.0 if not kept else -naive_lowest_mean(kept, k)


def naive_minkpp(logp, mu, var, k):
    z = [(lp - m) / math.sqrt(max(v, 1e-6)) for lp, m, v in zip(logp, mu, var)][:-1]
    return 0.0 if not z else -naive_lowest_mean(z, k)


def naive_auc(forget, holdout):
    """Share of (forget, holdout) pairs where the holdout scores higher; ties count half."""
    wins = sum(1.0 if h > f else 0.5 if h == f else 0.0 for f in forget for h in holdout)
    return wins / (len(forget) * len(holdout))


def seqs_from_batch(seed, **kw):
    logits, labels = random_batch(seed, **kw)
    return per_sequence(token_stats(logits, labels)), naive_rows(logits.double(), labels)


# --- token_stats / per_sequence ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_token_stats_match_explicit_softmax(dtype):
    logits, labels = random_batch(0, dtype=dtype)
    stats = token_stats(logits, labels)
    ref = naive_stats(logits.double(), labels)  # the reference sees the same (rounded) logits
    assert stats.logp.dtype == stats.mu.dtype == stats.sigma.dtype == torch.float32
    assert stats.logp.shape == (3, 9) and stats.valid.dtype == torch.bool
    assert set(map(tuple, stats.valid.nonzero().tolist())) == set(ref)
    for (b, t), (lp, mu, var) in ref.items():
        assert float(stats.logp[b, t]) == pytest.approx(lp, abs=1e-5)
        assert float(stats.mu[b, t]) == pytest.approx(mu, abs=1e-5)
        assert float(stats.sigma[b, t]) == pytest.approx(math.sqrt(var), abs=1e-5)


def test_token_stats_chunked_equals_whole(monkeypatch):
    logits, labels = random_batch(1)
    whole = token_stats(logits, labels)
    monkeypatch.setattr(mia, "_CHUNK_ELEMS", 2 * logits.shape[-1])  # two rows at a time
    chunked = token_stats(logits, labels)
    for name in ("logp", "mu", "sigma", "valid"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name))


def test_token_stats_finite_with_masked_vocab_entries():
    logits, labels = random_batch(2)
    logits[..., 0] = -math.inf
    labels[labels == 0] = 1
    stats = token_stats(logits, labels)
    for t in (stats.logp, stats.mu, stats.sigma):
        assert torch.isfinite(t[stats.valid]).all()


def test_token_stats_shape_mismatch_raises():
    with pytest.raises(ConfigError, match=r"\(2, 5\)"):
        token_stats(torch.zeros(2, 4, 3), torch.zeros(2, 5, dtype=torch.long))


def test_per_sequence_keeps_scored_positions_in_order():
    seqs, ref = seqs_from_batch(3)
    assert [len(s) for s in seqs] == [len(r[0]) for r in ref] == [7, 5, 1]
    for seq, (lp, mu, var) in zip(seqs, ref):
        np.testing.assert_allclose(seq.logp, lp, atol=1e-5)
        np.testing.assert_allclose(seq.mu, mu, atol=1e-5)
        np.testing.assert_allclose(seq.sigma, np.sqrt(var), atol=1e-5)


# --- attack scores ------------------------------------------------------------------------------------


def test_loss_and_zlib_scores_match_reference():
    seqs, ref = seqs_from_batch(4)
    text = "The author was born in Paris in 1956. " * 3
    for seq, (lp, _, _) in zip(seqs, ref):
        loss = -sum(lp) / len(lp)
        assert loss_score(seq) == pytest.approx(loss, abs=1e-5)
        assert zlib_score(seq, text) == pytest.approx(loss / len(zlib.compress(text.encode("utf-8"))), abs=1e-6)
    # non-ASCII text is measured in UTF-8 bytes
    accented = "é" * 40
    assert zlib_score(seqs[0], accented) == pytest.approx(loss_score(seqs[0]) / len(zlib.compress(accented.encode())))


def test_loss_score_without_tokens_raises():
    empty = SequenceStats(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))
    with pytest.raises(ConfigError, match="none"):
        loss_score(empty)


@pytest.mark.parametrize("k", [0.05, 0.2, 0.4, 0.5, 0.7, 1.0])
def test_mink_and_minkpp_match_reference(k):
    seqs, ref = seqs_from_batch(5, T=14, V=9)
    for seq, (lp, mu, var) in zip(seqs, ref):
        assert mink_score(seq, k) == pytest.approx(naive_mink(lp, k), abs=1e-5)
        assert minkpp_score(seq, k) == pytest.approx(naive_minkpp(lp, mu, var, k), abs=1e-4)


def test_mink_rounds_down_and_keeps_at_least_one():
    # 6 tokens, the last left out: 5 kept values; k=0.5 keeps int(2.5) = 2, k=0.1 keeps max(1, 0) = 1
    seq = SequenceStats(np.array([-1.0, -5.0, -2.0, -4.0, -3.0, -9.0], np.float32), np.zeros(6, np.float32),
                        np.ones(6, np.float32))
    assert mink_score(seq, 0.5) == pytest.approx(4.5)
    assert mink_score(seq, 0.1) == pytest.approx(5.0)
    assert mink_score(seq, 1.0) == pytest.approx(3.0)
    assert minkpp_score(seq, 0.5) == pytest.approx(4.5)  # mu = 0, sigma = 1: z = logp
    one = SequenceStats(seq.logp[:1], seq.mu[:1], seq.sigma[:1])
    assert mink_score(one, 0.4) == 0.0 and minkpp_score(one, 0.4) == 0.0  # nothing left: open-unlearning's 0


def test_minkpp_clamps_the_variance():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])  # near one-hot at t=1
    labels = torch.tensor([[-100, 1, 0]])
    seq = per_sequence(token_stats(logits, labels))[0]
    lp, mu, var = naive_rows(logits.double(), labels)[0]
    assert var[1] < 1e-6
    assert minkpp_score(seq, 1.0) == pytest.approx(naive_minkpp(lp, mu, var, 1.0), rel=1e-4)


@pytest.mark.parametrize("k", [0.0, -0.1, 1.5, math.nan])
def test_bad_k_raises_with_value_and_range(k):
    seq = SequenceStats(np.zeros(3, np.float32), np.zeros(3, np.float32), np.ones(3, np.float32))
    for call in (lambda: mink_score(seq, k), lambda: minkpp_score(seq, k), lambda: mia.MinKParams(k),
                 lambda: mia_metrics([seq], [seq], ["a"], ["b"], k=k)):
        with pytest.raises(ConfigError, match=rf"k={k!r}.*\(0\.0, 1\.0\]"):
            call()


def test_registry_holds_the_four_attacks():
    seqs, _ = seqs_from_batch(6)
    assert ATTACKS.names() == ["loss", "zlib", "min_k", "min_k++"]
    params = ATTACKS.build_params("min_k", {"k": 0.2})
    assert ATTACKS.get("min_k")(seqs[0], "x", params) == mink_score(seqs[0], 0.2)
    assert ATTACKS.get("min_k++")(seqs[0], "x", params) == minkpp_score(seqs[0], 0.2)
    assert ATTACKS.get("zlib")(seqs[0], "abc", None) == zlib_score(seqs[0], "abc")
    assert ATTACKS.get("loss")(seqs[0], "abc", None) == loss_score(seqs[0])
    with pytest.raises(UnknownNameError, match="min_k\\+\\+"):
        ATTACKS.get("mink++")


# --- AUC and privleak ----------------------------------------------------------------------------------


def test_attack_auc_matches_pair_count():
    rng = np.random.default_rng(0)
    forget = rng.integers(0, 6, 9).astype(float)  # ties between and within sets
    holdout = rng.integers(2, 8, 7).astype(float)
    assert attack_auc(forget, holdout) == pytest.approx(naive_auc(forget, holdout))


def test_attack_auc_orientation_is_open_unlearnings():
    # forget has the lower losses (looks like members): AUC 1; the other way round: 0
    assert attack_auc([1.0, 2.0], [3.0, 4.0]) == 1.0
    assert attack_auc([3.0, 4.0], [1.0, 2.0]) == 0.0
    assert attack_auc([1.0, 3.0], [2.0]) == 0.5


@pytest.mark.parametrize("side", ["forget", "holdout"])
def test_attack_auc_empty_side_raises(side):
    args = {"forget": [1.0], "holdout": [2.0]}
    args[side] = []
    with pytest.raises(ConfigError, match=side):
        attack_auc(args["forget"], args["holdout"])


def test_attack_auc_non_finite_raises():
    with pytest.raises(ConfigError, match="holdout.*inf"):
        attack_auc([1.0], [math.inf])


def test_privleak_formula_and_sign():
    assert privleak(0.5, 0.5) == 0.0
    assert privleak(0.73, 0.73) == pytest.approx(0.0, abs=1e-12)  # like the retain model
    # still looks familiar (higher AUC than the retain model): negative, as open-unlearning's privacy.py
    assert privleak(0.8, 0.5) == pytest.approx(((1 - 0.8) - 0.5) / (0.5 + 1e-10) * 100)
    assert privleak(0.8, 0.5) == pytest.approx(-60.0)
    assert privleak(0.3, 0.5) == pytest.approx(40.0)
    assert privleak(0.9, 0.0) == pytest.approx(-90.0)


@pytest.mark.parametrize("retain_auc", [1.0, 1.2, -0.1, math.nan, math.inf])
def test_privleak_bad_retain_auc_raises(retain_auc):
    with pytest.raises(ConfigError, match=rf"retain_auc={retain_auc!r}"):
        privleak(0.5, retain_auc)


def test_privleak_bad_auc_raises():
    with pytest.raises(ConfigError, match="auc=1.5"):
        privleak(1.5, 0.5)


# --- mia_metrics ----------------------------------------------------------------------------------------


def test_mia_metrics_equal_auc_of_each_attack():
    forget, _ = seqs_from_batch(7, B=4)
    holdout, _ = seqs_from_batch(8, B=5)
    ft, ht = [f"forget text {i}" * (i + 1) for i in range(4)], [f"holdout {i}" for i in range(5)]
    out = mia_metrics(forget, holdout, ft, ht)
    assert list(out) == ["mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus"]
    assert out["mia_loss"] == attack_auc([loss_score(s) for s in forget], [loss_score(s) for s in holdout])
    assert out["mia_zlib"] == attack_auc([zlib_score(s, t) for s, t in zip(forget, ft)],
                                         [zlib_score(s, t) for s, t in zip(holdout, ht)])
    assert out["mia_min_k"] == attack_auc([mink_score(s, 0.4) for s in forget],
                                          [mink_score(s, 0.4) for s in holdout])
    assert out["mia_min_k_plus_plus"] == attack_auc([minkpp_score(s, 0.4) for s in forget],
                                                    [minkpp_score(s, 0.4) for s in holdout])
    assert mia_metrics(forget, holdout, ft, ht, k=0.2)["mia_min_k"] == attack_auc(
        [mink_score(s, 0.2) for s in forget], [mink_score(s, 0.2) for s in holdout])


def test_mia_metrics_memorised_forget_set_scores_one():
    def seq(level):
        return SequenceStats(np.full(6, level, np.float32), np.full(6, -2.0, np.float32), np.ones(6, np.float32))

    forget, holdout = [seq(-0.1), seq(-0.2)], [seq(-3.0), seq(-4.0), seq(-2.5)]
    out = mia_metrics(forget, holdout, ["same"] * 2, ["same"] * 3)
    assert out == {"mia_loss": 1.0, "mia_zlib": 1.0, "mia_min_k": 1.0, "mia_min_k_plus_plus": 1.0}


def test_mia_metrics_bad_inputs_raise():
    s = SequenceStats(np.zeros(3, np.float32), np.zeros(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ConfigError, match="forget"):
        mia_metrics([], [s], [], ["a"])
    with pytest.raises(ConfigError, match="holdout"):
        mia_metrics([s], [], ["a"], [])
    with pytest.raises(ConfigError, match="1 sequences but 2 texts"):
        mia_metrics([s], [s], ["a", "b"], ["c"])


# --- score_examples on a tiny model -----------------------------------------------------------------


@pytest.fixture
def tiny_model(seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)
    return LlamaForCausalLM(cfg)


def make_examples(seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for length, prompt in [(5, 2), (11, 4), (3, 1), (8, 3), (9, 1), (6, 5)]:  # order != length order
        ids = torch.randint(1, 50, (length,), generator=g).tolist()
        out.append(EncodedQA(tuple(ids), tuple([-100] * prompt + ids[prompt:]), prompt))
    return out


def test_score_examples_equal_unbatched_forward_in_order(tiny_model):
    model = tiny_model
    model.train()
    model.model.layers[0].mlp.eval()  # a frozen submodule keeps its own mode
    examples = make_examples(0)
    got = score_examples(model, examples, pad_id=0, batch_size=4)
    assert model.training and not model.model.layers[0].mlp.training
    assert model.model.layers[0].self_attn.training
    assert len(got) == len(examples)
    model.eval()
    with torch.no_grad():
        for e, seq in zip(examples, got):
            ids = torch.tensor([e.input_ids])
            ref = per_sequence(token_stats(model(input_ids=ids).logits, torch.tensor([e.labels])))[0]
            assert len(seq) == len(e.input_ids) - e.prompt_len
            for name in ("logp", "mu", "sigma"):
                np.testing.assert_allclose(getattr(seq, name), getattr(ref, name), atol=1e-5)


def test_score_examples_edge_cases(tiny_model):
    assert score_examples(tiny_model, [], pad_id=0, batch_size=2) == []
    with pytest.raises(ConfigError, match="batch_size=0"):
        score_examples(tiny_model, make_examples(1), pad_id=0, batch_size=0)
    one = score_examples(tiny_model, make_examples(1), pad_id=0, batch_size=1)
    many = score_examples(tiny_model, make_examples(1), pad_id=0, batch_size=6)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a.logp, b.logp, atol=1e-5)


# --- DeLong's AUC interval ----------------------------------------------------------------------------------

def _ref_delong(forget: list[float], holdout: list[float], z: float = 1.959963984540054) -> tuple[float, float]:
    """DeLong et al. (1988) written out with loops: structural components V10 (per holdout score) and V01
    (per forget score), S10 and S01 their sample variances, var(AUC) = S10 / m + S01 / n."""
    psi = lambda x, y: 1.0 if x > y else 0.5 if x == y else 0.0
    m, n = len(holdout), len(forget)
    auc = sum(psi(x, y) for x in holdout for y in forget) / (m * n)
    v10 = [sum(psi(x, y) for y in forget) / n for x in holdout]
    v01 = [sum(psi(x, y) for x in holdout) / m for y in forget]
    s10 = sum((v - auc) ** 2 for v in v10) / (m - 1)
    s01 = sum((v - auc) ** 2 for v in v01) / (n - 1)
    se = math.sqrt(s10 / m + s01 / n)
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def test_delong_interval_against_the_papers_formula():
    rng = np.random.default_rng(0)
    forget = rng.normal(0.0, 1.0, 37).round(1).tolist()  # rounded: ties between the sets
    holdout = rng.normal(0.6, 1.0, 41).round(1).tolist()
    lo, hi = delong_interval(forget, holdout)
    ref = _ref_delong(forget, holdout)
    assert lo == pytest.approx(ref[0], abs=1e-12) and hi == pytest.approx(ref[1], abs=1e-12)
    assert lo < attack_auc(forget, holdout) < hi
    # a 90 % interval is narrower, inside the 95 % one
    lo90, hi90 = delong_interval(forget, holdout, 0.9)
    assert lo < lo90 < hi90 < hi


def test_delong_interval_width_follows_the_sample_size():
    """Under the null (both sets from one distribution) the interval's half-width is about 1.96 * the AUC's
    null sd, sqrt((m + n + 1) / (12 m n)): 0.15 for 8 vs 8 texts, 0.04 for 100 vs 100."""
    rng = np.random.default_rng(1)
    for size, sd in ((8, 0.15), (100, 0.041)):
        lo, hi = delong_interval(rng.normal(size=size).tolist(), rng.normal(size=size).tolist())
        assert 1.96 * sd * 0.5 < (hi - lo) / 2 < 1.96 * sd * 1.6, (size, lo, hi)
    # perfectly separated sets: the interval collapses on 1
    assert delong_interval([0.1, 0.2, 0.3], [1.0, 2.0, 3.0]) == (1.0, 1.0)


def test_delong_interval_refuses_too_few_scores():
    with pytest.raises(ConfigError, match="at least 2 scores"):
        delong_interval([0.1], [0.2, 0.3])
    with pytest.raises(ConfigError, match="level"):
        delong_interval([0.1, 0.2], [0.2, 0.3], level=1.0)
