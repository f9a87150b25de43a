"""Sweeps simulated on a replicate table's pool of seeds, scored against its truth seeds.

A ``Problem`` holds what a sweep sees: per grid point and pool seed the objective (signed: higher is
better, the direction from the benchmark's metric table) and the constrained metric (model utility), the
product's resolved bound, and the truth it is scored against (truth-seed means). A sweep of the product's
TPE (``sweeps.search.tpe_sampler``, constrained as the product runs it: ``Trial.set_constraint`` with the
bound's violation of the trial's replicate-mean utility) searches the grid's (beta1 index, beta2 index);
a trial's value is the replicate mean of its runs (``sweeps.record.aggregate``); the export is the best
feasible trial (ties: higher utility, then the first, as ``sweeps.report.select``). A point's runs are
deterministic (the product's seeds are a function of the sweep seed and the point), so a point sampled
twice observes the same values again and costs its runs again.

The settings, at a total compute of C runs:

* ``a`` R = 1: C trials of one run, the seed drawn per point (``point_seeds``);
* ``b`` R = 3 per-point seeds: C / 3 trials, each point's 3 pool seeds drawn without replacement by a
  generator seeded with ``derive_trial_seed(sweep seed, point index)`` (unpaired across points);
* ``c`` R = 3 common seeds: replicate r of every point is the sweep's r-th common seed (``common_order``:
  a permutation of the pool drawn from the sweep seed alone, so every point shares it);
* ``d`` ``c`` + a confirmation race: the search gets C - B runs (B = min(C / 2, k x fresh seeds)), then
  its top k feasible points (distinct, by observed value) are raced by ``sweeps.racing`` on the common
  seeds the search did not use (F-Race: each round every survivor runs the next fresh seed; from the
  ``FIRST_TEST``-th round on, a survivor whose mean utility over its race runs falls below the bound is
  dropped, as ``sweeps.confirm.replay`` did before stop 37; ``eliminated`` after each round;
  stop at one survivor, when the best survivor's ``prob_best`` over the k candidates' race values
  reaches the confidence, or when the runs or fresh seeds are spent). Only race values rank the
  candidates: the search's values chose them and are biased upward (winner's curse). The export is the
  best survivor by race mean, and its ``prob_best`` is the stated probability;
* ``e`` common, adaptive replication: a trial runs the common seeds one at a time, up to ``r_max``, and
  goes on only while it can still beat the incumbent (the best feasible trial so far) and still be
  feasible: its mean + t(0.975, df) s / sqrt(n) >= the incumbent's mean and its utility mean + t s_u /
  sqrt(n) >= the bound, with s (and s_u) the sweep's pooled within-point standard deviation of all its
  points so far (df = sum of n - 1; with df = 0 it goes on). The incumbent therefore always has
  ``r_max`` runs (unless the budget ended); a clearly worse point stops after 1 or 2;
* ``f`` oracle: no search; OCBA (Chen, Lin, Yücesan and Chick, "Simulation budget allocation for further
  enhancing the efficiency of ordinal optimization", DEDS 10, 2000) with the truth's standard deviations of
  the objective and of the utility, under the constraint as Lee et al. (2012) allocate
  (``constrained_allocation``), running means, one run at a time on common seeds (at most the pool per
  point); the export is the best observed-feasible mean. The limit of allocation: it knows the variances
  and still sees only pool seeds;
* ``g`` the grid, equal allocation: every point the first floor(C / points) common seeds (no search).
* ``h`` ``f`` knowing the feasible set too: plain OCBA over the truly feasible points, the best mean
  exported. ``f`` against ``h`` separates the noise of the constraint from the noise of the objective.
* ``i`` R = 1 on the sweep's first common seed (what ``search_spaces/satimp.yaml``'s search does:
  ``replicates: 1, seeds: common``, so every point runs the same seed);
* ``j`` ``i`` + the race of ``d`` (the shipped ``satimp`` space: an R = 1 search, then ``confirm``);
* ``k`` ``j``, but the race drops a candidate as infeasible only when a one-sided 95 % t test on its
  utility runs says it breaks the bound (``sweeps.racing.surely_infeasible``), not whenever its mean does;
* ``l`` ``k`` after an R = 1 search on per-point seeds (``a``): ``budget.seeds: per_point`` with the race
  (whose seeds are common whatever ``budget.seeds`` says).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bench.selection_table import Grid
from sweeps.record import Bound

QUALITY = "forget_quality"  # what a sweep is scored by: the truth mean forget quality
COMMON_KEY = 2 ** 31  # derive_trial_seed key of a sweep's common seed order (point indices stay below it)
SETTINGS = {
    "a": "R=1, per-point seed",
    "b": "R=3, per-point seeds",
    "c": "R=3, common seeds",
    "d": "R=3 common + race top k",
    "e": "common, adaptive R",
    "f": "oracle OCBA, true var.",
    "g": "grid, equal, common",
    "h": "f + true feasible set",
    "i": "R=1, common seed",
    "j": "R=1 common + race top k",
    "k": "j, drop surely infeasible",
    "l": "k on R=1 per-point seeds",
}
RACES = {"d": ("c", "mean"), "j": ("i", "mean"), "k": ("i", "test"), "l": ("a", "test")}
"""The race settings: (the search setting whose top k are raced, how the race judges a candidate infeasible)."""


@dataclass(frozen=True)
class Problem:
    """A selection problem on a table. Arrays over the grid's P points (beta1-major) and S pool seeds."""

    objective: str
    score: np.ndarray  # (P, S) the objective on the pool, signed: higher is better
    utility: np.ndarray  # (P, S) the bound's metric on the pool
    bound: Bound
    shape: tuple[int, int]  # (len(beta1), len(beta2))
    truth_quality: np.ndarray  # (P,) truth mean forget quality
    truth_score: np.ndarray  # (P,) truth mean of the signed objective
    truth_sd: np.ndarray  # (P,) truth standard deviation of the objective (the oracles')
    truth_utility_sd: np.ndarray  # (P,) truth standard deviation of the bound's metric
    truth_feasible: np.ndarray  # (P,) truth mean utility meets the bound

    @property
    def best(self) -> int:
        """The truth best: the feasible point of highest truth mean forget quality (-1: none feasible)."""
        return _argmax_where(self.truth_quality, self.truth_feasible)

    @property
    def best_by_objective(self) -> int:
        return _argmax_where(self.truth_score, self.truth_feasible)

    def feasible(self, utility: float) -> bool:
        return self.bound.violation({self.bound.metric: utility}) <= 0


