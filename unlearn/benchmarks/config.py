"""The data and evaluation configs every benchmark shares; each benchmark checks its own fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unlearn.data.formatting import PROMPT_FORMATS, PromptFormat
from unlearn.errors import ConfigError, check_range, unknown_name


@dataclass(frozen=True)
class DataConfig:
    """Which benchmark and forget split to load, and how long an encoded example may be.

    ``benchmark`` names a registered plug-in (``unlearn.benchmarks.BENCHMARKS``); ``split`` one of its
    forget splits (None: the benchmark's default, e.g. TOFU's ``forget10``, MUSE's ``forget``).
    ``path`` is the benchmark's local directory (None: the Hugging Face hub).

    TOFU family (``tofu``, ``generated``): ``num_authors``, ``qa_per_author`` and ``seed`` only shape the
    generated benchmark. ``importance_path`` is a key-token annotation file of the forget split
    (``unlearn.data.importance``) replacing the benchmark's own (TOFU: the SatImp authors' annotations
    shipped with the package; generated: its key facts); ``method.importance`` uses them.
    ``prompt_format`` names a ``PROMPT_FORMATS`` entry (``tofu_llama2``, ``tofu_phi``: the formats
    TOFU's models were fine-tuned with), used in fine-tuning, unlearning and evaluation.

    MUSE: ``corpus`` (``news`` or ``books``; None: news), ``retain_split`` (the retain corpus; None:
    the benchmark's default), ``max_articles`` / ``max_questions`` (first N rows, for small runs).

    WMDP: ``corpus`` (``cyber`` or ``bio``; None: cyber), ``path`` (a directory of the corpora's JSON Lines;
    None: the hub, which lacks the access-controlled biology forget corpus), ``tasks_path`` (a directory of
    lm-evaluation-harness task YAMLs replacing the harness's own, e.g. the offline fixture), ``mmlu``
    (``full``: every MMLU subject; ``subset``: the four WMDP-related ones, for per-epoch evaluation),
    ``max_articles`` (first N documents of each corpus), ``max_questions`` (first N questions of each task).
    """

    benchmark: str = "generated"
    path: str | None = None
    split: str | None = None
    # 40 authors x 10 questions: forget10 holds 40 questions (4 authors), as TOFU forget01, so forget
    # quality (a KS p-value over them) has a useful resolution
    num_authors: int = 40
    qa_per_author: int = 10
    seed: int = 0
    max_length: int = 96
    importance_path: str | None = None
    prompt_format: str = "auto"
    corpus: str | None = None
    retain_split: str | None = None
    max_articles: int | None = None
    max_questions: int | None = None
    tasks_path: str | None = None
    mmlu: str = "full"

    def __post_init__(self) -> None:
        from unlearn.benchmarks import BENCHMARKS  # the registry imports the plug-ins, which import this

        if self.benchmark not in BENCHMARKS:
            raise unknown_name("benchmark", self.benchmark, BENCHMARKS.names(), "data.benchmark")
        bench = BENCHMARKS.get(self.benchmark)
        for name in ("path", "importance_path", "tasks_path"):  # absolute: a trial's process runs in another directory
            if getattr(self, name) is not None:
                object.__setattr__(self, name, str(Path(getattr(self, name)).expanduser().resolve()))
        if self.split is None:
            object.__setattr__(self, "split", bench.default_split)  # resolved once: hashes and records agree
        if self.split not in bench.splits:
            raise unknown_name(f"{self.benchmark} split", self.split, bench.splits, "data.split")
        check_range("seed", self.seed, low=0, high=2**63 - 1)
        check_range("max_length", self.max_length, low=8, high=65_536)
        for name in ("max_articles", "max_questions"):
            if getattr(self, name) is not None:
                check_range(f"data.{name}", getattr(self, name), low=1)
        if self.prompt_format not in PROMPT_FORMATS:
            raise unknown_name("prompt format", self.prompt_format, PROMPT_FORMATS, "data.prompt_format")
        if self.importance_path is not None and not Path(self.importance_path).expanduser().is_file():
            raise ConfigError(f"data.importance_path={self.importance_path!r} is not a file; valid: a key-token "
                              "annotation file (JSON lines of question, key_text), or null for the benchmark's own")
        bench.check_config(self)

    @property
    def prompt(self) -> PromptFormat:
        """The ``PromptFormat`` named by ``prompt_format``."""
        return PROMPT_FORMATS[self.prompt_format]


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation knobs every benchmark reads.

    ``rouge=False`` skips generation, so the metrics that need it (``Metric.needs_generation``: ROUGE,
    and what is built on it, such as TOFU's ``model_utility``) are left out. ``max_new_tokens`` is the
    generation length where the benchmark does not fix its own (TOFU; MUSE follows open-unlearning's
    128 / 32 tokens).
    """

    batch_size: int = 32
    max_new_tokens: int = 40
    max_length: int = 96  # prompt + answer tokens of a scored sequence; longer answers are truncated
    rouge: bool = True

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, low=1)
        check_range("max_new_tokens", self.max_new_tokens, low=1)
        check_range("max_length", self.max_length, low=2)
