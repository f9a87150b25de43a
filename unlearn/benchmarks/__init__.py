"""Benchmarks as plug-ins: one package each, registered here by name.

``get_benchmark(name)`` is the one lookup (an unknown name lists the valid ones). A benchmark owns its
loading, training examples, evaluator, metric table and retain-model statistics (``base.Benchmark``).
"""

from __future__ import annotations

from unlearn.benchmarks.base import Benchmark, EvalOutput, Metric, MetricTable
from unlearn.registry import Registry

BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


def get_benchmark(name: str) -> Benchmark:
    """The registered plug-in ``name``."""
    return BENCHMARKS.get(name)


def _register_builtin() -> None:
    from unlearn.benchmarks.generated import GENERATED
    from unlearn.benchmarks.muse import MUSE
    from unlearn.benchmarks.tofu import TOFU
    from unlearn.benchmarks.wmdp import WMDP

    for bench in (GENERATED, MUSE, TOFU, WMDP):
        BENCHMARKS.register(bench.name, doc=type(bench).__doc__ or "")(bench)


_register_builtin()

__all__ = ["BENCHMARKS", "Benchmark", "EvalOutput", "Metric", "MetricTable", "get_benchmark"]


def load_benchmark(cfg):
    """Load the rows of the benchmark ``cfg`` (a ``DataConfig``) names: the plug-in's ``load``."""
    return get_benchmark(cfg.benchmark).load(cfg)


__all__ += ["load_benchmark"]
