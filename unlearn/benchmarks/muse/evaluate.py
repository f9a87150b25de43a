"""MUSE evaluation of a causal LM, as locuslab/open-unlearning's ``configs/eval/muse.yaml`` defines it.

Metrics (``unlearn.benchmarks.muse.names``), each following the open-unlearning file named:

- ``forget_verbmem_rouge`` (``muse_metrics/forget_verbmem_ROUGE.yaml``, handler ``rouge`` in
  ``src/evals/metrics/memorization.py``): greedy continuation, 128 new tokens, of each verbmem/forget
  ``prompt``; ROUGE-L F-measure (``rouge_type: rougeL_f1``, ``rouge_score`` with ``use_stemmer=True``,
  ``eval_text_similarity`` in ``src/evals/metrics/utils.py``) against its ``gt``; the mean over rows.
- ``forget_knowmem_rouge`` / ``retain_knowmem_rouge`` (``muse_metrics/{forget,retain}_knowmem_ROUGE.yaml``):
  greedy answers, 32 new tokens, to each knowmem question after the split's ``*_qa_icl`` rows as
  few-shot examples (``knowmem_prompt``), cut at the stop strings (``STOP_STRINGS``), ROUGE-L F1 against
  the answer.
- ``privleak`` (``muse_metrics/privleak.yaml`` on ``mia_min_k.yaml``; ``src/evals/metrics/privacy.py``):
  min-k% (k = 0.4) AUC of privleak forget vs holdout, relative to the retain model's AUC
  (``unlearn.metrics.mia.privleak``); only with ``retain_auc``. ``privleak_auc``: that raw AUC, always.
- ``forget_es`` (``muse_metrics/extraction_strength.yaml``): extraction strength of each verbmem ``gt``
  teacher-forced after its prompt.

Per-item statistics (``MuseEvalResult.per_item``, ``names.PER_ITEM``): each verbmem row's ROUGE-L F1 and
extraction strength, each knowmem question's ROUGE-L F1 (with generation), each privleak forget and
holdout text's min-k% score (the AUC's inputs): every metric above but the other attacks' AUCs can be
recomputed from them offline.

Sequences are tokenized as open-unlearning does, with the tokenizer's own special tokens
(``add_special_tokens=True``: BOS for Llama, nothing for a byte-level BPE). One addition: a prompt that
does not fit the model's context (``MuseEvalConfig.context_length``) keeps its special prefix and its
last tokens; open-unlearning passes it whole, which only differs where its output would be undefined.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from unlearn.benchmarks.muse import names
from unlearn.benchmarks.muse.data import MuseSets, special_prefix
from unlearn.data.formatting import IGNORE_INDEX, EncodedQA, collate
from unlearn.errors import ConfigError, check_range
from unlearn.metrics.generation import left_pad, length_batches, pad_id
from unlearn.metrics.scoring import answer_token_stats, extraction_strength_masked

# forget_knowmem_ROUGE.yaml / retain_knowmem_ROUGE.yaml generation_args.stopwords
STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")
# configs/model/Llama-2-7b-hf.yaml template_args (MUSE's target models are Llama-2-7b), as
# preprocess_chat_instance in src/data/utils.py joins them without a chat template
QUESTION_START, QUESTION_END = "Question: ", "\n"
ANSWER_START, ANSWER_END = "Answer: ", "\n\n"

RETAIN_AUC_KEY = "privleak_auc"  # this project's retain statistics file
OU_MIN_K_KEY = "mia_min_k"  # open-unlearning's MUSE_EVAL.json: the retain model's min-k% result
_AUC_LAYOUT = ("open-unlearning's MUSE_EVAL.json of the retain model "
               f'({{"{OU_MIN_K_KEY}": {{"agg_value": AUC, ...}}}}, '
               f'what its privleak.yaml reads as retain_model_logs) or this project\'s {{"{RETAIN_AUC_KEY}": AUC}}, '
               "with AUC a number in [0, 1)")


@dataclass(frozen=True)
class MuseEvalConfig:
    """MUSE evaluation knobs; the defaults are open-unlearning's (``configs/eval/muse_metrics/*.yaml``).

    Attributes:
        batch_size: sequences per forward pass or generation batch.
        verbmem_max_new_tokens: continuation length of a verbmem prompt (128).
        knowmem_max_new_tokens: answer length of a knowmem question (32).
        max_length: the most text tokens of a scored sequence (a privleak text, a verbmem ``gt``), the
            special prefix not counted (open-unlearning's ``CompletionDataset`` ``max_length``: 2048).
        k: fraction of lowest token log-probs min-k% keeps (``mia_min_k.yaml``: 0.4).
        generate: compute the metrics that need greedy generation (the three ROUGE ones).
        context_length: the most tokens the model sees at once; None: the model's
            ``config.max_position_embeddings`` (no limit if it has none).
    """

    batch_size: int = 8
    verbmem_max_new_tokens: int = 128
    knowmem_max_new_tokens: int = 32
    max_length: int = 2048
    k: float = 0.4
    generate: bool = True
    context_length: int | None = None

    def __post_init__(self) -> None:
        check_range("batch_size", self.batch_size, low=1)
        check_range("verbmem_max_new_tokens", self.verbmem_max_new_tokens, low=1)
        check_range("knowmem_max_new_tokens", self.knowmem_max_new_tokens, low=1)
        check_range("max_length", self.max_length, low=2)
        check_range("k", self.k, low=0.0, high=1.0, low_inclusive=False)
        if self.context_length is not None:
            check_range("context_length", self.context_length, low=2)


@dataclass(frozen=True)
class MuseEvalResult:
    """Metrics by name, the raw privleak AUC (a retain model's reference statistic), the per-item
    statistics (``names.PER_ITEM``, each in its set's order), the generations (``forget_verbmem``,
    ``forget_knowmem``, ``retain_knowmem``) and each phase's wall time."""

    metrics: dict[str, float]
    privleak_auc: float
    per_item: dict[str, list[float]] = field(default_factory=dict)
    generations: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


# --- prompts, stop strings, ROUGE: pure functions ------------------------------------------------------

def knowmem_prompt(question: str, icl: Sequence[dict[str, str]]) -> str:
    """The few-shot prompt of a knowmem question, as open-unlearning's ``QADataset`` builds it.

    Follows ``preprocess_chat_instance`` (``src/data/utils.py``) without a chat template and Llama-2's
    ``template_args``: each few-shot row ``"Question: {q}\\nAnswer: {a}\\n\\n"``, then
    ``"Question: {question}\\nAnswer: "`` (trailing space included).
    """
    shots = "".join(f"{QUESTION_START}{r['question']}{QUESTION_END}{ANSWER_START}{r['answer']}{ANSWER_END}"
                    for r in icl)
    return f"{shots}{QUESTION_START}{question}{QUESTION_END}{ANSWER_START}"


def cut_at_stops(text: str, stops: Sequence[str]) -> str:
    """``text`` before the first occurrence of any of ``stops``, stripped (``eval_text_similarity``'s cut)."""
    for stop in stops:
        if stop and stop in text:
            text = text.split(stop)[0]
    return text.strip()


def rouge_l_f1(generations: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F-measure of each generation against its reference.

    Follows ``eval_text_similarity`` (``src/evals/metrics/utils.py``): ``rouge_score``'s ``rougeL`` (the
    sentence-level LCS, not ``rougeLsum``) with ``use_stemmer=True``, ``scorer.score(reference, generation)``.
    """
    from rouge_score import rouge_scorer

    if len(generations) != len(references):
        raise ConfigError(f"{len(generations)} generations but {len(references)} references")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [float(scorer.score(ref, gen)["rougeL"].fmeasure) for gen, ref in zip(generations, references)]


# --- encoding ------------------------------------------------------------------------------------------

def _clip(prompt: list[int], n_special: int, limit: int) -> list[int]:
    """``prompt`` if it has at most ``limit`` tokens, else its special prefix and its last tokens."""
    if len(prompt) <= limit:
        return prompt
    keep = max(1, limit - n_special)
    return prompt[:n_special] + prompt[-keep:]


def verbmem_sequences(tokenizer, rows: Sequence[dict[str, str]], max_length: int, context: int
                      ) -> list[EncodedQA]:
    """Each verbmem prompt followed by its ``gt``, labels on the ``gt`` tokens only (for ES).

    Follows ``CompletionDataset`` (``src/data/pretraining.py``) with ``MUSE_forget_verbmem.yaml``'s
    ``insert_space: True``: ``prompt + " " + gt`` tokenized with special tokens, the first
    ``len(tokenize(prompt))`` tokens are the prompt, the rest is cut to ``max_length`` tokens.
    """
    sp = len(special_prefix(tokenizer))
    full = tokenizer([f"{r['prompt']} {r['gt']}" for r in rows], add_special_tokens=True)["input_ids"]
    prompts = tokenizer([r["prompt"] for r in rows], add_special_tokens=True)["input_ids"]
    out = []
    for ids, p in zip(full, prompts):
        gt = list(ids[len(p) : len(p) + max(1, min(max_length, context - sp - 1))])
        prompt = _clip(list(ids[: len(p)]), sp, context - len(gt))
        out.append(EncodedQA(tuple(prompt + gt), tuple([IGNORE_INDEX] * len(prompt) + gt), len(prompt)))
    return out


def text_sequences(tokenizer, texts: Sequence[str], max_length: int, context: int) -> list[EncodedQA]:
    """Each text as a scored sequence: the special prefix, then up to ``max_length`` text tokens.

    Follows ``CompletionDataset`` on ``MUSE_MIA.yaml`` (no prefix column, ``max_length: 2048``): labels on
    every token after the special prefix (the first token when there is none, which a causal LM never
    predicts anyway).
    """
    if not texts:  # a tokenizer cannot batch nothing (a relearning split may leave no excerpt)
        return []
    sp = special_prefix(tokenizer)
    n = min(max_length, context - len(sp))
    out = []
    for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]:
        ids = list(ids[: len(sp) + n])
        head = max(1, len(sp))
        out.append(EncodedQA(tuple(ids), tuple([IGNORE_INDEX] * head + ids[head:]), head))
    return out


PROBE_KINDS = ("privleak", "verbmem", "knowmem_forget", "knowmem_retain")


def probe_windows(tokenizer, sets: MuseSets, kinds: Sequence[str], window: int,
                  cfg: MuseEvalConfig = MuseEvalConfig()) -> list[EncodedQA]:
    """A small run's probes as the evaluation reads them, one training sequence each (loss on every token).

    A tiny model memorises a text at the token positions it saw it at: shifted by a chunk cut it no longer
    knows it (measured). So a small run that is to remember its probes trains on each exactly as it is
    evaluated, within ``window`` tokens. ``kinds`` (of ``PROBE_KINDS``): ``privleak``, each excerpt's
    (``sets.forget_excerpts``) scored prefix as ``text_sequences`` encodes it; ``verbmem``, each prompt's
    end followed by the first ``verbmem_max_new_tokens`` tokens of its gt (what greedy continuation must
    reproduce); ``knowmem_forget`` / ``knowmem_retain``, each question's few-shot prompt followed by its
    answer and the blank line that ends it.
    """
    sp = len(special_prefix(tokenizer))

    def pair(prompts: list[str], answers: list[str], new_tokens: int) -> list[EncodedQA]:
        out = []
        ids = tokenizer(prompts, add_special_tokens=True)["input_ids"] if prompts else []
        for p, a in zip(ids, tokenizer(answers, add_special_tokens=False)["input_ids"] if answers else []):
            # the prompt clipped as generation clips it (to the window less the new tokens), whatever the answer
            seq = tuple(_clip(list(p), sp, max(sp + 1, window - new_tokens)) + list(a[:new_tokens]))
            out.append(EncodedQA(seq, seq, 0))
        return out

    def knowmem(rows: Sequence[dict[str, str]], icl: Sequence[dict[str, str]]) -> list[EncodedQA]:
        return pair([knowmem_prompt(r["question"], icl) for r in rows], [r["answer"] + ANSWER_END for r in rows],
                    cfg.knowmem_max_new_tokens)

    unknown = [k for k in kinds if k not in PROBE_KINDS]
    if unknown:
        raise ConfigError(f"unknown probe kind {unknown[0]!r}; valid: {', '.join(PROBE_KINDS)}")
    out: list[EncodedQA] = []
    if "privleak" in kinds:
        out += [EncodedQA(e.input_ids, e.input_ids, 0)
                for e in text_sequences(tokenizer, sets.forget_excerpts, window, window + sp)]
    if "verbmem" in kinds:
        out += pair([r["prompt"] for r in sets.verbmem], [f" {r['gt']}" for r in sets.verbmem],
                    cfg.verbmem_max_new_tokens)
    if "knowmem_forget" in kinds:
        out += knowmem(sets.knowmem_forget, sets.knowmem_forget_icl)
    if "knowmem_retain" in kinds:
        out += knowmem(sets.knowmem_retain, sets.knowmem_retain_icl)
    return out


# --- model passes --------------------------------------------------------------------------------------

class _StopStrings(StoppingCriteria):
    """A generation stopping criterion: a row is done once its decoded new tokens hold a stop string."""

    def __init__(self, tokenizer, stops: Sequence[str], start: int) -> None:
        self.tokenizer, self.stops, self.start = tokenizer, tuple(s for s in stops if s), start
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        todo = (~self.done).nonzero().reshape(-1).tolist()
        texts = self.tokenizer.batch_decode(input_ids[todo, self.start :].cpu(), skip_special_tokens=True)
        for i, text in zip(todo, texts):
            self.done[i] = any(s in text for s in self.stops)
        return self.done.to(input_ids.device)


def generate(model, tokenizer, prompts: list[list[int]], *, batch_size: int, max_new_tokens: int,
             stops: Sequence[str], device: torch.device) -> list[str]:
    """Greedy continuations of token-id ``prompts``, decoded and cut at ``stops``, in prompt order.

    Left-padded, length-sorted batches. As ``eval_text_similarity``: new tokens decoded with special
    tokens skipped, cut at the EOS text and each stop string, stripped. A row stops generating once a
    stop string appears in it (open-unlearning's ``stop_sequences_criteria`` waits for the whole batch;
    the text before the first stop string is the same).
    """
    pad = pad_id(tokenizer)
    eos = [tokenizer.decode([tokenizer.eos_token_id])] if tokenizer.eos_token_id is not None else []
    out = [""] * len(prompts)
    for idx in length_batches([len(p) for p in prompts], batch_size):
        ids, mask = left_pad([prompts[i] for i in idx], pad)
        criteria = StoppingCriteriaList([_StopStrings(tokenizer, stops, ids.shape[1])])
        extra = {"stopping_criteria": criteria} if stops else {}
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad, **extra)
        texts = tokenizer.batch_decode(gen[:, ids.shape[1] :].cpu(), skip_special_tokens=True)
        for i, text in zip(idx, texts):
            out[i] = cut_at_stops(text, [*eos, *stops])
    return out


def _drop_last(valid: torch.Tensor) -> torch.Tensor:
    """``valid`` (B, T) without each row's last True position."""
    pos = torch.arange(valid.shape[1], device=valid.device)
    last = torch.where(valid, pos, -1).max(dim=1).values
    return valid & (pos != last[:, None])


def extraction_strengths(model, examples: Sequence[EncodedQA], pad: int, batch_size: int) -> np.ndarray:
    """(S,) teacher-forced extraction strength of each example's labelled tokens but the last.

    Follows ``extraction_strength`` (``src/evals/metrics/memorization.py``) on the positions its
    ``tokenwise_vocab_logprobs`` keeps (every labelled token except the last one), with this project's
    ES rule (``unlearn.metrics.scoring.extraction_strength_masked``, as TOFU's ``forget_es``): the share
    of the tail that argmax reproduces, 0 when the last kept prediction is wrong (open-unlearning's loop
    gives ``1/L`` there).
    """
    device = next(model.parameters()).device
    es = np.zeros(len(examples), dtype=np.float64)
    for idx in length_batches([len(e.input_ids) for e in examples], batch_size):
        batch = collate([examples[i] for i in idx], pad)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        logits = model(input_ids=ids, attention_mask=mask).logits
        _, correct, valid = answer_token_stats(logits, batch["labels"].to(device))
        es[idx] = extraction_strength_masked(correct, _drop_last(valid)).double().cpu().numpy()
    return es


def _context(model, cfg: MuseEvalConfig) -> int:
    if cfg.context_length is not None:
        return cfg.context_length
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 1 else 1 << 30


def _check_retain_auc(retain_auc: float | None) -> None:
    if retain_auc is None:
        return
    if isinstance(retain_auc, bool) or not isinstance(retain_auc, (int, float)) or not math.isfinite(retain_auc):
        raise ConfigError(f"retain_auc={retain_auc!r} must be a number in [0, 1)")
    check_range("retain_auc", retain_auc, low=0.0, high=1.0, high_inclusive=False)


def _generations(model, tokenizer, sets: MuseSets, cfg: MuseEvalConfig, context: int, device: torch.device
                 ) -> dict[str, list[str]]:
    sp = len(special_prefix(tokenizer))

    def prompts(texts: list[str], new_tokens: int) -> list[list[int]]:
        ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
        return [_clip(list(p), sp, max(sp + 1, context - new_tokens)) for p in ids]

    verbmem = prompts([r["prompt"] for r in sets.verbmem], cfg.verbmem_max_new_tokens)
    out = {"forget_verbmem": generate(model, tokenizer, verbmem, batch_size=cfg.batch_size,
                                      max_new_tokens=cfg.verbmem_max_new_tokens, stops=(), device=device)}
    for split, rows, icl in (("forget_knowmem", sets.knowmem_forget, sets.knowmem_forget_icl),
                             ("retain_knowmem", sets.knowmem_retain, sets.knowmem_retain_icl)):
        ids = prompts([knowmem_prompt(r["question"], icl) for r in rows], cfg.knowmem_max_new_tokens)
        out[split] = generate(model, tokenizer, ids, batch_size=cfg.batch_size,
                              max_new_tokens=cfg.knowmem_max_new_tokens, stops=STOP_STRINGS, device=device)
    return out


def evaluate_muse(model, tokenizer, sets: MuseSets, cfg: MuseEvalConfig = MuseEvalConfig(), *,
                  retain_auc: float | None = None) -> MuseEvalResult:
    """Every MUSE metric of ``model`` (see the module docstring); its train/eval mode is restored.

    Args:
        model: a Hugging Face causal LM, evaluated on its own device under no_grad.
        tokenizer: its tokenizer (a pad token, or EOS used as pad).
        sets: ``load_muse``'s rows.
        cfg: generation lengths, truncation, batch size, k, whether to generate.
        retain_auc: the retain model's min-k% AUC (``privleak_auc`` of a retain model, or
            ``retain_auc_from_file``); adds ``privleak``.

    Returns:
        ``MuseEvalResult``: ``forget_verbmem_rouge``, ``forget_knowmem_rouge``, ``retain_knowmem_rouge``
        (with ``cfg.generate``), ``privleak`` (with ``retain_auc``), ``privleak_auc`` and ``forget_es``; the ``mia_*`` AUCs
        and privleak with their 95 % DeLong intervals (``names.ci_low`` / ``ci_high``);
        the per-item statistics they are computed from.
    """
    from unlearn.metrics.mia import attack_auc, mia_intervals, mia_metrics, mink_score, privleak, score_examples

    _check_retain_auc(retain_auc)
    device = next(model.parameters()).device
    pad = pad_id(tokenizer)
    context = _context(model, cfg)
    seconds: dict[str, float] = {}
    modes = [(m, m.training) for m in model.modules()]  # per module: some may be frozen in eval mode
    model.eval()
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            texts = text_sequences(tokenizer, [*sets.privleak_forget, *sets.privleak_holdout], cfg.max_length, context)
            scored = score_examples(model, texts, pad, cfg.batch_size)
            scores = [mink_score(s, cfg.k) for s in scored]
            es = extraction_strengths(model, verbmem_sequences(tokenizer, sets.verbmem, cfg.max_length, context),
                                      pad, cfg.batch_size)
            seconds["score"] = time.perf_counter() - t0
            generations = _generations(model, tokenizer, sets, cfg, context, device) if cfg.generate else {}
            seconds["generate"] = time.perf_counter() - t0 - seconds["score"]
    finally:
        for module, training in modes:
            module.training = training
    n = len(sets.privleak_forget)
    auc = attack_auc(scores[:n], scores[n:])
    # every attack on the same privleak texts (zlib's text: the scored tokens decoded, as open-unlearning)
    decoded = [tokenizer.decode([t for t in e.labels if t != IGNORE_INDEX], skip_special_tokens=True) for e in texts]
    metrics: dict[str, float] = mia_metrics(scored[:n], scored[n:], decoded[:n], decoded[n:], k=cfg.k)
    intervals = mia_intervals(scored[:n], scored[n:], decoded[:n], decoded[n:], k=cfg.k, level=names.CI_LEVEL)
    for metric, (lo, hi) in intervals.items():
        metrics[names.ci_low(metric)], metrics[names.ci_high(metric)] = lo, hi
    per_item = {names.FORGET_ES: [float(e) for e in es], names.PRIVLEAK_FORGET_MIN_K: [float(x) for x in scores[:n]],
                names.PRIVLEAK_HOLDOUT_MIN_K: [float(x) for x in scores[n:]]}
    per_item.update(_rouges(sets, generations))
    for metric in (names.FORGET_VERBMEM_ROUGE, names.FORGET_KNOWMEM_ROUGE, names.RETAIN_KNOWMEM_ROUGE,
                   names.FORGET_ES):
        if metric in per_item:
            metrics[metric] = float(np.mean(per_item[metric]))
    if retain_auc is not None:
        metrics[names.PRIVLEAK] = privleak(auc, float(retain_auc))
        metrics.update(privleak_interval(intervals[names.MIA_MIN_K], float(retain_auc)))
    metrics[names.PRIVLEAK_AUC] = auc
    return MuseEvalResult(names.TABLE.order(metrics), auc, {k: per_item[k] for k in names.PER_ITEM if k in per_item},
                          generations, seconds)


def privleak_interval(auc_interval: tuple[float, float], retain_auc: float) -> dict[str, float]:
    """privleak's interval from its min-k% AUC's (the retain model's AUC held fixed): privleak falls as the
    AUC rises, so the AUC's upper end gives privleak's lower one."""
    from unlearn.metrics.mia import privleak

    lo, hi = auc_interval
    return {names.ci_low(names.PRIVLEAK): privleak(hi, retain_auc), names.ci_high(names.PRIVLEAK): privleak(lo, retain_auc)}


def _rouges(sets: MuseSets, generations: dict[str, list[str]]) -> dict[str, list[float]]:
    """Each generation's ROUGE-L F1 against its reference, by metric name (empty without generations)."""
    if not generations:
        return {}
    refs = {"forget_verbmem": [r["gt"].strip() for r in sets.verbmem],
            "forget_knowmem": [r["answer"].strip() for r in sets.knowmem_forget],
            "retain_knowmem": [r["answer"].strip() for r in sets.knowmem_retain]}
    return {metric: rouge_l_f1(generations[split], refs[split])
            for split, metric in (("forget_verbmem", names.FORGET_VERBMEM_ROUGE),
                                  ("forget_knowmem", names.FORGET_KNOWMEM_ROUGE),
                                  ("retain_knowmem", names.RETAIN_KNOWMEM_ROUGE))}


# --- the retain model's statistics file ----------------------------------------------------------------

def retain_auc_from_file(path: str | Path) -> float:
    """The retain model's min-k% privleak AUC from ``path``.

    Reads open-unlearning's ``MUSE_EVAL.json`` of a retain model: ``privleak.yaml``'s ``reference_logs``
    take ``mia_min_k`` from it, whose ``agg_value`` is the AUC (``src/evals/metrics/base.py``,
    ``privacy.py``); or this project's ``{"privleak_auc": AUC}`` (``save_retain_auc``).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"retain statistics file {str(path)!r} does not exist; expected {_AUC_LAYOUT}")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"retain statistics file {str(p)!r} is not JSON ({e}); expected {_AUC_LAYOUT}") from e
    if isinstance(doc, dict) and RETAIN_AUC_KEY in doc:
        value, key = doc[RETAIN_AUC_KEY], RETAIN_AUC_KEY
    elif isinstance(doc, dict) and isinstance(doc.get(OU_MIN_K_KEY), dict) and "agg_value" in doc[OU_MIN_K_KEY]:
        value, key = doc[OU_MIN_K_KEY]["agg_value"], f"{OU_MIN_K_KEY}.agg_value"
    else:
        got = sorted(doc)[:12] if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"retain statistics file {str(p)!r} holds no retain AUC (found {got}); "
                          f"expected {_AUC_LAYOUT}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0.0 <= value < 1.0:
        raise ConfigError(f"retain statistics file {str(p)!r}: {key}={value!r} is not an AUC in [0, 1) "
                          f"(privleak divides by 1 - AUC); expected {_AUC_LAYOUT}")
    return float(value)


def save_retain_auc(path: str | Path, auc: float) -> None:
    """Write ``{"privleak_auc": auc}`` to ``path`` (what ``retain_auc_from_file`` reads back)."""
    _check_retain_auc(auc)
    p = Path(path).expanduser()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({RETAIN_AUC_KEY: float(auc)}, indent=1) + "\n", encoding="utf-8")