def make_problem(grid: Grid, objective: str, bound: Bound, higher_is_better: bool, *,
                 feasibility: str = "observed") -> Problem:
    """The problem of choosing by ``objective``'s replicate mean under ``bound``, on ``grid``'s pool.
    ``feasibility="truth"``: every run of a point reports its truth mean utility, so that every setting
    judges feasibility without error (an ablation: what is left is the objective's noise)."""
    for name in (objective, bound.metric, QUALITY):
        if name not in grid.pool.values or name not in grid.truth.values:
            raise SystemExit(f"the table has no {name!r} in every run's final metrics; it has: "
                             f"{', '.join(sorted(grid.pool.values))}")
    sign = 1.0 if higher_is_better else -1.0
    truth = grid.truth.values
    truth_utility = truth[bound.metric].mean(axis=1)
    feasible = np.asarray([bound.violation({bound.metric: float(u)}) <= 0 for u in truth_utility])
    utility = grid.pool.values[bound.metric]
    if feasibility == "truth":
        utility = np.repeat(truth_utility[:, None], utility.shape[1], axis=1)
    return Problem(objective, sign * grid.pool.values[objective], utility, bound,
                   (len(grid.beta1), len(grid.beta2)), truth[QUALITY].mean(axis=1),
                   sign * truth[objective].mean(axis=1), truth[objective].std(axis=1, ddof=1),
                   truth[bound.metric].std(axis=1, ddof=1), feasible)


def _argmax_where(values: np.ndarray, mask: np.ndarray) -> int:
    return int(np.argmax(np.where(mask, values, -np.inf))) if mask.any() else -1


class Trial(NamedTuple):
    point: int
    score: float  # replicate mean of the signed objective
    utility: float  # replicate mean of the bound's metric
    runs: int


class Outcome(NamedTuple):
    """One simulated sweep's result. ``stated``: the race's prob_best of the export (``d``; else NaN);
    ``in_race``: whether the truth best was among the race's candidates; ``race_right``: whether the export
    is the candidate of best truth mean objective (what ``stated`` claims)."""

    setting: str
    compute: int
    export: int
    runs: int
    distinct: int
    stated: float = math.nan
    in_race: float = math.nan
    race_right: float = math.nan


@dataclass(frozen=True)
class SimConfig:
    computes: tuple[int, ...]
    replicates: int = 3
    race_k: int = 3
    confidence: float = 0.95
    adaptive_max: int = 5


