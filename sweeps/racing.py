"""The statistics of choosing among points measured on common seeds: paired differences, a race's
eliminations, the probability of being best. Pure functions of arrays (no Ray, no files).

Values are given as ``{point: {seed: value}}`` with **higher is better** (the caller flips a minimised
metric); a seed present in two points pairs their values (common random numbers, ``budget.seeds: common``).

The confirmation stage (``sweeps.confirm``) races its candidates as **F-Race** does (Birattari, Stützle,
Paquete and Varrentrapp, "A Racing Algorithm for Configuring Metaheuristics", GECCO 2002): every
surviving candidate is run on the next fresh common seed (a block), and after ``FIRST_TEST`` blocks a
statistical test eliminates the candidates significantly worse than the best. The test is irace's
paired t-test variant with Holm's correction (``testType: t.holm``; López-Ibáñez, Dubois-Lacoste,
Cáceres, Birattari and Stützle, "The irace package: Iterated racing for automatic algorithm
configuration", Operations Research Perspectives 3, 2016): each survivor against the best by mean, one
sided, on the seeds they share (``scipy.stats.ttest_rel``). The race stops when one candidate is left,
when the best's probability of being best reaches ``confidence``, or when the runs are spent.

The probability of being best is a **posterior** (``prob_best``: normal noise of a pooled variance, flat
priors, the means' multivariate t posterior sampled), not a bootstrap: measured on synthetic tables with
a known answer, the bootstrap over seeds was over-confident (stated 0.95, right 0.70).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sweeps.record import Bound

FIRST_TEST = 3  # blocks (seeds) every survivor has before the first elimination test
ALPHA = 0.05  # the race's family-wise level (Holm) per test
POSTERIOR_DRAWS = 4000  # samples of prob_best's posterior

Values = Mapping[str, Mapping[int, float]]  # point -> seed -> value (higher is better)


def means(values: Values) -> dict[str, float]:
    return {p: float(np.mean(list(v.values()))) for p, v in values.items() if v}


def ranked(values: Values) -> list[str]:
    """Points by mean, best first (ties: the given order)."""
    m = means(values)
    return sorted(m, key=lambda p: -m[p])


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over the seeds both ran: mean, 95 % t interval (``scipy.stats.ttest_rel``), seeds used.
    With fewer than 2 shared seeds the interval is (-inf, inf)."""

    a: str
    b: str
    mean: float
    low: float
    high: float
    seeds: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {"a": self.a, "b": self.b, "mean": self.mean, "low": self.low, "high": self.high,
                "seeds": self.seeds}


def paired_difference(values: Values, a: str, b: str, level: float = 0.95) -> PairedDifference:
    import scipy.stats

    shared = sorted(set(values[a]) & set(values[b]))
    diff = np.asarray([values[a][s] - values[b][s] for s in shared], dtype=np.float64)
    if len(shared) == 0:
        return PairedDifference(a, b, float("nan"), -np.inf, np.inf, 0)
    if len(shared) < 2 or np.all(diff == diff[0]):
        bound = (float(diff[0]), float(diff[0])) if len(shared) >= 2 else (-np.inf, np.inf)
        return PairedDifference(a, b, float(diff.mean()), *bound, len(shared))
    ci = scipy.stats.ttest_rel([values[a][s] for s in shared], [values[b][s] for s in shared]).confidence_interval(level)
    return PairedDifference(a, b, float(diff.mean()), float(ci.low), float(ci.high), len(shared))


def holm(pvalues: Mapping[str, float], alpha: float = ALPHA) -> set[str]:
    """The hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``."""
    rejected: set[str] = set()
    order = sorted(pvalues, key=lambda k: pvalues[k])
    for i, key in enumerate(order):
        if pvalues[key] > alpha / (len(order) - i):
            break
        rejected.add(key)
    return rejected


