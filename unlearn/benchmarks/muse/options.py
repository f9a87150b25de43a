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
    benchmark's default); ``max_articles`` / ``max_questions``: a small run's articles (those its probes
    come from first) and probe rows; ``max_privleak``: the first N privleak forget and holdout texts (None:
    all); ``mia_max_length``: tokens of each privleak text the membership attacks score (None:
    ``data.max_length``, what the model was trained at; the model's context caps it); ``probe_windows``: a
    capped run also trains on each kept verbmem and knowmem probe exactly as it is evaluated (forget probes
    with the forget corpus, retain knowmem with the retain corpus), for a small model that memorises text
    only at the positions it saw it at and cannot answer questions from articles."""

    corpus: str | None = None
    retain_split: str | None = None
    max_articles: int | None = None
    max_questions: int | None = None
    max_privleak: int | None = None
    mia_max_length: int | None = None
    probe_windows: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corpus is not None and self.corpus not in CORPORA:
            raise unknown_name("MUSE corpus", self.corpus, CORPORA, "data.corpus")
        if self.max_articles is not None:
            check_range("data.max_articles", self.max_articles, low=1)
        if self.max_questions is not None:
            check_range("data.max_questions", self.max_questions, low=1)
        if self.max_privleak is not None:
            check_range("data.max_privleak", self.max_privleak, low=1)
        if self.mia_max_length is not None:
            check_range("data.mia_max_length", self.mia_max_length, low=2)