Observe = Callable[[int], Trial | None]


def common_order(sweep_seed: int, n: int) -> list[int]:
    """A sweep's common seeds: a permutation of the pool's n seed indices, from the sweep seed alone."""
    from sweeps.space.sampling import derive_trial_seed

    return random.Random(derive_trial_seed(sweep_seed, COMMON_KEY)).sample(range(n), n)


def point_seeds(sweep_seed: int, point: int, r: int, n: int) -> list[int]:
    """A point's own ``r`` pool seed indices (distinct), from the sweep seed and the point."""
    from sweeps.space.sampling import derive_trial_seed

    return random.Random(derive_trial_seed(sweep_seed, point)).sample(range(n), r)


def fixed(problem: Problem, seeds_of: Callable[[int], Sequence[int]]) -> Observe:
    """Each point observes the replicate mean (``sweeps.record.aggregate``) of its fixed seeds."""
    from sweeps.record import aggregate

    seen: dict[int, Trial] = {}

    def observe(p: int) -> Trial:
        if p not in seen:
            seeds = list(seeds_of(p))
            m = aggregate([{"s": problem.score[p, s], "u": problem.utility[p, s]} for s in seeds], "mean")
            seen[p] = Trial(p, m["s"], m["u"], len(seeds))
        return seen[p]

    return observe


def run_sweep(problem: Problem, sweep_seed: int, observe: Observe, *, sampler_trials: int, max_trials: int,
              sampler: str = "tpe", stop: Callable[[int], bool] | None = None) -> list[Trial]:
    """One sweep: the product's TPE (``sampler="tpe"``; its startup from ``sampler_trials``) or random
    search asks, ``observe`` runs the point (None: the runs are spent), the study is told the replicate mean
    and the bound's violation. Ends after ``max_trials``, when ``observe`` gives None, or on ``stop``."""
    import optuna

    from sweeps.search import tpe_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen = (tpe_sampler(sweep_seed, sampler_trials) if sampler == "tpe"
              else optuna.samplers.RandomSampler(seed=sweep_seed))
    study = optuna.create_study(direction="maximize", sampler=chosen)  # scores are signed: higher is better
    n1, n2 = problem.shape
    trials: list[Trial] = []
    for _ in range(max_trials):
        ot = study.ask()
        p = ot.suggest_int("beta1_index", 0, n1 - 1) * n2 + ot.suggest_int("beta2_index", 0, n2 - 1)
        trial = observe(p)
        if trial is None:
            break
        ot.set_constraint(problem.bound.key, problem.bound.violation({problem.bound.metric: trial.utility}))
        study.tell(ot, trial.score)
        trials.append(trial)
        if stop is not None and stop(p):
            break
    return trials


def export(problem: Problem, trials: Sequence[Trial]) -> int:
    """The best feasible trial's point (higher utility on ties, then the first); -1 when none is feasible."""
    best, key = -1, None
    for t in trials:
        if problem.feasible(t.utility) and (key is None or (t.score, t.utility) > key):
            best, key = t.point, (t.score, t.utility)
    return best


def top_feasible(problem: Problem, trials: Sequence[Trial], k: int) -> list[int]:
    """The first ``k`` distinct points of the feasible trials, best first (as ``export`` orders them)."""
    ranked = sorted((t for t in trials if problem.feasible(t.utility)), key=lambda t: (-t.score, -t.utility))
    return list(dict.fromkeys(t.point for t in ranked))[:k]


def outcome(problem: Problem, setting: str, compute: int, trials: Sequence[Trial]) -> Outcome:
    return Outcome(setting, compute, export(problem, trials), sum(t.runs for t in trials),
                   len({t.point for t in trials}))


