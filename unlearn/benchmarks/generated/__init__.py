"""The generated fictitious-author benchmark: TOFU's layout, columns and evaluator, made offline from a
seed (``data``), so that tests and the default demo need no download."""

from __future__ import annotations

from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.generated.data import TEMPLATES, general_knowledge_rows, generate_benchmark_and_key_texts
from unlearn.benchmarks.tofu.plugin import TofuFamily
from unlearn.benchmarks.tofu.sets import FORGET_SPLITS, QASets, assemble
from unlearn.errors import check_range


def check_generated(cfg: DataConfig) -> None:
    """The generator's own knobs."""
    check_range("num_authors", cfg.num_authors, low=2, high=100_000)
    check_range("qa_per_author", cfg.qa_per_author, low=1, high=len(TEMPLATES))


def load_generated(cfg: DataConfig) -> QASets:
    """The generated fictitious-author benchmark (offline, seeded)."""
    sets, keys = generate_benchmark_and_key_texts(cfg.num_authors, cfg.qa_per_author, cfg.seed)
    return assemble(f"generated/{cfg.split}", cfg.split, sets.__getitem__, general_knowledge_rows(sets), cfg,
                    lambda forget: keys[cfg.split])


GENERATED = TofuFamily("generated", load_generated, FORGET_SPLITS, check=check_generated)

__all__ = ["GENERATED", "load_generated"]