def eliminated(values: Values, survivors: Sequence[str], alpha: float = ALPHA) -> set[str]:
    """The survivors significantly worse than the best survivor by mean: one-sided paired t-tests on
    shared seeds, Holm-corrected (irace's ``t.holm``). None before every survivor has ``FIRST_TEST`` seeds."""
    import scipy.stats

    if len(survivors) < 2 or min(len(values[p]) for p in survivors) < FIRST_TEST:
        return set()
    best = ranked({p: values[p] for p in survivors})[0]
    pvalues = {}
    for p in survivors:
        if p == best:
            continue
        shared = sorted(set(values[best]) & set(values[p]))
        a = np.asarray([values[best][s] for s in shared])
        b = np.asarray([values[p][s] for s in shared])
        if np.all(a - b == (a - b)[0]):  # no spread: t undefined; a constant positive gap is decisive
            pvalues[p] = 0.0 if (a - b)[0] > 0 else 1.0
            continue
        pvalues[p] = float(scipy.stats.ttest_rel(a, b, alternative="greater").pvalue)
    return holm(pvalues, alpha)


def prob_best(values: Values, *, draws: int = POSTERIOR_DRAWS, seed: int = 0) -> dict[str, float]:
    """Each point's posterior probability of having the highest true mean.

    The model: a point's values are its true mean plus normal noise of one variance shared by the points
    (pooled over their within-point deviations, ``df`` = values - points degrees of freedom), flat priors
    on the means and on log sigma. The posterior of the means is then a multivariate t (Gelman et al.,
    *Bayesian Data Analysis*, 3rd ed., sec. 3.2): ``mean_i + s / sqrt(n_i) * z_i * sqrt(df / chi2_df)``
    with one chi-square draw per sample, which is how it is drawn here (``draws`` samples, seeded).
    Independent per point: seeds are not paired (the measured correlation of two points' values across
    common seeds is ~0; the report's paired differences use the pairs). With no degrees of freedom (one
    value per point) nothing separates the points: equal shares.

    Measured against synthetic tables with a known best (``tests/sweeps/test_racing.py``) it is calibrated
    within ~0.1 where the points' gaps are comparable to the noise; a bootstrap over seeds was not (it
    stated 0.95 for picks right 70 % of the time: it ignores the uncertainty of the variance and the
    selection of the largest mean).
    """
    points = [p for p in values if values[p]]
    if len(points) == 1:
        return {points[0]: 1.0}
    data = [np.asarray(list(values[p].values()), dtype=np.float64) for p in points]
    n = np.asarray([len(d) for d in data], dtype=np.float64)
    df = int(n.sum() - len(points))
    if df <= 0:
        return {p: 1.0 / len(points) for p in points}
    pooled = sum(float(((d - d.mean()) ** 2).sum()) for d in data) / df
    mean = np.asarray([d.mean() for d in data])
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((draws, len(points)))
    scale = np.sqrt(df / rng.chisquare(df, size=(draws, 1)))
    sample = mean + np.sqrt(pooled / n) * z * scale
    winners = sample == sample.max(axis=1, keepdims=True)
    share = (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)
    return {p: float(share[i]) for i, p in enumerate(points)}


def can_still_beat(values: Sequence[float], incumbent: float, level: float = 0.95) -> bool:
    """Adaptive replication's rule (``budget.adaptive``): a point gets another seed only while it can still
    beat the incumbent, i.e. while the upper end of the ``level`` t interval of its mean (higher is better)
    reaches the incumbent's value. With fewer than 2 values (no interval) it always can."""
    import scipy.stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2 or not np.isfinite(incumbent):
        return True
    if np.all(x == x[0]):
        return bool(x[0] >= incumbent)
    high = scipy.stats.t.interval(level, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))[1]
    return bool(high >= incumbent)


def surely_infeasible(values: Sequence[float], bound: Bound, level: float = 0.95) -> bool:
    """Whether runs ``values`` of ``bound``'s metric show the bound broken: the one-sided ``level`` t bound
    of their mean lies on the wrong side of the threshold (for ``metric >= x``: mean + t s / sqrt(n) < x).
    With fewer than 2 values (no interval) only a value on the wrong side counts, and a NaN breaks it.
    The confirmation stage drops a candidate for its constraint by this test, not by its mean alone: a
    point whose true mean sits near the bound would be dropped by its mean about half of the time."""
    import scipy.stats

    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        return False
    if np.isnan(x).any():
        return True
    sign = 1.0 if bound.kind == "min" else -1.0  # as "higher is feasible"
    margin = sign * (x - bound.threshold)
    if len(x) < 2 or np.all(margin == margin[0]):
        return bool(margin.mean() < 0)
    high = margin.mean() + scipy.stats.t.ppf(level, len(x) - 1) * scipy.stats.sem(margin)
    return bool(high < 0)
