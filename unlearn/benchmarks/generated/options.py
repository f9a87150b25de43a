"""The generated benchmark's ``data`` options: TOFU's, and the generator's size and seed."""

from __future__ import annotations

from dataclasses import dataclass

from unlearn.benchmarks.generated.data import TEMPLATES
from unlearn.benchmarks.tofu.options import TofuOptions
from unlearn.errors import check_range


@dataclass(frozen=True)
class GeneratedOptions(TofuOptions):
    """``num_authors`` authors of ``qa_per_author`` questions each, generated from ``seed``."""

    # 40 authors x 10 questions: forget10 holds 40 questions (4 authors), as TOFU forget01, so forget
    # quality (a KS p-value over them) has a useful resolution
    num_authors: int = 40
    qa_per_author: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("seed", self.seed, low=0, high=2**63 - 1)
        check_range("num_authors", self.num_authors, low=2, high=100_000)
        check_range("qa_per_author", self.qa_per_author, low=1, high=len(TEMPLATES))
