"""WMDP's plug-in: the forget / retain corpora cut into ``data.max_length``-token chunks (loss on every
token, as MUSE's), scored by multiple-choice accuracy through lm-evaluation-harness. Its metrics are
absolute accuracies: there are no retain-model statistics."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn.benchmarks.base import Benchmark, EvalOutput
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.benchmarks.wmdp import names
from unlearn.benchmarks.wmdp.data import WmdpCorpora
from unlearn.benchmarks.wmdp.options import DEFAULT_CORPUS, WmdpOptions
from unlearn.data.formatting import EncodedQA
from unlearn.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the attacks' types
    from unlearn.attacks.config import RelearnConfig
    from unlearn.attacks.relearn import RelearnSplit


@dataclass(frozen=True)
class WmdpSets:
    """A loaded WMDP setup: the corpora, the harness's task index and the tasks behind each metric."""

    corpora: WmdpCorpora
    index: Any  # harness.TaskIndex
    plan: dict[str, tuple[str, ...]]


class WmdpBenchmark(Benchmark):
    """WMDP (Li et al., 2024): forget a hazardous-knowledge corpus (cyber, or bio from a local file), scored
    by WMDP multiple-choice accuracy (lower is better, 0.25 is chance) while keeping MMLU accuracy."""

    name = "wmdp"
    metrics = names.TABLE
    splits = ("forget",)
    default_split = "forget"
    reference_doc = "nothing: WMDP's metrics are absolute accuracies (prepare.retain_stats: null)"
    needs_reference = False
    title = "WMDP"
    options_type = WmdpOptions
    # relearning on a share of the forget corpus's documents; the accuracies are not about its rows, so the
    # relearned model answers every question (README, fidelity: attacks)
    relearns = True
    relearn_unit = "forget document"

    def load(self, cfg: DataConfig) -> WmdpSets:
        """The corpora, and the harness tasks checked against its index (before any model is loaded)."""
        from unlearn.benchmarks.wmdp.data import load_corpora
        from unlearn.benchmarks.wmdp.harness import task_index, task_plan

        opts = cfg.options_as(WmdpOptions)
        corpora = load_corpora(opts.corpus or DEFAULT_CORPUS, cfg.path, max_documents=opts.max_articles)
        plan = task_plan(opts.mmlu)
        index = task_index(opts.tasks_path)
        index.check(tuple(t for ts in plan.values() for t in ts))
        return WmdpSets(corpora, index, plan)

    def tokenizer_corpus(self, data: WmdpSets, cfg: DataConfig) -> list[str]:
        return list(dict.fromkeys((*data.corpora.forget_texts, *data.corpora.retain_texts)))

    def finetune_examples(self, tokenizer, data: WmdpSets, cfg: DataConfig, model: Literal["target", "retain"]
                          ) -> list[EncodedQA]:
        from unlearn.benchmarks.muse.data import chunk_texts

        c = data.corpora
        texts = (*c.forget_texts, *c.retain_texts) if model == "target" else c.retain_texts
        return chunk_texts(tokenizer, list(texts), cfg.max_length)

    def unlearn_examples(self, tokenizer, data: WmdpSets, cfg: DataConfig, *, key_texts: bool
                         ) -> tuple[list[EncodedQA], list[EncodedQA]]:
        from unlearn.benchmarks.muse.data import chunk_texts

        if key_texts:
            raise ConfigError("method.importance needs key-token annotations, which WMDP's corpora do not have; "
                              "valid: importance: false")
        c = data.corpora
        return (chunk_texts(tokenizer, list(c.forget_texts), cfg.max_length),
                chunk_texts(tokenizer, list(c.retain_texts), cfg.max_length))

    def evaluate(self, model, tokenizer, data: WmdpSets, cfg: DataConfig, eval_cfg: EvalConfig,
                 reference: Mapping[str, Any] | Literal["self"] | None, *, utility: bool = True) -> EvalOutput:
        """Every metric of the table through the harness (``eval.batch_size``; ``data.max_questions``: the
        harness's ``limit``, the first N questions of each task), and each question's correctness
        (``names.PER_ITEM``). ``reference`` and ``utility`` are not used (MMLU runs all the same)."""
        from unlearn.benchmarks.wmdp.harness import evaluate_harness

        t0 = time.perf_counter()
        res = evaluate_harness(model, tokenizer, data.index, data.plan, batch_size=eval_cfg.batch_size,
                               limit=cfg.options_as(WmdpOptions).max_questions)
        return EvalOutput(names.TABLE.order(res.metrics), {}, {}, {"harness": time.perf_counter() - t0}, res.per_item)

    def forget_count(self, data: WmdpSets) -> int:
        return len(data.corpora.forget_texts)

    def relearn_scored(self, data: WmdpSets, split: RelearnSplit, cfg: RelearnConfig) -> dict[str, tuple[int, ...]]:
        """Nothing to restrict (every question is asked); the relearned documents must hold text."""
        if not any(data.corpora.forget_texts[i].strip() for i in split.relearn):
            raise ConfigError(f"eval.relearn.fraction={cfg.fraction} relearns only on empty forget documents "
                              f"{list(split.relearn)}; valid: a larger eval.relearn.fraction or another "
                              "eval.relearn.seed")
        return {}

    def relearn_sets(self, tokenizer, data: WmdpSets, cfg: DataConfig, split: RelearnSplit,
                     reference: Mapping[str, Any] | None) -> tuple[list[EncodedQA], WmdpSets, Mapping[str, Any] | None]:
        """Relearning examples: the relearned forget documents in ``data.max_length``-token chunks, as unlearning
        chunks the corpus; the data as it is (WMDP's questions are not the corpus's rows: all of them are asked)."""
        from unlearn.benchmarks.muse.data import chunk_texts

        texts = [data.corpora.forget_texts[i] for i in split.relearn]
        return chunk_texts(tokenizer, texts, cfg.max_length), data, reference

    def reference_from_file(self, path: str | Path) -> dict[str, Any]:
        raise ConfigError(f"prepare.retain_stats={str(path)!r} does not apply to WMDP: its metrics are absolute "
                          "accuracies and need no retain model's statistics; valid: prepare.retain_stats: null")
