"""A replicate table (``bench.replicate_table``) as arrays, where it came from, and how well each candidate
selection statistic separates the grid's points from seed noise.

``load_grid`` reads the JSON Lines into a ``Grid``: per seed set (the sweeps' pool, the truth) each metric
as a (points, seeds) array and the per-question forget truth ratios as (points, seeds, questions), with the
retain model's ratios beside them; only seeds recorded for every point are kept (a partial table is cut
to its complete seeds). ``provenance`` says which commit(s) and which resolved run config the lines were
recorded with (the config with ``method.beta1``, ``method.beta2`` and ``seed`` masked, since they vary).

Signal to noise (``variance_ratios`` of a (points, observations) array):

* ``snr``: variance of the point means (ddof 1) / mean within-point variance (ddof 1). The point means
  carry noise too: with n observations their variance is the true spread plus noise / n;
* ``icc``: the one-way intraclass correlation ``(MSB - MSW) / (MSB + (n - 1) MSW)`` (Shrout and Fleiss
  ICC(1)), the true spread's share of one observation's variance (``icc / (1 - icc)`` is the SNR corrected
  for the noise in the means);
* ``snr_two_way`` / ``icc_two_way``: the same with the shared seed effect removed (each seed's mean over the
  points subtracted; the ICC then from the two-way residual mean square, ``(P - 1)(n - 1)`` d.f.);
* ``mean_correlation``: the mean over pairs of points of the Pearson correlation of their values across
  seeds (what common seeds can cancel: ~0 means pairing buys nothing).

An observation is one run (R = 1) or a disjoint block of R consecutive seeds (R = 3: the run metrics'
block mean; ``pooled_ks_log_p``: the R runs' forget truth ratios pooled, then ``log10`` of the KS p-value
against the retain model's, by the product's ``forget_distances``). Blocks are common to all points,
so the two-way figures remove the block effect.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RUN_STATISTICS = ("forget_quality", "forget_log_quality", "forget_ks_d", "forget_w1", "forget_cvm")
POOLED = "pooled_ks_log_p"  # log10 KS p-value of R runs' pooled truth ratios
RATIO_ITEM = "forget_truth_ratio"  # the per-question statistic (``line["per_item"]``) that is pooled
MASKED = "*"


@dataclass(frozen=True)
class SeedSet:
    """The runs of one seed set. ``values``: metric -> (P, S) array; ``ratios``: (P, S, Q) per-question
    forget truth ratios (None when the lines carry none)."""

    seeds: tuple[int, ...]
    values: dict[str, np.ndarray]
    ratios: np.ndarray | None


@dataclass(frozen=True)
class Grid:
    """A beta1 x beta2 grid's runs. Points are ``"beta1,beta2"``, beta1-major (index ``i * len(beta2) + j``)."""

    points: tuple[str, ...]
    beta1: tuple[float, ...]
    beta2: tuple[float, ...]
    pool: SeedSet
    truth: SeedSet
    reference: np.ndarray | None  # (Q,) the retain model's forget truth ratios
    provenance: dict[str, Any]
    run_config: dict[str, Any]  # one run's resolved config (what every run shares, with its beta1, beta2, seed)


def complete_seeds(table: dict[str, dict[int, Any]], wanted: Sequence[int]) -> tuple[int, ...]:
    """The seeds of ``wanted`` that every point has (in ``wanted``'s order)."""
    return tuple(s for s in wanted if all(s in runs for runs in table.values()))


def seed_set(table: dict[str, dict[int, Any]], points: Sequence[str], seeds: Sequence[int]) -> SeedSet:
    lines = [[table[p][s] for s in seeds] for p in points]
    names = [k for k, v in lines[0][0]["final"].items() if isinstance(v, (int, float))] if seeds else []
    values = {k: np.asarray([[float(line["final"].get(k, np.nan)) for line in row] for row in lines])
              for k in names}
    has_ratios = bool(seeds) and all(RATIO_ITEM in line.get("per_item", {}) for row in lines for line in row)
    ratios = (np.asarray([[line["per_item"][RATIO_ITEM] for line in row] for row in lines], dtype=np.float64)
              if has_ratios else None)
    return SeedSet(tuple(seeds), values, ratios)


def masked_config(config: dict[str, Any]) -> dict[str, Any]:
    """A line's resolved run config with what varies across the grid's runs masked."""
    out = json.loads(json.dumps(config))
    out["seed"] = MASKED
    out.setdefault("method", {}).update(beta1=MASKED, beta2=MASKED)
    return out


def provenance(lines: Sequence[dict[str, Any]], path: Path) -> dict[str, Any]:
    """The commits and the resolved run config(s) the lines were recorded with, against this checkout."""
    from bench.replicate_table import commit

    configs = Counter(json.dumps(masked_config(line["config"]), sort_keys=True) for line in lines)
    first = next(iter(configs))
    here = commit()
    commits = dict(Counter(str(line.get("commit")) for line in lines))
    same = set(commits) == {here.removesuffix("+dirty")}
    return {"table": str(path), "runs": len(lines), "commits": commits, "current_commit": here,
            "same_commit": same, "config": json.loads(first), "config_variants": len(configs),
            "config_sha": hashlib.sha256(first.encode()).hexdigest()[:10]}


