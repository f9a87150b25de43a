"""The data and evaluation configs every benchmark shares; each benchmark's own options are its plug-in's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, TypeVar, get_type_hints

from unlearn.attacks.config import QuantConfig, RelearnConfig
from unlearn.benchmarks.options import BenchmarkOptions, absolute_path, flat_options, option_keys, options_from_flat
from unlearn.config import CustomConfig, build, coerce_fields
from unlearn.errors import ConfigError, check_range, unknown_name

O = TypeVar("O", bound=BenchmarkOptions)


@dataclass(frozen=True)
class DataConfig(CustomConfig):
    """Which benchmark and forget split to load, how long an encoded example may be, and the benchmark's options.

    ``benchmark`` names a registered plug-in (``unlearn.benchmarks.BENCHMARKS``); ``split`` one of its
    forget splits (None: the benchmark's default, e.g. TOFU's ``forget10``, MUSE's ``forget``).
    ``path`` is the benchmark's local directory (None: the Hugging Face hub). ``options`` is an instance
    of the plug-in's ``options_type`` (None: its defaults), e.g. ``MuseOptions(max_articles=8)``.

    Users and records write the options flat, next to the common keys (``data.max_articles=8``):
    ``from_dict`` routes them to the benchmark's options type and ``to_dict`` writes every registered
    benchmark's option keys (``unlearn.benchmarks.options``).
    """

    benchmark: str = "generated"
    path: str | None = None
    split: str | None = None
    max_length: int = 96
    options: BenchmarkOptions | None = None

    def __post_init__(self) -> None:
        from unlearn.benchmarks import BENCHMARKS  # the registry imports the plug-ins, which import this

        if self.benchmark not in BENCHMARKS:
            raise unknown_name("benchmark", self.benchmark, BENCHMARKS.names(), "data.benchmark")
        bench = BENCHMARKS.get(self.benchmark)
        if self.path is not None:  # absolute: a trial's process runs in another directory
            object.__setattr__(self, "path", absolute_path(self.path))
        if self.split is None:
            object.__setattr__(self, "split", bench.default_split)  # resolved once: hashes and records agree
        if self.split not in bench.splits:
            raise unknown_name(f"{self.benchmark} split", self.split, bench.splits, "data.split")
        check_range("max_length", self.max_length, low=8, high=65_536)
        if self.options is None:
            object.__setattr__(self, "options", bench.options_type())
        if type(self.options) is not bench.options_type:
            raise ConfigError(f"data.options is a {type(self.options).__name__}, not benchmark {self.benchmark!r}'s; "
                              f"valid: a {bench.options_type.__name__}")
        bench.check_config(self)

    def options_as(self, tp: type[O]) -> O:
        """``options``, typed as ``tp``: the calling plug-in's own options type (or a base of it)."""
        if not isinstance(self.options, tp):
            raise TypeError(f"data.options is a {type(self.options).__name__}, not a {tp.__name__}")
        return self.options

    @classmethod
    def config_from_dict(cls, data: Mapping[str, Any], where: str) -> DataConfig:
        """The common keys, then the rest as the named benchmark's options (another's or an unknown key refused)."""
        from unlearn.benchmarks import get_benchmark

        kwargs = coerce_fields(cls, {k: v for k, v in data.items() if k in COMMON}, where)
        bench = get_benchmark(build(cls, kwargs, where).benchmark)  # the name (and split) checked first
        options = options_from_flat(bench, {k: v for k, v in data.items() if k not in COMMON}, list(COMMON), where)
        return build(cls, {**kwargs, "options": options}, where)

    def config_to_dict(self) -> dict[str, Any]:
        common = {"benchmark": self.benchmark, "path": self.path, "split": self.split, "max_length": self.max_length}
        return {**common, **flat_options(self.options_as(BenchmarkOptions))}

    @classmethod
    def config_keys(cls) -> dict[str, Any]:
        hints = get_type_hints(cls)
        return {**{k: hints[k] for k in COMMON}, **{k: key.type for k, key in option_keys().items()}}


COMMON = tuple(f.name for f in fields(DataConfig) if f.name != "options")  # every benchmark's keys


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation knobs every benchmark reads.

    ``rouge=False`` skips generation, so the metrics that need it (``Metric.needs_generation``: ROUGE,
    and what is built on it, such as TOFU's ``model_utility``) are left out. ``max_new_tokens`` is the
    generation length where the benchmark does not fix its own (TOFU; MUSE follows open-unlearning's
    128 / 32 tokens). ``quant`` / ``relearn``: the attacks, off when None.
    """

    batch_size: int = 32
    max_new_tokens: int = 40
    max_length: int = 96  # prompt + answer tokens of a scored sequence; longer answers are truncated
    rouge: bool = True
    # Attacks on the unlearned model, evaluated after the plain evaluation with prefixed metric names
    # (``unlearn.attacks``): quantized weights (q4_, q8_) and relearning on part of the forget set (relearn_)
    quant: QuantConfig | None = None
    relearn: RelearnConfig | None = None

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, low=1)
        check_range("max_new_tokens", self.max_new_tokens, low=1)
        check_range("max_length", self.max_length, low=2)
