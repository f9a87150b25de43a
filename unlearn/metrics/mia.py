"""Membership-inference attacks (LOSS, zlib, min-k%, min-k%++), their AUC (with DeLong's interval) and MUSE's privleak.

The spec is locuslab/open-unlearning's ``src/evals/metrics/mia/`` and ``src/evals/metrics/privacy.py``.
Its conventions, kept here:

- **Scores are losses**: every attack score is signed so that *higher means less likely a member*
  (open-unlearning's note in ``mia/__init__.py``).
- **AUC**: forget scores are labelled 0 and holdout scores 1 (``mia/utils.py``'s ``mia_auc``), so the AUC is
  ``P(holdout score > forget score)``: 1 when the forget set looks much more familiar than the holdout
  set (not unlearned), 0.5 when the two are alike.
- **min-k% and min-k%++ leave out the last scored token** (open-unlearning's ``tokenwise_logprobs`` and
  ``tokenwise_vocab_logprobs`` in ``src/evals/metrics/utils.py`` drop the prediction of the last labelled
  token, the EOS in QA rows); LOSS and zlib average over every scored token (``evaluate_probability``).
- **k** is the fraction of a sequence's lowest tokens kept, ``max(1, int(n * k))`` of them; every shipped
  config (``configs/eval/{tofu,muse}_metrics/mia_min_k*.yaml``, and so ``privleak.yaml``) sets k=0.4.

Pure functions on per-token statistics (``token_stats``), plus one batched scorer (``score_examples``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from unlearn.data.formatting import IGNORE_INDEX, EncodedQA, collate
from unlearn.errors import ConfigError, NonFiniteScoresError, check_range
from unlearn.metrics.generation import length_batches
from unlearn.registry import Registry

DEFAULT_K = 0.4  # open-unlearning's configs/eval/{tofu,muse}_metrics/mia_min_k*.yaml
MINKPP_MIN_VAR = 1e-6  # open-unlearning's mia/min_k_plus_plus.py clamps the variance here
PRIVLEAK_EPS = 1e-10  # open-unlearning's privacy.py adds it to privleak's denominator

# Metric names (the keys of ``mia_metrics``), open-unlearning's handler names.
MIA_LOSS = "mia_loss"
MIA_ZLIB = "mia_zlib"
MIA_MIN_K = "mia_min_k"
MIA_MIN_K_PLUS_PLUS = "mia_min_k_plus_plus"
METRIC_OF_ATTACK: dict[str, str] = {"loss": MIA_LOSS, "zlib": MIA_ZLIB, "min_k": MIA_MIN_K,
                                    "min_k++": MIA_MIN_K_PLUS_PLUS}

# Scored rows are upcast to fp32 this many elements at a time: the (N, V) rows are never copied whole.
_CHUNK_ELEMS = 1 << 25


@dataclass(frozen=True, eq=False)
class TokenStats:
    """Per-position statistics of a batch, all (B, T-1); values are 0 where ``valid`` is False.

    Attributes:
        logp: fp32 log-probability of label ``t+1`` given the prefix up to ``t``.
        mu: fp32 mean of ``log p(v)`` under ``p`` over the vocabulary (minus the entropy).
        sigma: fp32 standard deviation of ``log p(v)`` under ``p``.
        valid: bool, the position is scored (label ``t+1`` is not -100).
    """

    logp: torch.Tensor
    mu: torch.Tensor
    sigma: torch.Tensor
    valid: torch.Tensor


@dataclass(frozen=True, eq=False)
class SequenceStats:
    """One sequence's scored positions, in order: 1-D fp32 numpy arrays of equal length (N,)."""

    logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    def __len__(self) -> int:
        return int(self.logp.shape[0])


