"""WMDP's ``data`` options: the subset, the harness's tasks, the MMLU scope and row caps for small runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from unlearn.benchmarks.options import PATH, BenchmarkOptions
from unlearn.benchmarks.wmdp import names
from unlearn.benchmarks.wmdp.data import CORPORA
from unlearn.errors import ConfigError, check_range, unknown_name

DEFAULT_CORPUS = "cyber"  # the public one: both corpora are on the hub


@dataclass(frozen=True)
class WmdpOptions(BenchmarkOptions):
    """``corpus``: ``cyber`` or ``bio`` (None: cyber); ``tasks_path``: a directory of lm-evaluation-harness
    task YAMLs replacing the harness's own (e.g. the offline fixture); ``mmlu``: ``full`` (every MMLU
    subject) or ``subset`` (the four WMDP-related ones, for per-epoch evaluation); ``max_articles``: the
    first N documents of each corpus; ``max_questions``: the first N questions of each task."""

    corpus: str | None = None
    tasks_path: str | None = field(default=None, metadata=PATH)
    mmlu: str = "full"
    max_articles: int | None = None
    max_questions: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.corpus is not None and self.corpus not in CORPORA:
            raise unknown_name("WMDP subset", self.corpus, CORPORA, "data.corpus")
        if self.mmlu not in names.MMLU_CHOICES:
            raise ConfigError(f"data.mmlu={self.mmlu!r} is not valid; valid: full (every MMLU subject), subset "
                              f"({', '.join(names.MMLU_SUBSET)}: for per-epoch evaluation)")
        if self.tasks_path is not None and not Path(self.tasks_path).is_dir():
            raise ConfigError(f"data.tasks_path={self.tasks_path!r} is not a directory; valid: a directory of "
                              "lm-evaluation-harness task YAMLs, or null for the installed harness's tasks")
        if self.max_articles is not None:
            check_range("data.max_articles", self.max_articles, low=1)
        if self.max_questions is not None:
            check_range("data.max_questions", self.max_questions, low=1)
