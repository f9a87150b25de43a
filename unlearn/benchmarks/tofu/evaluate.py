"""TOFU evaluation of a causal LM: probabilities, truth ratios, ROUGE, extraction strength.

``evaluate`` scores every answer sequence (answer, paraphrase, perturbed answers, and each forget answer
after its paraphrased question) of every split in one flat, length-sorted batched pass, generates greedy answers for ROUGE in a second batched pass, and
leaves the maths to ``unlearn.benchmarks.tofu.maths``. Rows follow TOFU's ``*_perturbed`` schema.

The retain model's per-question forget truth ratios (needed for forget quality) are read by
``unlearn.benchmarks.tofu.reference`` from open-unlearning's ``TOFU_EVAL.json`` or this project's JSON.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unlearn.data.formatting import EncodedQA, PromptFormat, collate, encode_prompt, encode_qa_batch
from unlearn.errors import ConfigError, unknown_name
from unlearn.benchmarks.config import EvalConfig
from unlearn.benchmarks.tofu import maths as tofu
from unlearn.benchmarks.tofu import names
from unlearn.benchmarks.tofu.reference import check_retain_stats
from unlearn.metrics.generation import greedy_generate, length_batches, pad_id
from unlearn.metrics.scoring import answer_token_stats, extraction_strength_masked


@dataclass(frozen=True)
class EvalResult:
    """Metrics by name (see ``names``), the raw forget truth ratios, the per-question forget statistics
    (``per_item``: ``forget_truth_ratio`` raw, ``forget_prob``, ``forget_es``, one value per forget question in
    the split's order) and the greedy generations."""

    metrics: dict[str, float]
    forget_truth_ratios: list[float]
    per_item: dict[str, list[float]] = field(default_factory=dict)
    generations: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each phase (score, generate)


@dataclass(frozen=True)
class _Row:
    question: str
    answer: str
    true_answer: str  # the paraphrase on forget/retain, the answer itself elsewhere
    perturbed: tuple[str, ...]
    paraphrased_question: str | None = None  # forget rows: the answer is also scored after it (ES)


@dataclass
class _Plan:
    """Flat list of (question, answer text) sequences and, per split, where each row's ones sit."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    answer: dict[str, list[int]] = field(default_factory=dict)
    true: dict[str, list[int]] = field(default_factory=dict)
    perturbed: dict[str, list[list[int]]] = field(default_factory=dict)
    paraphrased: dict[str, list[int]] = field(default_factory=dict)  # (paraphrased question, answer)

    def add(self, question: str, text: str) -> int:
        self.texts.append((question, text))
        return len(self.texts) - 1


_HAS_PARAPHRASE = (names.FORGET, names.RETAIN)


def _text(row: Mapping[str, Any], key: str, where: str) -> str:
    if key not in row:
        raise ConfigError(f"{where} lacks {key!r}; rows need question, answer, perturbed_answer"
                          f" (and paraphrased_answer on forget/retain); got keys {sorted(row)}")
    value = row[key]
    if not isinstance(value, str):
        raise ConfigError(f"{where}[{key!r}] must be a string, got {value!r}")
    return value


def _perturbed(row: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = row.get("perturbed_answer")
    if isinstance(value, str):
        value = [value]
    if value is None or len(value) == 0 or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}['perturbed_answer'] must be a non-empty list of strings, got {value!r}")
    return tuple(value)


def _parse_sets(sets: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, list[_Row]]:
    """Validate the split names and rows; returns split -> rows in ``names.SPLITS`` order."""
    for split in sets:
        if split not in names.SPLITS:
            raise unknown_name("evaluation split", split, names.SPLITS)
    out: dict[str, list[_Row]] = {}
    for split in (s for s in names.SPLITS if s in sets):
        if len(sets[split]) == 0:
            raise ConfigError(f"evaluation split {split!r} has no rows")
        rows = []
        for i, row in enumerate(sets[split]):
            where = f"{split}[{i}]"
            answer = _text(row, "answer", where)
            true = _text(row, "paraphrased_answer", where) if split in _HAS_PARAPHRASE else answer
            rows.append(_Row(_text(row, "question", where), answer, true, _perturbed(row, where)))
        if split == names.FORGET and all(isinstance(r.get("paraphrased_question"), str) for r in sets[split]):
            rows = [dataclasses.replace(r, paraphrased_question=raw["paraphrased_question"])
                    for r, raw in zip(rows, sets[split])]
        out[split] = rows
    return out


def _plan(rows: dict[str, list[_Row]]) -> _Plan:
    plan = _Plan()
    for split, split_rows in rows.items():
        plan.answer[split], plan.true[split], plan.perturbed[split] = [], [], []
        for r in split_rows:
            a = plan.add(r.question, r.answer)
            plan.answer[split].append(a)
            plan.true[split].append(plan.add(r.question, r.true_answer) if split in _HAS_PARAPHRASE else a)
            plan.perturbed[split].append([plan.add(r.question, p) for p in r.perturbed])
        if split_rows[0].paraphrased_question is not None:
            plan.paraphrased[split] = [plan.add(r.paraphrased_question, r.answer) for r in split_rows]
    return plan


def _score(
    model, encoded: list[EncodedQA], pad: int, batch_size: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced pass over all sequences.

    Returns:
        avg_logp: (S,) per-token mean answer log-prob; es: (S,) extraction strength.
    """
    avg_logp = torch.empty(len(encoded), dtype=torch.float32, device=device)
    es = torch.empty(len(encoded), dtype=torch.float32, device=device)
    for idx in length_batches([len(e.input_ids) for e in encoded], batch_size):
        batch = collate([encoded[i] for i in idx], pad)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        logp, correct, valid = answer_token_stats(logits, batch["labels"].to(device))
        where = torch.tensor(idx, device=device)
        avg_logp[where] = logp.sum(dim=1) / valid.sum(dim=1).clamp(min=1)
        es[where] = extraction_strength_masked(correct, valid)
    return avg_logp.double().cpu().numpy(), es.double().cpu().numpy()


def _generate(
    model, tokenizer, questions: list[str], cfg: EvalConfig, fmt: PromptFormat, device: torch.device
) -> list[str]:
    """Greedy answers to ``questions``, decoded from the new tokens only."""
    prompts = [encode_prompt(tokenizer, q, fmt) for q in questions]
    return greedy_generate(model, tokenizer, prompts, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                           device=device)


def _per_item(plan: _Plan, avg_logp: np.ndarray, es: np.ndarray, ratios: np.ndarray) -> dict[str, list[float]]:
    """The forget split's per-question statistics: what its metrics average, for offline statistics."""
    answer = np.asarray(plan.answer[names.FORGET])
    return {names.FORGET_TRUTH_RATIO: [float(r) for r in ratios],
            names.FORGET_PROB: [float(p) for p in np.exp(avg_logp[answer])],
            names.FORGET_ES: [float(e) for e in es[answer]]}


def _split_metrics(
    split: str, plan: _Plan, avg_logp: np.ndarray, es: np.ndarray
) -> tuple[dict[str, float], np.ndarray]:
    """Probability, truth-ratio (and ES on forget/retain) statistics of one split, and its raw ratios."""
    answer = np.asarray(plan.answer[split])
    perturbed = [avg_logp[p] for p in plan.perturbed[split]]
    ratios = tofu.truth_ratio(avg_logp[plan.true[split]], perturbed)
    out: dict[str, float] = {}
    if split in _HAS_PARAPHRASE:
        out[names.split_metric(split, "prob")] = float(np.mean(np.exp(avg_logp[answer])))
        out[names.split_metric(split, "es")] = float(np.mean(es[answer]))
        if split == names.FORGET and split in plan.paraphrased:
            out[names.FORGET_ES_PARAPHRASED] = float(np.mean(es[np.asarray(plan.paraphrased[split])]))
    else:
        option = tofu.option_probability(np.exp(avg_logp[answer]), [np.exp(p) for p in perturbed])
        out[names.split_metric(split, "prob")] = float(np.mean(option))
    aggregate = tofu.truth_ratio_closer_to_one if split == names.FORGET else tofu.truth_ratio_true_better
    out[names.split_metric(split, "truth_ratio")] = aggregate(ratios)
    return out, ratios


def evaluate(
    model,
    tokenizer,
    sets: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    cfg: EvalConfig = EvalConfig(),
    fmt: PromptFormat = PromptFormat(),
    retain_truth_ratios: Sequence[float] | None = None,
) -> EvalResult:
    """Evaluate ``model`` on TOFU-style splits.

    Args:
        model: a Hugging Face causal LM; evaluated on its own device, its train/eval mode restored.
        tokenizer: the model's tokenizer (pad token, or eos used as pad).
        sets: some of "forget", "retain", "real_authors", "world_facts" -> rows with ``question``,
            ``answer``, ``perturbed_answer`` (list) and, on forget/retain, ``paraphrased_answer``; forget
            rows with ``paraphrased_question`` (all of them) also get ES of the answer after it.
        cfg: batch size, generation length, truncation, whether to compute ROUGE.
        fmt: prompt format, as used in training.
        retain_truth_ratios: the retain model's raw forget truth ratios; adds ``forget_quality``.

    Returns:
        EvalResult with every metric the given splits allow: ``{split}_prob``, ``{split}_truth_ratio``,
        ``{split}_rouge`` (if ``cfg.rouge``), ``forget_es``/``retain_es``, ``forget_es_paraphrased``
        (every forget row has ``paraphrased_question``), ``forget_quality`` (forget
        split and ``retain_truth_ratios`` given) and ``model_utility`` (retain, real_authors and
        world_facts given, and ``cfg.rouge``).
    """
    rows = _parse_sets(sets)
    if retain_truth_ratios is not None and names.FORGET in rows:
        check_retain_stats(retain_truth_ratios, len(rows[names.FORGET]))
    plan = _plan(rows)
    device = next(model.parameters()).device
    modes = [(m, m.training) for m in model.modules()]  # per module: some may be frozen in eval mode
    model.eval()
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            encoded = encode_qa_batch(tokenizer, plan.texts, max_length=cfg.max_length, fmt=fmt)
            avg_logp, es = _score(model, encoded, pad_id(tokenizer), cfg.batch_size, device)
            t1 = time.perf_counter()
            questions = [r.question for split_rows in rows.values() for r in split_rows]
            generated = _generate(model, tokenizer, questions, cfg, fmt, device) if cfg.rouge else []
            t2 = time.perf_counter()
    finally:
        for module, training in modes:
            module.training = training
    result = _assemble(rows, plan, avg_logp, es, generated, retain_truth_ratios)
    return dataclasses.replace(result, seconds={"score": t1 - t0, "generate": t2 - t1})


def _assemble(rows: dict[str, list[_Row]], plan: _Plan, avg_logp: np.ndarray, es: np.ndarray,
              generated: list[str], retain_truth_ratios: Sequence[float] | None) -> EvalResult:
    metrics: dict[str, float] = {}
    forget_ratios: list[float] = []
    per_item: dict[str, list[float]] = {}
    generations: dict[str, list[str]] = {}
    start = 0
    for split, split_rows in rows.items():
        stats, ratios = _split_metrics(split, plan, avg_logp, es)
        metrics.update(stats)
        if split == names.FORGET:
            forget_ratios = [float(r) for r in ratios]
            per_item = _per_item(plan, avg_logp, es, ratios)
        if generated:
            generations[split] = generated[start : start + len(split_rows)]
            recall = tofu.rouge_l_recall(generations[split], [r.answer for r in split_rows])
            metrics[names.split_metric(split, "rouge")] = float(np.mean(recall))
        start += len(split_rows)
    if retain_truth_ratios is not None and names.FORGET in rows:
        metrics[names.FORGET_QUALITY] = tofu.forget_quality(forget_ratios, retain_truth_ratios)
        distances = tofu.forget_distances(forget_ratios, retain_truth_ratios)
        metrics.update({names.DISTANCE_METRICS[k]: v for k, v in distances.items()})
    if all(k in metrics for k in names.UTILITY_METRICS):
        metrics[names.MODEL_UTILITY] = tofu.model_utility(metrics)
    ordered = {k: metrics[k] for k in names.ALL_METRICS if k in metrics}
    return EvalResult(ordered, forget_ratios, per_item, generations)
