"""WMDP's evaluator: lm-evaluation-harness's ``simple_evaluate`` on the model wrapped as its ``HFLM``
(what open-unlearning's ``LMEvalEvaluator`` does), on the tasks behind each metric (``names``).

The task index is the installed harness's own, or the task YAMLs of one directory (``data.tasks_path``:
``TaskManager(include_path=..., include_defaults=False)``, e.g. the offline fixture). Tasks are checked
against the index when the benchmark loads, before any model is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unlearn.benchmarks.wmdp import names
from unlearn.errors import ConfigError, close_matches

_ACC, _STDERR = "acc,none", "acc_stderr,none"
_FILTER, _SAMPLE_ACC = "none", "acc"  # a logged sample's filter and its own metric (1.0 right, 0.0 wrong)


def task_plan(mmlu: str) -> dict[str, tuple[str, ...]]:
    """Metric -> the harness tasks it is the accuracy of (``mmlu``: ``full`` or ``subset``)."""
    if mmlu not in names.MMLU_CHOICES:
        raise ConfigError(f"data.mmlu={mmlu!r} is not valid; valid: {', '.join(names.MMLU_CHOICES)}")
    return {**names.WMDP_TASKS, names.MMLU_ACC: names.MMLU_FULL if mmlu == "full" else names.MMLU_SUBSET}


@dataclass(frozen=True)
class TaskIndex:
    """The harness's task index (a ``lm_eval.tasks.TaskManager``) and where its tasks come from."""

    manager: Any
    source: str  # "the installed harness (lm-eval X)" or the include directory

    def check(self, tasks: tuple[str, ...]) -> None:
        """Raise ConfigError naming the first task the index does not know, with close names."""
        known = set(self.manager.all_tasks)
        for task in tasks:
            if task not in known:
                hint = close_matches(task, known)
                extra = f" (close: {', '.join(hint)})" if hint else ""
                raise ConfigError(f"harness task {task!r} is not known to {self.source}{extra}; valid: a task or group "
                                  f"of its index ({len(known)} names, `lm-eval ls tasks` lists them), or data.tasks_path "
                                  "set to a directory of task YAMLs that defines it")


def task_index(tasks_path: str | None) -> TaskIndex:
    """The task index of ``tasks_path`` (None: the installed harness's tasks)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    if tasks_path is None:
        return TaskIndex(TaskManager(), f"the installed harness (lm-eval {lm_eval.__version__})")
    return TaskIndex(TaskManager(include_path=tasks_path, include_defaults=False), f"data.tasks_path {tasks_path!r}")


@contextlib.contextmanager
def _isolated() -> Iterator[None]:
    """``simple_evaluate`` seeds Python's, NumPy's and torch's global generators and logs at INFO: both are
    put back as they were, so an evaluation leaves no global state behind."""
    py, npy = random.getstate(), np.random.get_state()
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        logger.setLevel(level)


def _entry(results: Mapping[str, Any], task: str) -> Mapping[str, Any]:
    return results.get("groups", {}).get(task) or results["results"][task]


def _pooled(results: Mapping[str, Any], tasks: tuple[str, ...]) -> tuple[float, float]:
    """Accuracy and standard error over ``tasks``: one task's own, or the harness's size-weighted group
    aggregate (``aggregate_subtask_metrics``, ``pooled_sample_stderr``) of several."""
    if len(tasks) == 1:
        e = _entry(results, tasks[0])
        return float(e[_ACC]), float(e.get(_STDERR, float("nan")))
    from lm_eval.api.metrics import aggregate_subtask_metrics, pooled_sample_stderr

    accs = [float(_entry(results, t)[_ACC]) for t in tasks]
    errs = [float(_entry(results, t)[_STDERR]) for t in tasks]
    sizes = [int(results["n-samples"][t]["effective"]) for t in tasks]
    return float(aggregate_subtask_metrics(accs, sizes, weight_by_size=True)), float(pooled_sample_stderr(errs, sizes))


def _leaves(results: Mapping[str, Any], task: str) -> list[str]:
    """The tasks that hold ``task``'s questions: itself, or a group's subtasks (nested groups unfolded)."""
    children = results.get("group_subtasks", {}).get(task)
    if not children:
        return [task]
    return [leaf for child in children for leaf in _leaves(results, child)]


def _correct(results: Mapping[str, Any], tasks: tuple[str, ...]) -> list[float]:
    """Each question's ``acc`` (1.0 or 0.0) over ``tasks``: their leaf tasks in name order, each task's
    questions in the harness's order (``doc_id``). Its mean is ``_pooled``'s size-weighted accuracy."""
    leaves = sorted({leaf for t in tasks for leaf in _leaves(results, t)})
    out: list[float] = []
    for leaf in leaves:
        rows = sorted((r for r in results["samples"][leaf] if r["filter"] == _FILTER), key=lambda r: r["doc_id"])
        out.extend(float(r[_SAMPLE_ACC]) for r in rows)
    return out


def _bars_shown() -> bool:
    """tqdm's own switch (``TQDM_DISABLE``, which ``unlearn-sweep`` sets without ``--verbose``). The harness's
    per-request bars pass ``disable=False`` explicitly, which wins over the switch: ``_hflm`` honours it."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in ("", "0", "false")


def _hflm(bars: bool):
    """The harness's ``HFLM``, or one whose log-likelihood requests run without their progress bars
    (``simple_evaluate`` offers no way to ask for that: it calls ``lm.loglikelihood(requests)``)."""
    from lm_eval.models.huggingface import HFLM

    if bars:
        return HFLM

    class QuietHFLM(HFLM):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=True)

    return QuietHFLM


@dataclass(frozen=True)
class HarnessResult:
    """Each metric of a plan and its ``_stderr``; per metric, each of its questions' correctness (1.0 right,
    0.0 wrong: the per-item record whose mean is the metric; ``names.PER_ITEM``)."""

    metrics: dict[str, float]
    per_item: dict[str, list[float]]


def evaluate_harness(model, tokenizer, index: TaskIndex, plan: Mapping[str, tuple[str, ...]], *,
                     batch_size: int, limit: int | None = None) -> HarnessResult:
    """Each metric of ``plan`` (and its ``_stderr``) for ``model``, through ``lm_eval.simple_evaluate``, and
    each question's correctness (the harness's logged samples).

    Args:
        model: a Hugging Face causal LM (evaluated on its own device, in eval mode).
        tokenizer: its tokenizer.
        index: the task index (``task_index``); every task of ``plan`` is checked against it first.
        plan: metric -> harness tasks (``task_plan``).
        batch_size: the harness's batch size (``eval.batch_size``).
        limit: the first N questions of each task (``data.max_questions``); None: all.
    """
    from lm_eval import simple_evaluate

    tasks = tuple(dict.fromkeys(t for ts in plan.values() for t in ts))
    index.check(tasks)
    was_training = model.training
    model.eval()
    try:
        with _isolated():
            lm = _hflm(_bars_shown())(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
            results = simple_evaluate(model=lm, tasks=list(tasks), task_manager=index.manager, limit=limit,
                                      log_samples=True)
    finally:
        model.train(was_training)
    out: dict[str, float] = {}
    for metric, ts in plan.items():
        out[metric], out[names.stderr_name(metric)] = _pooled(results, ts)
    return HarnessResult(out, {metric: _correct(results, ts) for metric, ts in plan.items()})