def provenance_tag(prov: dict[str, Any]) -> str:
    """One line that every printed table carries."""
    commits = ", ".join(f"{c} ({n})" for c, n in prov["commits"].items())
    warn = "" if prov["same_commit"] else f"; NOT this checkout's commit {prov['current_commit']}"
    return f"[table {Path(prov['table']).name}: {prov['runs']} runs at {commits}; config {prov['config_sha']}{warn}]"


def load_grid(path: Path, pool_seeds: Sequence[int], truth_seeds: Sequence[int]) -> Grid:
    """The grid of a replicate table (``path`` and its shards), cut to the seeds every point has."""
    from bench.replicate_table import load_table
    from bench.search_efficiency import axes

    table, lines = load_table(path)
    if not table:
        raise SystemExit(f"--table {path}: no recorded runs (nor shards {path.stem}.*{path.suffix})")
    b1s, b2s = axes({p: [] for p in table})
    points = tuple(f"{b1},{b2}" for b1 in b1s for b2 in b2s)
    missing = [p for p in points if p not in table]
    if missing:
        raise SystemExit(f"--table {path}: the grid lacks points {missing}; record them or wait for the recording")
    ref_path = path.with_name(path.stem + ".reference.json")
    reference = (np.asarray(json.loads(ref_path.read_text())["reference"]["forget_truth_ratios"], dtype=np.float64)
                 if ref_path.is_file() else None)
    pool, truth = (seed_set(table, points, complete_seeds(table, s)) for s in (pool_seeds, truth_seeds))
    prov = provenance([line for line in lines if line["seed"] in {*pool.seeds, *truth.seeds}], path)
    return Grid(points, b1s, b2s, pool, truth, reference, prov, lines[0]["config"])


def variance_ratios(x: np.ndarray) -> dict[str, float]:
    """Signal-to-noise figures of ``x``: (P points, n observations), observation k common to all points."""
    p, n = x.shape
    if p < 2 or n < 2:
        return {}
    row_var = float(x.mean(axis=1).var(ddof=1))
    msb, msw = n * row_var, float(x.var(axis=1, ddof=1).mean())
    adjusted = x - x.mean(axis=0, keepdims=True)  # the shared seed (block) effect removed
    resid = adjusted - adjusted.mean(axis=1, keepdims=True)
    mse = float((resid ** 2).sum()) / ((p - 1) * (n - 1))
    within2 = float(adjusted.var(axis=1, ddof=1).mean())
    return {"snr": _ratio(row_var, msw), "icc": _ratio(msb - msw, msb + (n - 1) * msw),
            "snr_two_way": _ratio(row_var, within2), "icc_two_way": _ratio(msb - mse, msb + (n - 1) * mse),
            "mean_correlation": mean_correlation(x), "points": p, "observations": n}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("inf") if a > 0 else float("nan")


def mean_correlation(x: np.ndarray) -> float:
    """Mean over pairs of points (rows with spread) of the correlation of their values across observations."""
    rows = x[x.std(axis=1) > 0]
    if len(rows) < 2:
        return float("nan")
    c = np.corrcoef(rows)
    return float(c[np.triu_indices(len(rows), k=1)].mean())


def block_means(x: np.ndarray, r: int) -> np.ndarray:
    """(P, S) -> (P, S // r): the mean of each disjoint block of ``r`` consecutive seeds."""
    b = x.shape[1] // r
    return x[:, :b * r].reshape(x.shape[0], b, r).mean(axis=2)


def pooled_log_p(ratios: np.ndarray, reference: np.ndarray, r: int) -> np.ndarray:
    """(P, S, Q) -> (P, S // r): ``log10`` KS p-value of each block's ``r x Q`` pooled truth ratios
    against the retain model's (``forget_distances``' ``log_quality``, floored as there)."""
    from unlearn.benchmarks.tofu.maths import forget_distances

    b = ratios.shape[1] // r
    return np.asarray([[forget_distances(ratios[p, k * r:(k + 1) * r].ravel(), reference)["log_quality"]
                        for k in range(b)] for p in range(ratios.shape[0])])


def snr_table(grid: Grid, contenders: Sequence[int] = (), r: int = 3,
              extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per statistic, per seed set (truth, pool): the figures at R = 1 (run statistics) and R = ``r``; with
    ``contenders`` (point indices), the same over those points alone under ``"contenders"``. ``extra``:
    further run metrics (the constrained one)."""
    rows = []
    for name in (*RUN_STATISTICS, POOLED, *extra):
        row: dict[str, Any] = {"statistic": name}
        for label, s in (("truth", grid.truth), ("pool", grid.pool)):
            row[label] = {f"R{k}": _figures(x, contenders) for k, x in observations(grid, s, name, r).items()}
        rows.append(row)
    return rows


def observations(grid: Grid, s: SeedSet, name: str, r: int) -> dict[int, np.ndarray]:
    """The statistic's (P, observations) arrays by replicates: {1: runs, r: blocks of r} (what exists)."""
    if name == POOLED:
        ok = s.ratios is not None and grid.reference is not None and s.ratios.shape[1] >= r
        return {r: pooled_log_p(s.ratios, grid.reference, r)} if ok else {}
    if name not in s.values:
        return {}
    return {1: s.values[name], r: block_means(s.values[name], r)}


def _figures(x: np.ndarray, contenders: Sequence[int]) -> dict[str, Any]:
    out = variance_ratios(x)
    if out and contenders:
        out["contenders"] = variance_ratios(x[list(contenders)])
    return out
