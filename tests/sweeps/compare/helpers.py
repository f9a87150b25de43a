"""The tiny comparison of the compare tests: two methods on tests/helpers.py's tiny setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def tiny_compare(tmp_path: Path, cache_dir: Path, num_samples: int = 2, epochs: int = 1) -> dict[str, Any]:
    """SatImp-GD (beta1) against GA with uniform weights (lr), 2 trials each, a confirmation of top 2 on 6 runs;
    the setup is tests/helpers.py's tiny_space's (its prepare is the session's)."""
    return {
        "name": "tiny-compare",
        "base": {"data": {"num_authors": 8, "qa_per_author": 4}, "model": {"name": "tiny-2l"},
                 "prepare": {"epochs": 6}, "optim": {"epochs": epochs, "batch_size": 4},
                 "eval": {"max_new_tokens": 12, "batch_size": 64}, "scaling": {"launcher": "local"},
                 "cache_dir": str(cache_dir)},
        "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
        "budget": {"num_samples": num_samples, "max_concurrent": 2, "seed": 0, "confirm": {"top": 2, "runs": 6}},
        "methods": {
            "satimp": {"method": {"weighting": "satimp", "objective": "gd"},
                       "parameters": {"method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0}},
                       "default": {"method.beta1": 5.0}},
            "ga": {"method": {"weighting": "uniform", "objective": "ga"},
                   "parameters": {"optim.lr": {"distribution": "loguniform", "low": 1.0e-3, "high": 4.0e-3}},
                   "default": {"optim.lr": 2.0e-3}},
        },
    }


def write_spec(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # methods run in the spec's order
    return path
