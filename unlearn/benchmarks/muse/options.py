"""MUSE's ``data`` options: which corpus, which retain corpus, and row caps for small runs."""

from __future__ import annotations

from dataclasses import dataclass

from unlearn.benchmarks.options import BenchmarkOptions
from unlearn.errors import check_range, unknown_name

CORPORA = ("news", "books")
DEFAULT_CORPUS = "news"


@dataclass(frozen=True)
class MuseOptions(BenchmarkOptions):
    """``corpus``: ``news`` or ``books`` (None: news); ``retain_split``: the retain corpus (None: the
    benchmark's default); ``max_articles`` / ``max_questions``: the first N rows, for small runs."""

    corpus: str | None = None
    retain_split: str | None = None
    max_articles: int | None = None
    max_questions: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corpus is not None and self.corpus not in CORPORA:
            raise unknown_name("MUSE corpus", self.corpus, CORPORA, "data.corpus")
        if self.max_articles is not None:
            check_range("data.max_articles", self.max_articles, low=1)
        if self.max_questions is not None:
            check_range("data.max_questions", self.max_questions, low=1)
