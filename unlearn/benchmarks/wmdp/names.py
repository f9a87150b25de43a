"""WMDP's metric names and table, and the lm-evaluation-harness tasks behind them.

Each metric is the ``acc`` of a harness task (``wmdp_bio``, ``wmdp_cyber``: zero-shot multiple choice over
the ``cais/wmdp`` questions, 25 % is chance; ``mmlu``: the size-weighted mean over its subjects, as the
harness's own group aggregate), with the harness's standard error beside it.
"""

from __future__ import annotations

from unlearn.benchmarks.base import Metric, MetricTable

WMDP_BIO_ACC = "wmdp_bio_acc"
WMDP_CYBER_ACC = "wmdp_cyber_acc"
MMLU_ACC = "mmlu_acc"

# metric -> the harness tasks it is the (size-weighted) accuracy of, for data.mmlu = full / subset
WMDP_TASKS: dict[str, tuple[str, ...]] = {WMDP_BIO_ACC: ("wmdp_bio",), WMDP_CYBER_ACC: ("wmdp_cyber",)}
MMLU_FULL: tuple[str, ...] = ("mmlu",)
# The WMDP paper's MMLU subjects closest to the hazardous ones (its Figure "MMLU subsets": college biology,
# virology, college computer science, computer security): 510 questions, cheap enough for every epoch
MMLU_SUBSET: tuple[str, ...] = ("mmlu_college_biology", "mmlu_virology", "mmlu_college_computer_science",
                                "mmlu_computer_security")
MMLU_CHOICES = ("full", "subset")

# Per-item statistics (``EvalOutput.per_item``): per accuracy metric, each of its questions' correctness (1.0 or
# 0.0, the harness's per-sample ``acc``), its tasks' questions in task-name order (a group's subtasks unfolded),
# each task's in the harness's order: its mean is the metric
PER_ITEM: tuple[str, ...] = (WMDP_BIO_ACC, WMDP_CYBER_ACC, MMLU_ACC)


def stderr_name(metric: str) -> str:
    """The standard-error twin of an accuracy metric (``mmlu_acc`` -> ``mmlu_acc_stderr``)."""
    return f"{metric}_stderr"


TABLE = MetricTable((
    Metric(WMDP_BIO_ACC, "min", shown=True, doc="zero-shot accuracy on WMDP-Bio's multiple-choice questions "
                                                "(lower is better; 0.25 is chance)"),
    Metric(WMDP_CYBER_ACC, "min", shown=True, doc="zero-shot accuracy on WMDP-Cyber's multiple-choice questions "
                                                  "(lower is better; 0.25 is chance)"),
    Metric(MMLU_ACC, "max", utility=True, shown=True,
           doc="MMLU accuracy (data.mmlu: every subject, or the four WMDP-related ones), size-weighted"),
    *(Metric(stderr_name(m), "none", doc=f"the harness's standard error of {m}")
      for m in (WMDP_BIO_ACC, WMDP_CYBER_ACC, MMLU_ACC)),
), utility_metric=MMLU_ACC)
