"""The one data entry point: a ``DataConfig`` in, a ``Benchmark`` (forget/retain/holdout/eval rows) out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, get_args

from unlearn.data.formatting import PROMPT_FORMATS, PromptFormat
from unlearn.data.generated import TEMPLATES, general_knowledge_rows, generate_benchmark_and_key_texts
from unlearn.data.importance import ANNOTATED_TOFU_SPLITS, load_key_texts, packaged_annotation
from unlearn.data.tofu import load_tofu_config
from unlearn.errors import ConfigError, check_range, unknown_name
from unlearn.registry import Registry

BenchmarkName = Literal["generated", "tofu"]
Split = Literal["forget01", "forget05", "forget10"]
EVAL_SET_NAMES = ("forget", "retain", "real_authors", "world_facts")


@dataclass(frozen=True)
class DataConfig:
    """Which benchmark and forget split to load, and how long an encoded example may be.

    ``num_authors``, ``qa_per_author`` and ``seed`` only shape the generated benchmark; ``path`` is
    TOFU's local directory (None: the Hugging Face hub). ``importance_path`` is a key-token annotation
    file of the forget split (``unlearn.data.importance``) replacing the benchmark's own (TOFU: the
    SatImp authors' annotations shipped with the package; generated: its key facts); ``method.importance``
    uses them. ``prompt_format`` names a ``PROMPT_FORMATS`` entry (``tofu_llama2``, ``tofu_phi``: the
    formats TOFU's models were fine-tuned with), used in fine-tuning, unlearning and evaluation.
    """

    benchmark: BenchmarkName = "generated"
    path: str | None = None
    split: Split = "forget10"
    # 40 authors x 10 questions: forget10 holds 40 questions (4 authors), as TOFU forget01, so forget
    # quality (a KS p-value over them) has a useful resolution
    num_authors: int = 40
    qa_per_author: int = 10
    seed: int = 0
    max_length: int = 96
    importance_path: str | None = None
    prompt_format: str = "auto"

    def __post_init__(self) -> None:
        if self.benchmark not in get_args(BenchmarkName):
            raise unknown_name("benchmark", self.benchmark, get_args(BenchmarkName))
        if self.split not in get_args(Split):
            raise unknown_name("split", self.split, get_args(Split))
        check_range("num_authors", self.num_authors, low=2, high=100_000)
        check_range("qa_per_author", self.qa_per_author, low=1, high=len(TEMPLATES))
        check_range("seed", self.seed, low=0, high=2**63 - 1)
        check_range("max_length", self.max_length, low=8, high=65_536)
        if self.prompt_format not in PROMPT_FORMATS:
            raise unknown_name("prompt format", self.prompt_format, PROMPT_FORMATS, "data.prompt_format")
        if self.importance_path is not None and not Path(self.importance_path).expanduser().is_file():
            raise ConfigError(f"data.importance_path={self.importance_path!r} is not a file; valid: a key-token "
                              "annotation file (JSON lines of question, key_text), or null for the benchmark's own")

    @property
    def prompt(self) -> PromptFormat:
        """The ``PromptFormat`` named by ``prompt_format``."""
        return PROMPT_FORMATS[self.prompt_format]


@dataclass(frozen=True)
class Benchmark:
    """Rows of one benchmark split. ``*_eval`` are the ``_perturbed`` configurations (with
    ``perturbed_answer`` lists); ``general_knowledge`` is the tiny models' pretraining set
    (empty for TOFU, whose models already know the world)."""

    name: str
    forget: tuple[dict, ...]
    retain: tuple[dict, ...]
    holdout: tuple[dict, ...]
    full: tuple[dict, ...]
    forget_eval: tuple[dict, ...]
    retain_eval: tuple[dict, ...]
    real_authors_eval: tuple[dict, ...]
    world_facts_eval: tuple[dict, ...]
    general_knowledge: tuple[dict, ...] = ()
    forget_key_texts: tuple[str, ...] | None = None  # one key-token annotation per forget row; None: none

    def eval_sets(self) -> dict[str, tuple[dict, ...]]:
        """The evaluation sets keyed ``forget``, ``retain``, ``real_authors``, ``world_facts``."""
        return {
            "forget": self.forget_eval, "retain": self.retain_eval,
            "real_authors": self.real_authors_eval, "world_facts": self.world_facts_eval,
        }


def split_configs(split: str) -> dict[str, str]:
    """Configuration name of each ``Benchmark`` field for forget split ``split`` (e.g. ``forget10``)."""
    if split not in get_args(Split):
        raise unknown_name("split", split, get_args(Split))
    pct = split.removeprefix("forget")
    return {
        "forget": split, "retain": f"retain{100 - int(pct)}", "holdout": f"holdout{pct}", "full": "full",
        "forget_eval": f"{split}_perturbed", "retain_eval": "retain_perturbed",
        "real_authors_eval": "real_authors_perturbed", "world_facts_eval": "world_facts_perturbed",
    }


def _assemble(name: str, split: str, get: Callable[[str], list[dict]], general: list[dict],
              cfg: DataConfig, own_key_texts: Callable[[list[dict]], tuple[str, ...]] | None) -> Benchmark:
    """The benchmark's rows; key texts from ``cfg.importance_path`` when set, else the benchmark's own."""
    rows = {f: tuple(get(c)) for f, c in split_configs(split).items()}
    forget = list(rows["forget"])
    if cfg.importance_path is not None:
        keys = load_key_texts(cfg.importance_path, forget, split)
    else:
        keys = own_key_texts(forget) if own_key_texts is not None else None
    return Benchmark(name=name, general_knowledge=tuple(general), forget_key_texts=keys, **rows)


BENCHMARKS: Registry[Callable[[DataConfig], Benchmark]] = Registry("benchmark")

# The forget splits each benchmark annotates with key tokens itself (``Benchmark.forget_key_texts``).
ANNOTATED_SPLITS: dict[str, tuple[str, ...]] = {"generated": get_args(Split), "tofu": ANNOTATED_TOFU_SPLITS}


def has_key_texts(cfg: DataConfig) -> bool:
    """Whether the benchmark ``cfg`` loads carries key-token annotations of its forget split."""
    return cfg.importance_path is not None or cfg.split in ANNOTATED_SPLITS.get(cfg.benchmark, ())


@BENCHMARKS.register("generated")
def load_generated(cfg: DataConfig) -> Benchmark:
    """The generated fictitious-author benchmark (offline, seeded)."""
    sets, keys = generate_benchmark_and_key_texts(cfg.num_authors, cfg.qa_per_author, cfg.seed)
    return _assemble(f"generated/{cfg.split}", cfg.split, sets.__getitem__, general_knowledge_rows(sets), cfg,
                     lambda forget: keys[cfg.split])


@BENCHMARKS.register("tofu")
def load_tofu(cfg: DataConfig) -> Benchmark:
    """TOFU from ``cfg.path`` (a directory of JSON lines) or the hub, with the SatImp authors' key tokens."""
    return _assemble(f"tofu/{cfg.split}", cfg.split, lambda c: load_tofu_config(c, cfg.path), [], cfg,
                     lambda forget: load_key_texts(packaged_annotation(cfg.split), forget, cfg.split))


def load_benchmark(cfg: DataConfig) -> Benchmark:
    """Load the benchmark named by ``cfg.benchmark`` for split ``cfg.split``.

    ``forgetXX`` comes with ``retain{100-XX}``, ``holdoutXX`` and ``forgetXX_perturbed``.
    """
    return BENCHMARKS.get(cfg.benchmark)(cfg)


_TEXT_COLUMNS = ("question", "answer", "paraphrased_question", "paraphrased_answer",
                 "option1", "option2", "option3", "option4")


def text_corpus(bench: Benchmark, fmt: PromptFormat | None = PromptFormat()) -> list[str]:
    """Every distinct string of the benchmark, in a fixed order: a tokenizer's training text.

    Questions, answers, paraphrases, perturbed answers and options; with ``fmt``, also each question
    wrapped in its plain prompt, so that the prefixes (``Question:``, ``Answer:``) become few tokens.
    """
    seen: dict[str, None] = {}
    for f in fields(bench):
        rows = getattr(bench, f.name)
        if not isinstance(rows, tuple) or f.name == "forget_key_texts":  # strings, not rows
            continue
        for row in rows:
            for col in _TEXT_COLUMNS:
                if isinstance(row.get(col), str):
                    seen.setdefault(row[col])
            for text in row.get("perturbed_answer") or ():
                seen.setdefault(text)
            if fmt is not None:
                seen.setdefault(f"{fmt.question_prefix}{row['question']}{fmt.answer_prefix}")
    return list(seen)