def _row_stats(x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Target log-prob, mean and std of log p(v) of fp32 logit rows ``x`` (n, V)."""
    logq = x - torch.logsumexp(x, dim=-1, keepdim=True)
    p = logq.exp()
    # p == 0 where a logit is -inf: its term is 0, not 0 * inf = NaN
    mu = torch.where(p > 0, p * logq, 0.0).sum(dim=-1)
    # E[(l - mu)^2] rather than open-unlearning's E[l^2] - mu^2: the same value, without cancellation
    var = torch.where(p > 0, p * (logq - mu[:, None]).square(), 0.0).sum(dim=-1)
    return logq.gather(1, target[:, None]).squeeze(1), mu, var.clamp_min(0.0).sqrt()


def token_stats(logits: torch.Tensor, labels: torch.Tensor) -> TokenStats:
    """Per-token statistics that every attack needs, from one forward pass.

    Follows open-unlearning's ``tokenwise_logprobs`` / ``tokenwise_vocab_logprobs``
    (``src/evals/metrics/utils.py``) and the mu/sigma of ``mia/min_k_plus_plus.py``. The scored rows are
    upcast to fp32 in chunks, so no full fp32 copy of them (let alone of the logits) is made.

    Args:
        logits: (B, T, V) model outputs, any float dtype.
        labels: (B, T) token ids, -100 where not scored.

    Returns:
        TokenStats of (B, T-1) tensors (causal shift: position ``t`` predicts label ``t+1``).
    """
    if logits.shape[:2] != labels.shape:
        raise ConfigError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (B, T)")
    logits = logits.detach()
    targets = labels[:, 1:].to(logits.device)
    valid = targets != IGNORE_INDEX
    rows, cols = valid.nonzero(as_tuple=True)
    out = [torch.zeros(valid.shape, dtype=torch.float32, device=logits.device) for _ in range(3)]
    step = max(1, _CHUNK_ELEMS // max(1, logits.shape[-1]))
    for start in range(0, rows.numel(), step):
        r, c = rows[start : start + step], cols[start : start + step]
        for dst, value in zip(out, _row_stats(logits[r, c].float(), targets[r, c])):
            dst[r, c] = value
    return TokenStats(out[0], out[1], out[2], valid)


def per_sequence(stats: TokenStats) -> list[SequenceStats]:
    """Each row's scored positions as numpy arrays (one device-to-host copy for the batch)."""
    logp, mu, sigma, valid = (t.cpu().numpy() for t in (stats.logp, stats.mu, stats.sigma, stats.valid))
    return [SequenceStats(logp[b][valid[b]], mu[b][valid[b]], sigma[b][valid[b]]) for b in range(valid.shape[0])]


def _check_k(k: float) -> None:
    check_range("k", k, low=0.0, high=1.0, low_inclusive=False)


def _lowest_mean(values: np.ndarray, k: float) -> float:
    """Mean of the ``max(1, int(n * k))`` lowest values (open-unlearning's ``mia/min_k.py`` count)."""
    n = max(1, int(len(values) * k))
    return float(np.mean(np.sort(values)[:n], dtype=np.float64))


def loss_score(seq: SequenceStats) -> float:
    """LOSS attack: mean negative log-likelihood of the scored tokens (higher = less likely a member).

    Follows open-unlearning's ``src/evals/metrics/mia/loss.py`` (``avg_loss`` of ``evaluate_probability``).
    """
    if len(seq) == 0:
        raise ConfigError("the LOSS attack needs at least one scored token; got a sequence with none")
    return -float(np.mean(seq.logp, dtype=np.float64))


def zlib_score(seq: SequenceStats, text: str) -> float:
    """zlib attack: ``loss_score`` over the zlib-compressed length in bytes of the UTF-8 ``text``.

    Follows open-unlearning's ``src/evals/metrics/mia/zlib.py``. To match it, ``text`` is the decoded
    scored tokens (labels != -100) with special tokens skipped (its
    ``extract_target_texts_from_processed_data``).
    """
    return loss_score(seq) / len(zlib.compress(text.encode("utf-8")))


def mink_score(seq: SequenceStats, k: float) -> float:
    """min-k% attack: minus the mean of the fraction ``k`` of lowest token log-probs.

    Follows open-unlearning's ``src/evals/metrics/mia/min_k.py``: the last scored token is left out
    (``tokenwise_logprobs``), ``max(1, int(n * k))`` tokens are kept, a sequence with no token left
    scores 0.

    Args:
        seq: one sequence's statistics.
        k: fraction in (0, 1].
    """
    _check_k(k)
    logp = seq.logp[:-1]
    return 0.0 if logp.size == 0 else -_lowest_mean(logp, k)


def minkpp_score(seq: SequenceStats, k: float) -> float:
    """min-k%++ attack: min-k% of ``(logp - mu) / sigma``, each token's log-prob standardised under p.

    Follows open-unlearning's ``src/evals/metrics/mia/min_k_plus_plus.py``: the variance is clamped at
    1e-6 before its square root; tokens and k as in ``mink_score``.

    Args:
        seq: one sequence's statistics.
        k: fraction in (0, 1].
    """
    _check_k(k)
    logp, mu, sigma = seq.logp[:-1], seq.mu[:-1], seq.sigma[:-1]
    if logp.size == 0:
        return 0.0
    std = np.maximum(sigma.astype(np.float64), math.sqrt(MINKPP_MIN_VAR))
    return -_lowest_mean((logp.astype(np.float64) - mu) / std, k)


@dataclass(frozen=True)
class MinKParams:
    """The fraction ``k`` of a sequence's lowest tokens kept by min-k% and min-k%++."""

    k: float = DEFAULT_K

    def __post_init__(self) -> None:
        _check_k(self.k)


# An attack scores one sequence from its statistics, its scored text (zlib) and its params (or None).
AttackFn = Callable[[SequenceStats, str, object], float]
ATTACKS: Registry[AttackFn] = Registry("membership attack")

ATTACKS.register("loss", doc="mean token NLL (open-unlearning mia/loss.py)")(
    lambda seq, text, params: loss_score(seq))
ATTACKS.register("zlib", doc="mean token NLL / zlib bytes of the text (open-unlearning mia/zlib.py)")(
    lambda seq, text, params: zlib_score(seq, text))
ATTACKS.register("min_k", params=MinKParams, doc="min-k% prob (open-unlearning mia/min_k.py)")(
    lambda seq, text, params: mink_score(seq, params.k))
ATTACKS.register("min_k++", params=MinKParams, doc="min-k%++ (open-unlearning mia/min_k_plus_plus.py)")(
    lambda seq, text, params: minkpp_score(seq, params.k))


def attack_scores(name: str, seqs: Sequence[SequenceStats], texts: Sequence[str], *,
                  k: float = DEFAULT_K) -> np.ndarray:
    """Scores (S,) of attack ``name`` on ``seqs``; ``texts`` are their scored texts (used by zlib)."""
    if len(texts) != len(seqs):
        raise ConfigError(f"{len(seqs)} sequences but {len(texts)} texts; give one text per sequence")
    fn = ATTACKS.get(name)
    params = ATTACKS.build_params(name, {"k": k}) if ATTACKS.entry(name).params is not None else None
    return np.array([fn(seq, text, params) for seq, text in zip(seqs, texts)], dtype=np.float64)


def attack_auc(forget_scores: Sequence[float], holdout_scores: Sequence[float]) -> float:
    """ROC AUC of attack scores with forget labelled 0 and holdout 1, as open-unlearning's ``mia_auc``.

    Follows ``src/evals/metrics/mia/utils.py``: with loss-like scores, 1 means the forget set looks much
    more familiar than the holdout set, 0.5 that they are alike.
    """
    forget = np.asarray(forget_scores, dtype=np.float64).reshape(-1)
    holdout = np.asarray(holdout_scores, dtype=np.float64).reshape(-1)
    for side, scores in (("forget", forget), ("holdout", holdout)):
        if scores.size == 0:
            raise ConfigError(f"the {side} set has no scores; an AUC needs both forget and holdout sequences")
        if not np.all(np.isfinite(scores)):
            raise NonFiniteScoresError(f"the {side} set has non-finite scores: "
                                       f"{scores[~np.isfinite(scores)][:5].tolist()}")
    labels = np.concatenate([np.zeros(forget.size), np.ones(holdout.size)])
    return float(roc_auc_score(labels, np.concatenate([forget, holdout])))


def delong_interval(forget_scores: Sequence[float], holdout_scores: Sequence[float], level: float = 0.95
                    ) -> tuple[float, float]:
    """The ``level`` confidence interval of ``attack_auc``, by DeLong's method.

    DeLong, DeLong and Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver
    operating characteristic curves: a nonparametric approach", Biometrics 44(3): the AUC is the mean of
    ``psi(x, y)`` (1 if the holdout score ``x`` exceeds the forget score ``y``, 1/2 on a tie, else 0) over
    all pairs; its variance is ``var(V10) / m + var(V01) / n``, with ``V10[i]`` the mean of ``psi`` over
    the forget scores for holdout score ``i`` (``m`` of them), ``V01[j]`` the mean over the holdout scores
    for forget score ``j`` (``n``), each sample variance with ``ddof=1``. The interval is the AUC plus or
    minus the normal quantile times its standard error, clipped to [0, 1].
    """
    from scipy.stats import norm

    check_range("level", level, low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)
    auc = attack_auc(forget_scores, holdout_scores)  # validates both sets
    y = np.asarray(forget_scores, dtype=np.float64).reshape(-1)
    x = np.asarray(holdout_scores, dtype=np.float64).reshape(-1)
    if x.size < 2 or y.size < 2:
        raise ConfigError(f"an AUC interval needs at least 2 scores on each side; got {y.size} forget and "
                          f"{x.size} holdout")
    psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])  # (m, n)
    var = np.var(psi.mean(axis=1), ddof=1) / x.size + np.var(psi.mean(axis=0), ddof=1) / y.size
    half = float(norm.ppf(0.5 + level / 2) * math.sqrt(max(float(var), 0.0)))
    return max(0.0, auc - half), min(1.0, auc + half)


