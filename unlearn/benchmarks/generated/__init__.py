"""The generated fictitious-author benchmark: TOFU's layout, columns and evaluator, made offline from a
seed (``data``), so that tests and the default demo need no download."""

from __future__ import annotations

from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.generated.data import general_knowledge_rows, generate_benchmark_and_key_texts
from unlearn.benchmarks.generated.options import GeneratedOptions
from unlearn.benchmarks.tofu.plugin import TofuFamily
from unlearn.benchmarks.tofu.sets import FORGET_SPLITS, QASets, assemble


def load_generated(cfg: DataConfig) -> QASets:
    """The generated fictitious-author benchmark (offline, seeded)."""
    opts = cfg.options_as(GeneratedOptions)
    sets, keys = generate_benchmark_and_key_texts(opts.num_authors, opts.qa_per_author, opts.seed)
    return assemble(f"generated/{cfg.split}", cfg.split, sets.__getitem__, general_knowledge_rows(sets),
                    opts.importance_path, lambda forget: keys[cfg.split])


GENERATED = TofuFamily("generated", load_generated, FORGET_SPLITS, GeneratedOptions)

__all__ = ["GENERATED", "GeneratedOptions", "load_generated"]
