"""A trial's number of record: the one set of values by which a sweep scores, chooses and reports it.

One rule everywhere: a replicate's value is its run's ``final`` metrics (the kept epoch under
``keep_best_by``, else the last); the trial's value is the aggregate (mean or median) over its
replicates, with a 95 % interval; its feasibility is its aggregate against the space's constraints.
The trial's process writes it to ``trials/<id>/record.json`` and reports it to Tune under
``record/<metric>`` keys; Optuna (``sweeps.search``), MLflow (``sweeps.tracking.callback``), the ledger,
``report`` and ``export-best`` all read that one record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from unlearn.config import to_dict

RECORD_PREFIX = "record/"
"""Tune result / MLflow keys of the trial's values of record: ``record/forget_quality``."""
REPLICATE_KEY = "replicate"
"""A Tune result of one finished replicate carries its index under this key (its values under ``replicate/``)."""
REPLICATE_PREFIX = "replicate/"
RECORD_FLAG = RECORD_PREFIX + "replicates"  # present in exactly the results that carry a record
FEASIBLE_KEY = RECORD_PREFIX + "feasible"
VIOLATION_PREFIX = RECORD_PREFIX + "violation/"
MISSING_VIOLATION = 1e9
"""The violation of a constraint whose metric a trial did not report: infeasible, by far."""
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Bound:
    """A constraint resolved to an absolute threshold: ``metric >= threshold`` (kind min) or ``<=`` (max).

    ``text`` says where the threshold came from (``0.95 x target 0.62``), for reports.
    """

    metric: str
    kind: Literal["min", "max"]
    threshold: float
    text: str

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """How far ``metrics`` are from satisfying it: <= 0 satisfied (Optuna's convention), > 0 violated."""
        value = metrics.get(self.metric)
        if not is_value(value):
            return MISSING_VIOLATION
        return float(self.threshold - value if self.kind == "min" else value - self.threshold)

    @property
    def key(self) -> str:
        """Its name in the Optuna study (``Trial.set_constraint``): one bound per metric and kind."""
        return f"{self.metric}_{self.kind}"

    def describe(self) -> str:
        return f"{self.metric} {'>=' if self.kind == 'min' else '<='} {self.threshold:.4g} ({self.text})"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "kind": self.kind, "threshold": self.threshold, "text": self.text}


def bound_from_dict(d: Mapping[str, Any]) -> Bound:
    return Bound(str(d["metric"]), d["kind"], float(d["threshold"]), str(d.get("text", "")))


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_value(v: Any) -> bool:
    """A metric value a bound can judge: a number, not NaN."""
    return _numeric(v) and not math.isnan(v)


def aggregate(finals: Sequence[Mapping[str, Any]], how: Literal["mean", "median"]) -> dict[str, float]:
    """Per metric, the mean or median over replicates of the metrics every replicate reported (a NaN
    in one replicate makes the aggregate NaN: a diverged seed is not averaged away)."""
    import numpy as np

    keys = [k for k in finals[0] if all(_numeric(f.get(k)) for f in finals)]
    reduce = np.mean if how == "mean" else np.median
    return {k: float(reduce([float(f[k]) for f in finals])) for k in keys}


