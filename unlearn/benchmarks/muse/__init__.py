"""MUSE (Shi et al., 2024): unlearning news articles (``muse-bench/MUSE-News``) or books
(``muse-bench/MUSE-Books``), scored by verbatim memorisation, knowledge memorisation and privacy leakage
as open-unlearning's MUSE evaluation defines them.

Modules: ``data`` (loading the hub or a local copy, chunking the corpora), ``evaluate`` (the evaluator
and the retain model's AUC file), ``names`` (the metric table), ``options`` (its ``data`` options),
``plugin`` (the benchmark plug-in).
"""

from __future__ import annotations

from unlearn.benchmarks.muse.options import MuseOptions
from unlearn.benchmarks.muse.plugin import MuseBenchmark

MUSE = MuseBenchmark()

__all__ = ["MUSE", "MuseBenchmark", "MuseOptions"]