def race(problem: Problem, candidates: list[int], seeds: Sequence[int], known: Sequence[int], runs: int,
         confidence: float, rule: str = "mean") -> tuple[int, float, int]:
    """Settings ``d``, ``j``, ``k``: the confirmation race: (export, its stated prob_best, runs spent).
    Feasibility is judged on the race's own runs, as ``sweeps.confirm`` judges it (the search's runs chose
    the candidates; ``known`` is kept for the record of which seeds the search used). ``rule``: ``mean``
    drops a candidate whose utility mean breaks the bound (the product before stop 37), ``test`` one that a
    one-sided 95 % t test shows to break it (``sweeps.racing.surely_infeasible``, the product's rule)."""
    from sweeps.racing import FIRST_TEST, eliminated, surely_infeasible

    values: dict[str, dict[int, float]] = {str(p): {} for p in candidates}
    utils: dict[int, list[float]] = {p: [] for p in candidates}
    survivors, spent = list(candidates), 0
    for s in seeds:
        if len(survivors) < 2 or spent + len(survivors) > runs:
            break
        for p in survivors:
            values[str(p)][s] = float(problem.score[p, s])
            utils[p].append(float(problem.utility[p, s]))
        spent += len(survivors)
        if len(utils[survivors[0]]) >= FIRST_TEST:  # as sweeps.confirm.replay: once every survivor has its first blocks
            survivors = [p for p in survivors
                         if (not surely_infeasible(utils[p], problem.bound) if rule == "test"
                             else problem.feasible(float(np.mean(utils[p]))))]
        if not survivors:  # every candidate fell below the bound: the search's export, nothing stated
            return candidates[0], math.nan, spent
        out = eliminated(values, [str(p) for p in survivors])
        survivors = [p for p in survivors if str(p) not in out]
        if _leader(values, survivors)[1] >= confidence:
            break
    best, stated = _leader(values, survivors)
    return best, stated, spent


def _leader(values: dict[str, dict[int, float]], survivors: list[int]) -> tuple[int, float]:
    """The best survivor by race mean and its prob_best among all the race's candidates."""
    from sweeps.racing import prob_best, ranked

    raced = {k: v for k, v in values.items() if v}
    if not raced:  # no round ran: the search's order, nothing known
        return survivors[0], 1.0 / len(values)
    best = ranked({str(p): values[str(p)] for p in survivors})[0]
    return int(best), prob_best(raced)[best]


class Adaptive:
    """Setting ``e``'s observer: common seeds one at a time while the point can still beat the incumbent
    and still be feasible (see the module's docstring); ``runs``: the sweep's budget."""

    def __init__(self, problem: Problem, order: Sequence[int], runs: int, r_max: int) -> None:
        self.problem, self.order, self.left, self.r_max = problem, list(order), runs, min(r_max, len(order))
        self.seen: dict[int, tuple[list[float], list[float]]] = {}
        self.incumbent: tuple[float, float] | None = None

    def __call__(self, p: int) -> Trial | None:
        if self.left <= 0:
            return None
        scores: list[float] = []
        utils: list[float] = []
        for s in self.order[:self.r_max]:
            if self.left == 0:
                break
            scores.append(float(self.problem.score[p, s]))
            utils.append(float(self.problem.utility[p, s]))
            self.left -= 1
            self.seen[p] = (scores, utils)
            if not self._promising(scores, utils):
                break
        trial = Trial(p, float(np.mean(scores)), float(np.mean(utils)), len(scores))
        better = self.incumbent is None or (trial.score, trial.utility) > self.incumbent
        if self.problem.feasible(trial.utility) and better:
            self.incumbent = (trial.score, trial.utility)
        return trial

    def _promising(self, scores: list[float], utils: list[float]) -> bool:
        from scipy.stats import t as student

        n = len(scores)
        if n >= self.r_max:
            return False
        df = sum(len(v[0]) - 1 for v in self.seen.values())
        if df == 0:
            return True
        half = student.ppf(0.975, df) / math.sqrt(n)
        s_score = math.sqrt(sum(float(np.var(v[0])) * len(v[0]) for v in self.seen.values()) / df)
        s_util = math.sqrt(sum(float(np.var(v[1])) * len(v[1]) for v in self.seen.values()) / df)
        beats = self.incumbent is None or float(np.mean(scores)) + half * s_score >= self.incumbent[0]
        optimistic = float(np.mean(utils)) + (half * s_util if self.problem.bound.kind == "min" else -half * s_util)
        return beats and self.problem.feasible(optimistic)


def ocba_allocation(means: np.ndarray, sd: np.ndarray, total: float) -> np.ndarray:
    """OCBA's asymptotically optimal allocation of ``total`` runs: N_i ~ (sd_i / d_i)^2 for i != b,
    N_b = sd_b sqrt(sum_i N_i^2 / sd_i^2), d_i the gap to the best mean b (floored: ties)."""
    b = int(np.argmax(means))
    gap = np.maximum(means[b] - means, 1e-6 * max(float(sd.max()), 1e-12))
    w = (sd / gap) ** 2
    w[b] = sd[b] * math.sqrt(float(np.sum(np.delete(sd ** 2 / gap ** 4, b))))
    return total * w / w.sum() if w.sum() > 0 else np.full(len(means), total / len(means))


