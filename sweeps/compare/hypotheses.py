"""The spec's hypotheses, each answered ``holds``, ``does not hold`` or ``undecided at this budget``:

* ``better``: the paired difference of the objective (A minus B, signed so that positive favours A) over the
  confirmation seeds both confirmed optima ran (common seeds), with its 95 % t interval: holds when the
  interval lies above 0, does not hold when below, undecided when it holds 0 (or either is unconfirmed).
* ``weights``: Spearman's rank correlation of A's token weights (at its confirmed parameters) with the
  target model's token likelihood over the forget set (``sweeps.compare.weights``): holds when its sign is
  the claimed one, does not hold when opposite, undecided when the weights are constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sweeps.compare.leaderboard import Leaderboard
from sweeps.compare.spec import CompareSpec, Hypothesis
from sweeps.racing import paired_difference
from sweeps.space import trial_run_config

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided at this budget"


@dataclass(frozen=True)
class Verdict:
    claim: str
    verdict: str
    evidence: str


def better(board: Leaderboard, h: Hypothesis) -> Verdict:
    a, b = board.row(h.a), board.row(h.b)
    if a.status != "confirmed" or b.status != "confirmed":
        return Verdict(h.describe(), UNDECIDED, f"not both confirmed ({h.a}: {a.status}, {h.b}: {b.status})")
    sign = 1.0 if board.direction == "maximize" else -1.0
    d = paired_difference({h.a: {i: sign * v for i, v in a.values.items()},
                           h.b: {i: sign * v for i, v in b.values.items()}}, h.a, h.b)
    verdict = HOLDS if d.low > 0 else FAILS if d.high < 0 else UNDECIDED
    return Verdict(h.describe(), verdict, f"{'' if sign > 0 else '-('}{board.metric} {h.a} - {h.b}"
                   f"{'' if sign > 0 else ')'} = {d.mean:.4g} [{d.low:.4g}, {d.high:.4g}] over {d.seeds} common seeds")


def weights(spec: CompareSpec, board: Leaderboard, h: Hypothesis, ces=None) -> Verdict:
    from sweeps.compare.weights import forget_token_ce, weight_likelihood_correlation

    row = board.row(h.a)
    space = spec.method(h.a).space
    params = row.params or (spec.method(h.a).default or {})
    cfg = trial_run_config(space, params, seed=0)
    rho = weight_likelihood_correlation(cfg, ces if ces is not None else forget_token_ce(cfg))
    want = 1.0 if h.order == "increasing" else -1.0
    verdict = UNDECIDED if math.isnan(rho) else HOLDS if rho * want > 0 else FAILS
    at = ("its confirmed parameters" if row.status == "confirmed" else "its search best's parameters (not confirmed)"
          if row.params else f"its default parameters ({row.status})")
    return Verdict(h.describe(), verdict, f"Spearman rho(weight, p) = {rho:.3f} over the forget answer tokens, "
                   f"at {at} ({', '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}' for k, v in params.items())})")


def test_hypotheses(spec: CompareSpec, board: Leaderboard) -> list[Verdict]:
    return [better(board, h) if h.kind == "better" else weights(spec, board, h) for h in spec.hypotheses]


test_hypotheses.__test__ = False  # not a pytest test


def format_verdicts(verdicts: list[Verdict]) -> str:
    if not verdicts:
        return ""
    lines = ["", "## Hypotheses", "", "| claim | verdict | evidence |", "|---|---|---|"]
    lines += [f"| {v.claim} | {v.verdict} | {v.evidence} |" for v in verdicts]
    return "\n".join(lines) + "\n"