def privleak(auc: float, retain_auc: float) -> float:
    """MUSE's privleak, as open-unlearning computes it from its AUCs (``src/evals/metrics/privacy.py``).

    open-unlearning's AUC is 1 minus MUSE's, so both are flipped back first:
    ``((1 - auc) - (1 - retain_auc)) / ((1 - retain_auc) + 1e-10) * 100``, a percentage. 0 means like the
    retain model; negative means the forget set still looks more familiar than to the retain model
    (under-unlearning), positive less (over-unlearning).

    Args:
        auc: ``attack_auc`` of min-k% (k=0.4) on the evaluated model (``privleak.yaml``).
        retain_auc: the same AUC of the retain model (open-unlearning's default without logs: 0.5).
    """
    check_range("auc", auc, low=0.0, high=1.0)
    # the denominator is 1 - retain_auc: a retain AUC of 1 leaves nothing to compare with
    check_range("retain_auc", retain_auc, low=0.0, high=1.0, high_inclusive=False)
    score, ref = 1.0 - auc, 1.0 - retain_auc
    return (score - ref) / (ref + PRIVLEAK_EPS) * 100.0


def mia_metrics(forget: list[SequenceStats], holdout: list[SequenceStats], forget_texts: Sequence[str],
                holdout_texts: Sequence[str], *, k: float = DEFAULT_K) -> dict[str, float]:
    """AUC of every attack: ``mia_loss``, ``mia_zlib``, ``mia_min_k``, ``mia_min_k_plus_plus``.

    Follows open-unlearning's ``src/evals/metrics/mia/__init__.py`` handlers, with the k of its configs.

    Args:
        forget, holdout: per-sequence statistics (``score_examples``) of the two sets.
        forget_texts, holdout_texts: each sequence's scored text, for zlib (see ``zlib_score``).
        k: fraction kept by min-k% and min-k%++, in (0, 1].
    """
    _check_k(k)
    for side, seqs in (("forget", forget), ("holdout", holdout)):
        if not seqs:
            raise ConfigError(f"the {side} set has no sequences; membership attacks need both sets")
    return {metric: attack_auc(attack_scores(name, forget, forget_texts, k=k),
                               attack_scores(name, holdout, holdout_texts, k=k))
            for name, metric in METRIC_OF_ATTACK.items()}


