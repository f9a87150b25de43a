"""Hypothesis (ii) of a comparison spec at each method's untuned default (no sweep): Spearman's rank
correlation between the method's token weights and the prepared target model's token likelihood over the
forget answer tokens (``sweeps.compare.weights``). A comparison answers it at the confirmed optima instead.

    python -m bench.compare_weights paper      # search_spaces/compare/paper.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sweeps.compare import load_compare
from sweeps.compare.weights import forget_token_ce, weight_likelihood_correlation
from sweeps.space import trial_run_config


def main(spec_name: str = "paper") -> dict[str, float]:
    spec = load_compare(spec_name)
    ces = forget_token_ce(trial_run_config(spec.methods[0].space, {}, seed=0))  # the same target for every method
    tokens = sum(int(m.sum()) for _, m in ces)
    out = {}
    for m in spec.methods:
        cfg = trial_run_config(m.space, m.default or {}, seed=0)
        out[m.name] = weight_likelihood_correlation(cfg, ces)
        print(f"{m.name:>8} at {m.default}: Spearman rho(weight, p) = {out[m.name]:.3f} over {tokens} forget answer tokens")
    path = Path(__file__).parent / "results" / f"compare_weights_{spec.name}.json"
    path.write_text(json.dumps({"spec": spec.name, "tokens": tokens, "rho_at_default": out}, indent=1))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:])