def constrained_allocation(means: np.ndarray, sd: np.ndarray, margin: np.ndarray, usd: np.ndarray,
                           total: float) -> np.ndarray:
    """OCBA under a stochastic constraint, after Lee, Pujowidianto, Li, Chen and Yap ("Approximate
    simulation budget allocation for selecting the best design in the presence of stochastic constraints",
    IEEE TAC 57, 2012): ``margin`` is each point's utility mean minus the bound (>= 0: it looks feasible),
    ``usd`` its utility standard deviation. The best b is the best-looking feasible point; any other point
    is ruled out either by its objective gap to b (N ~ (sd / gap)^2; impossible when it scores above b) or,
    when it looks infeasible, by its distance to the bound (N ~ (usd / margin)^2), whichever needs fewer
    runs; b needs the larger of OCBA's sd_b sqrt(sum N_i^2 / sd_i^2) over the points ruled out by the
    objective and the runs that show it feasible."""
    floor = 1e-6 * max(float(sd.max()), float(usd.max()), 1e-12)
    feasible = margin >= 0
    b = int(np.argmax(np.where(feasible, means, -np.inf))) if feasible.any() else int(np.argmax(means))
    gap = means[b] - means
    by_objective = np.where(gap > 0, (sd / np.maximum(gap, floor)) ** 2, np.inf)
    by_bound = np.where(feasible, np.inf, (usd / np.maximum(-margin, floor)) ** 2)
    w = np.minimum(by_objective, by_bound)
    w[~np.isfinite(w)] = (sd / floor).max() ** 2  # a tie with b, looking feasible: as many as any
    ruled = (by_objective <= by_bound) & (np.arange(len(means)) != b)
    objective_b = sd[b] * math.sqrt(float(np.sum(sd[ruled] ** 2 / np.maximum(gap[ruled], floor) ** 4)))
    w[b] = max(objective_b, (usd[b] / max(float(margin[b]), floor)) ** 2 if feasible[b] else 0.0)
    return total * w / w.sum() if w.sum() > 0 else np.full(len(means), total / len(means))


def ocba(problem: Problem, order: Sequence[int], runs: int, *, known_feasible: bool) -> tuple[int, int, int]:
    """Settings ``f`` and ``h``: (export, runs spent, points run). One common seed per point first, then one run at a
    time to the point furthest below its share (truth standard deviations). ``known_feasible``: only the
    truly feasible points, plain OCBA, the best mean exported; else every point, the constrained
    allocation, the best observed-feasible mean exported (``export``)."""
    cand = np.flatnonzero(problem.truth_feasible) if known_feasible else np.arange(problem.score.shape[0])
    if len(cand) == 0:
        return -1, 0, 0
    sd, usd = problem.truth_sd[cand], problem.truth_utility_sd[cand]
    sign = 1.0 if problem.bound.kind == "min" else -1.0
    n = np.zeros(len(cand), dtype=int)
    total, utotal = np.zeros(len(cand)), np.zeros(len(cand))
    for _ in range(runs):
        if n.min() == 0:
            i = int(np.argmin(n))
        else:
            room = n < len(order)
            if not room.any():
                break
            share = (ocba_allocation(total / n, sd, n.sum() + 1) if known_feasible else
                     constrained_allocation(total / n, sd, sign * (utotal / n - problem.bound.threshold), usd,
                                            n.sum() + 1))
            i = int(np.argmax(np.where(room, share - n, -np.inf)))
        total[i] += problem.score[cand[i], order[n[i]]]
        utotal[i] += problem.utility[cand[i], order[n[i]]]
        n[i] += 1
    trials = [Trial(int(cand[i]), total[i] / n[i], utotal[i] / n[i], int(n[i])) for i in range(len(cand)) if n[i]]
    point = max(trials, key=lambda t: (t.score, t.utility)).point if known_feasible else export(problem, trials)
    return point, int(n.sum()), len(trials)


def equal(problem: Problem, order: Sequence[int], compute: int) -> Outcome:
    """Setting ``g``: every point the first floor(compute / points) common seeds."""
    r = min(compute // problem.score.shape[0], len(order))
    if r == 0:
        return Outcome("g", compute, -1, 0, 0)
    trials = [fixed(problem, lambda p: order[:r])(p) for p in range(problem.score.shape[0])]
    return outcome(problem, "g", compute, trials)
