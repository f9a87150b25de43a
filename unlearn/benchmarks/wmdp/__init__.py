"""WMDP (Li et al., 2024): unlearning a hazardous-knowledge corpus (cyber-security, or biology from a local
file), scored by the WMDP multiple-choice accuracy (lower is better, 25 % is chance) while keeping MMLU
accuracy, both through lm-evaluation-harness (open-unlearning's ``LMEvalEvaluator``).

Modules: ``data`` (the corpora, from ``cais/wmdp-corpora`` or local JSON Lines), ``harness`` (the
lm-eval evaluator and its task index), ``names`` (the metric table and the tasks behind it), ``options``
(its ``data`` options), ``plugin``.
``fixture/`` is an invented, offline miniature in the harness's task format (tests, README demo).
"""

from __future__ import annotations

from pathlib import Path

from unlearn.benchmarks.wmdp.options import WmdpOptions
from unlearn.benchmarks.wmdp.plugin import WmdpBenchmark

WMDP = WmdpBenchmark()
FIXTURE_DIR = Path(__file__).parent / "fixture"

__all__ = ["FIXTURE_DIR", "WMDP", "WmdpBenchmark", "WmdpOptions"]