def mia_intervals(forget: list[SequenceStats], holdout: list[SequenceStats], forget_texts: Sequence[str],
                  holdout_texts: Sequence[str], *, k: float = DEFAULT_K, level: float = 0.95
                  ) -> dict[str, tuple[float, float]]:
    """Each attack's AUC interval (``delong_interval``), keyed like ``mia_metrics``."""
    _check_k(k)
    return {metric: delong_interval(attack_scores(name, forget, forget_texts, k=k),
                                    attack_scores(name, holdout, holdout_texts, k=k), level)
            for name, metric in METRIC_OF_ATTACK.items()}


def score_examples(model, examples: Sequence[EncodedQA], pad_id: int, batch_size: int) -> list[SequenceStats]:
    """Teacher-forced statistics of each example (QA rows or raw text), in the order of ``examples``.

    Length-sorted, right-padded batches on the model's own device, under no_grad; every module's
    train/eval mode is restored afterwards.

    Args:
        model: a Hugging Face causal LM.
        examples: encoded examples; labels -100 where not scored (prompt).
        pad_id: padding token id.
        batch_size: sequences per forward pass (>= 1).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} is out of range; valid: an integer >= 1")
    device = next(model.parameters()).device
    out: list[SequenceStats | None] = [None] * len(examples)
    modes = [(m, m.training) for m in model.modules()]  # per module: some may be frozen in eval mode
    model.eval()
    try:
        with torch.no_grad():
            for idx in length_batches([len(e.input_ids) for e in examples], batch_size):
                batch = collate([examples[i] for i in idx], pad_id)
                logits = model(input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device)).logits
                for i, seq in zip(idx, per_sequence(token_stats(logits, batch["labels"].to(device)))):
                    out[i] = seq
    finally:
        for module, training in modes:
            module.training = training
    return out  # type: ignore[return-value]  # every index is filled by one batch