def interval(values: Sequence[float], how: Literal["mean", "median"]) -> tuple[float, float] | None:
    """The 95 % interval of the aggregate: Student's t interval of the mean; for the median, a percentile
    bootstrap (scipy.stats.bootstrap, fixed seed). None with fewer than 2 replicates or a NaN."""
    import numpy as np
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or np.isnan(x).any():
        return None
    if np.all(x == x[0]):
        return float(x[0]), float(x[0])
    if how == "mean":
        low, high = stats.t.interval(CONFIDENCE, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    else:
        res = stats.bootstrap((x,), np.median, confidence_level=CONFIDENCE, method="percentile",
                              n_resamples=BOOTSTRAP_RESAMPLES, rng=np.random.default_rng(0))
        low, high = res.confidence_interval
    return float(low), float(high)


def interval_method(how: Literal["mean", "median"]) -> str:
    return "Student's t interval of the mean" if how == "mean" else "percentile bootstrap interval of the median"


@dataclass(frozen=True)
class TrialRecord:
    """A trial's record (``trials/<id>/record.json``): its values of record (``metrics``), how they were
    aggregated, its replicates (each: ``index, seed, dir, final, best_epoch``), the 95 % intervals of the
    watched metrics, each constraint with its violation, and whether it is feasible."""

    metrics: dict[str, float]
    aggregate: str
    replicates: tuple[dict[str, Any], ...]
    intervals: dict[str, tuple[float, float]]
    interval_method: str | None
    constraints: tuple[dict[str, Any], ...]
    feasible: bool

    def to_dict(self) -> dict[str, Any]:
        """``record.json``'s plain data (tuples as lists)."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> TrialRecord:
        return cls(dict(doc["metrics"]), doc["aggregate"], tuple(dict(r) for r in doc["replicates"]),
                   {m: (float(iv[0]), float(iv[1])) for m, iv in doc["intervals"].items()},
                   doc.get("interval_method"), tuple(dict(c) for c in doc["constraints"]), bool(doc["feasible"]))

    def to_result(self) -> dict[str, float]:
        """The flat Tune result that carries the record (``record/<metric>``, feasibility, violations,
        intervals): these keys are also the trial's final MLflow metrics."""
        out = {RECORD_PREFIX + k: v for k, v in self.metrics.items()}
        out[RECORD_FLAG] = len(self.replicates)
        out[FEASIBLE_KEY] = 1.0 if self.feasible else 0.0
        for i, c in enumerate(self.constraints):
            out[f"{VIOLATION_PREFIX}{i}"] = c["violation"]
        for m, (low, high) in self.intervals.items():
            out[f"{RECORD_PREFIX}{m}/low"], out[f"{RECORD_PREFIX}{m}/high"] = low, high
        return out


def make_record(replicates: Sequence[Mapping[str, Any]], how: Literal["mean", "median"],
                bounds: Sequence[Bound], metrics: Sequence[str]) -> TrialRecord:
    """The trial's record from its replicates (each: ``index, seed, dir, final, best_epoch``).

    ``metrics``: the ones that get an interval (the objectives and constrained metrics).
    """
    finals = [r["final"] for r in replicates]
    values = aggregate(finals, how)
    intervals = {}
    for m in metrics:
        if m in values and (iv := interval([float(f[m]) for f in finals], how)) is not None:
            intervals[m] = iv
    violations = [b.violation(values) for b in bounds]
    return TrialRecord(values, how, tuple(dict(r) for r in replicates), intervals,
                       interval_method(how) if intervals else None,
                       tuple({**b.to_dict(), "violation": v} for b, v in zip(bounds, violations)),
                       all(v <= 0 for v in violations))


@dataclass(frozen=True)
class ReportedRecord:
    """A record as a Tune result carries it (``TrialRecord.to_result``), decoded once (``of``) for the
    driver's readers: the searcher, the ledger, MLflow and the progress line read its fields."""

    values: dict[str, float]
    """The metrics of record under their own names."""
    feasible: bool
    violations: tuple[float, ...]
    entries: dict[str, float]
    """Every ``record/...`` entry of the result, as MLflow keeps them (the trial's final metrics)."""

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> ReportedRecord | None:
        """The record ``result`` carries; None for any other result (an epoch's, a replicate's)."""
        if RECORD_FLAG not in result:
            return None
        entries = {k: v for k, v in result.items() if k.startswith(RECORD_PREFIX)}
        values = {k[len(RECORD_PREFIX):]: v for k, v in entries.items()
                  if "/" not in k[len(RECORD_PREFIX):] and k not in (RECORD_FLAG, FEASIBLE_KEY)}
        violations = []
        while (v := entries.get(f"{VIOLATION_PREFIX}{len(violations)}")) is not None:
            violations.append(float(v))
        return cls(values, bool(entries.get(FEASIBLE_KEY)), tuple(violations), entries)

    def violation_list(self, n: int) -> list[float]:
        """The ``n`` constraint violations (a missing one counts as violated by far)."""
        return [self.violations[i] if i < len(self.violations) else MISSING_VIOLATION for i in range(n)]


def violations_of(result: Mapping[str, Any], n: int, bounds: Sequence[Bound] = ()) -> list[float]:
    """The ``n`` constraint violations of a result: its record's, if it carries one; from ``bounds`` on the
    result's own metrics otherwise (a trial stopped early by ASHA reports no record)."""
    if (record := ReportedRecord.of(result)) is not None:
        return record.violation_list(n)
    return [b.violation(result) for b in bounds] if bounds else [MISSING_VIOLATION] * n


def replicate_result(index: int, seed: int, final: Mapping[str, Any]) -> dict[str, float]:
    """The flat Tune result of one finished replicate (logged as a nested MLflow run by the driver)."""
    out = {REPLICATE_PREFIX + k: v for k, v in final.items() if _numeric(v)}
    return {**out, REPLICATE_KEY: index, REPLICATE_PREFIX + "seed": seed}


def replicate_of_result(result: Mapping[str, Any]) -> tuple[int, int, dict[str, float]] | None:
    """(index, seed, metrics) of a replicate result; None for any other result."""
    if REPLICATE_KEY not in result:
        return None
    metrics = {k[len(REPLICATE_PREFIX):]: v for k, v in result.items()
               if k.startswith(REPLICATE_PREFIX) and k != REPLICATE_PREFIX + "seed"}
    return int(result[REPLICATE_KEY]), int(result[REPLICATE_PREFIX + "seed"]), metrics
