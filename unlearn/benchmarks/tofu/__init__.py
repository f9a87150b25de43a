"""TOFU (Maini et al., 2024): question-answer pairs about fictitious authors, from the hub
(``locuslab/TOFU``) or a local directory, with the SatImp authors' key-token annotations.

Modules: ``data`` (loading one configuration), ``sets`` (a forget split's rows), ``evaluate`` (the
evaluator), ``maths`` (its pure maths), ``names`` (the metric table), ``reference`` (the retain model's
statistics), ``options`` (its ``data`` options) and ``plugin`` (the benchmark plug-in; both shared with the
generated benchmark).
"""

from __future__ import annotations

from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.tofu.data import load_tofu_config
from unlearn.benchmarks.tofu.options import TofuOptions
from unlearn.benchmarks.tofu.plugin import TofuFamily
from unlearn.benchmarks.tofu.sets import QASets, assemble
from unlearn.data.importance import ANNOTATED_TOFU_SPLITS, load_key_texts, packaged_annotation


def load_tofu(cfg: DataConfig) -> QASets:
    """TOFU from ``cfg.path`` (a directory of JSON lines) or the hub, with the SatImp authors' key tokens."""
    importance_path = cfg.options_as(TofuOptions).importance_path
    return assemble(f"tofu/{cfg.split}", cfg.split, lambda c: load_tofu_config(c, cfg.path), [], importance_path,
                    lambda forget: load_key_texts(packaged_annotation(cfg.split), forget, cfg.split))


TOFU = TofuFamily("tofu", load_tofu, ANNOTATED_TOFU_SPLITS, TofuOptions)

__all__ = ["TOFU", "TofuFamily", "TofuOptions", "load_tofu"]
