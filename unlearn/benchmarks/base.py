"""What a benchmark plug-in provides, and the metric table the rest of the project asks.

A benchmark package (``unlearn.benchmarks.tofu``, ``.generated``, ``.muse``, ``.wmdp``) subclasses
``Benchmark``, declares its ``data`` options as a ``BenchmarkOptions`` dataclass (``options_type``) and
registers one instance in ``unlearn.benchmarks.BENCHMARKS``. The train loop, prepare, sweeps,
report and tracking never name a benchmark's metrics: they read its ``MetricTable`` (names, goals,
which are utility, which the report shows, which need generation) and call its methods.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn.benchmarks.options import BenchmarkOptions
from unlearn.errors import ConfigError, unknown_name

if TYPE_CHECKING:  # the configs import this module's registry lazily; no import cycle at run time
    from unlearn.attacks.config import RelearnConfig
    from unlearn.attacks.relearn import RelearnSplit
    from unlearn.benchmarks.config import DataConfig, EvalConfig
    from unlearn.data.formatting import EncodedQA

Goal = Literal["max", "min", "zero", "none"]


@dataclass(frozen=True)
class Metric:
    """One reported metric.

    ``goal``: ``max`` / ``min``; ``zero`` for a signed score that is best at 0 (privleak; a space
    minimises its ``abs_`` twin); ``none`` for a statistic reported but not optimised (a membership
    attack's AUC, best where the retain model's is). ``utility``: it measures what the model should keep.
    ``shown``: in the report's and the CLI's summary. ``needs_generation``: produced only with
    ``eval.rouge: true`` (greedy generation).
    """

    name: str
    goal: Goal
    utility: bool = False
    shown: bool = False
    needs_generation: bool = False
    doc: str = ""


@dataclass(frozen=True)
class MetricTable:
    """A benchmark's metrics, in report order, and the one that summarises utility (report tie-breaks)."""

    metrics: tuple[Metric, ...]
    utility_metric: str | None = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise ConfigError(f"metric table lists a name twice: {names}")
        if self.utility_metric is not None and self.utility_metric not in names:
            raise ConfigError(f"utility_metric {self.utility_metric!r} is not in the table")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    @property
    def shown(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics if m.shown)

    def get(self, name: str, where: str = "") -> Metric:
        """The metric ``name``; an unknown one raises an error listing the valid names."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise unknown_name("metric", name, self.names, where)

    def higher_is_better(self, name: str, where: str = "") -> bool:
        """Direction of ``name``; a ``zero``-goal metric has none and is refused with its ``abs_`` twin."""
        m = self.get(name, where)
        if m.goal == "none":
            raise ConfigError(f"metric {name!r}{' in ' + where if where else ''} is reported, not optimised (it is "
                              "best where the retain model's is); valid: a metric with a direction, e.g. "
                              + ", ".join(x.name for x in self.metrics if x.goal in ("max", "min"))[:200])
        if m.goal == "zero":
            twin = f"abs_{name}"
            hint = f"; minimise {twin!r} instead" if twin in self.names else ""
            raise ConfigError(f"metric {name!r}{' in ' + where if where else ''} is best at 0, not at a "
                              f"maximum or minimum{hint}")
        return m.goal == "max"

    def tune_mode(self, name: str, where: str = "") -> Literal["max", "min"]:
        """Ray Tune ``mode`` for metric ``name``."""
        return "max" if self.higher_is_better(name, where) else "min"

    def optuna_direction(self, name: str, where: str = "") -> Literal["maximize", "minimize"]:
        """Optuna study ``direction`` for metric ``name``."""
        return "maximize" if self.higher_is_better(name, where) else "minimize"

    def prefixed(self, prefix: str, *, utility: bool = True) -> MetricTable:
        """A copy with every name prefixed (an attack's evaluation of the same benchmark, e.g. ``q4_``):
        same goals, utility and generation flags, none shown (a report shows them when a space names them;
        ``unlearn-sweep run`` prints them beside their metric). ``utility=False``: the utility metrics left out."""
        kept = tuple(replace(m, name=prefix + m.name, shown=False) for m in self.metrics if utility or not m.utility)
        summary = prefix + self.utility_metric if self.utility_metric is not None and utility else None
        return MetricTable(kept, summary)

    def extended(self, *others: MetricTable) -> MetricTable:
        """This table followed by ``others``' metrics (their utility metrics not this one's summary)."""
        return MetricTable(self.metrics + tuple(m for t in others for m in t.metrics), self.utility_metric)

    def order(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """``metrics`` in table order (names outside the table dropped)."""
        return {k: metrics[k] for k in self.names if k in metrics}


@dataclass(frozen=True)
class EvalOutput:
    """An evaluation: metrics by name, and the statistics this model gives as a retain (reference) model.

    ``per_item``: the per-question (per-item) statistics the metrics are computed from, by the
    benchmark's own names, one list per statistic in the order of the set it is over (TOFU's forget
    questions; MUSE's verbmem rows, knowmem questions, privleak texts; WMDP's questions of each task): what a
    run keeps in ``results.json`` so that any statistic can be recomputed offline without retraining.
    """

    metrics: dict[str, float]
    reference: dict[str, Any]
    generations: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each evaluation phase (bench/)
    per_item: dict[str, list[float]] = field(default_factory=dict)


class Benchmark(ABC):
    """A benchmark plug-in. ``data`` is whatever ``load`` returns (the package's own sets type).

    The retain model's statistics (``reference``) are a JSON-able mapping: what this benchmark's
    relative metrics need (TOFU: forget truth ratios for forget quality; MUSE: the privleak AUC).
    """

    name: str
    metrics: MetricTable
    splits: tuple[str, ...]
    default_split: str
    reference_doc: str  # what the reference statistics are, for messages
    # its own data options, written flat in ``data`` (``unlearn.benchmarks.options``); none by default
    options_type: type[BenchmarkOptions] = BenchmarkOptions
    # whether it implements the relearning attack's split (``forget_count``, ``relearn_sets``), what the
    # split's units are (messages, the record), and the fewest held-out units its metrics take
    relearns: bool = False
    relearn_unit: str = "forget row"
    relearn_min_heldout: int = 1
    # whether relative metrics need the retain model's statistics (a hub target without a retain model
    # then needs prepare.retain_stats); False: absolute metrics only (WMDP's accuracies)
    needs_reference: bool = True

    # --- configuration -------------------------------------------------------------------------------
    @property
    def title(self) -> str:
        """How messages name the benchmark."""
        return f"benchmark {self.name!r}"

    def check_config(self, cfg: DataConfig) -> None:
        """Checks across ``cfg``'s common fields and options (the split is checked against ``splits``, the
        options by their own type); cheap, no I/O beyond stat calls."""

    def has_key_texts(self, cfg: DataConfig) -> bool:
        """Whether the forget split carries key-token annotations (``method.importance``)."""
        return False

    # --- data ----------------------------------------------------------------------------------------
    @abstractmethod
    def load(self, cfg: DataConfig) -> Any:
        """Load and validate every row the benchmark needs (raises ConfigError before any model loads)."""

    def data_notes(self, data: Any) -> tuple[str, ...]:
        """Lines the run prints about the loaded data (e.g. which probes a capped run found); none by default."""
        return ()

    @abstractmethod
    def tokenizer_corpus(self, data: Any, cfg: DataConfig) -> list[str]:
        """Text a tiny model's tokenizer is trained on."""

    @abstractmethod
    def finetune_examples(self, tokenizer, data: Any, cfg: DataConfig, model: Literal["target", "retain"]
                          ) -> list[EncodedQA]:
        """What prepare fine-tunes the target (forget + retain) or the retain model (retain only) on."""

    @abstractmethod
    def unlearn_examples(self, tokenizer, data: Any, cfg: DataConfig, *, key_texts: bool
                         ) -> tuple[list[EncodedQA], list[EncodedQA]]:
        """Forget and retain training examples; ``key_texts``: forget examples carry importance masks."""

    def forget_key_texts(self, data: Any) -> tuple[str, ...] | None:
        """One key-token annotation per forget row, or None."""
        return None

    # --- evaluation ----------------------------------------------------------------------------------
    @abstractmethod
    def evaluate(self, model, tokenizer, data: Any, cfg: DataConfig, eval_cfg: EvalConfig,
                 reference: Mapping[str, Any] | None, *, utility: bool = True) -> EvalOutput:
        """Every metric of the table the model, ``eval_cfg`` and ``reference`` allow. ``utility=False``
        (an attack's evaluation): the utility metrics are not needed, and a plug-in may skip what only
        they need (TOFU: the retain, real-author and world-fact sets)."""

    # --- relearning attack (``eval.relearn``) ----------------------------------------------------------
    def forget_count(self, data: Any) -> int:
        """How many forget units (``relearn_unit``) the relearning attack splits between relearning and
        evaluation."""
        raise ConfigError(f"{self.title} has no relearning attack; valid: eval.relearn: null")

    def relearn_scored(self, data: Any, split: RelearnSplit, cfg: RelearnConfig) -> dict[str, tuple[int, ...]]:
        """Where the metrics are not over the held-out units themselves: the rows of each evaluation set the
        relearned model is scored on, by set name (``RelearnSplit.scored``); none by default. Called once,
        before any model loads; raises ConfigError when ``split`` leaves a set its metrics need empty."""
        return {}

    def relearn_sets(self, tokenizer, data: Any, cfg: DataConfig, split: RelearnSplit,
                     reference: Mapping[str, Any] | None) -> tuple[list[EncodedQA], Any, Mapping[str, Any] | None]:
        """The relearning examples (the units ``split.relearn``, encoded as unlearning trains on them), and the
        data and reference statistics the relearned model is scored with: what ``split`` held out (``evaluate``
        takes them as they are)."""
        raise ConfigError(f"{self.title} has no relearning attack; valid: eval.relearn: null")

    @abstractmethod
    def reference_from_file(self, path: str | Path) -> dict[str, Any]:
        """The retain model's statistics from a file (open-unlearning's or this project's format)."""

    def check_reference(self, reference: Mapping[str, Any], data: Any) -> None:
        """Raise ConfigError if ``reference`` does not fit ``data`` (e.g. one ratio per forget question)."""

    def save_reference(self, path: str | Path, reference: Mapping[str, Any]) -> None:
        """Write ``reference`` as this project's JSON (what ``reference_from_file`` reads back)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(reference), indent=1, default=float) + "\n")


def check_rows(rows: Sequence[Any], what: str) -> None:
    """Raise ConfigError naming ``what`` when it has no rows."""
    if len(rows) == 0:
        raise ConfigError(f"{what} has no rows")
