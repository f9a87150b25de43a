"""The TOFU family's plug-in: question-answer rows, the TOFU evaluator and metric table, and the retain
model's forget truth ratios as reference statistics. TOFU and the generated benchmark are two instances
that differ in how they load their rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn.benchmarks.base import Benchmark, EvalOutput
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.benchmarks.tofu import evaluate as tofu_eval
from unlearn.benchmarks.tofu import maths, names
from unlearn.benchmarks.tofu.options import TofuOptions
from unlearn.benchmarks.tofu.reference import REFERENCE_KEY, check_retain_stats, retain_stats_from_file
from unlearn.benchmarks.tofu.sets import FORGET_SPLITS, QASets, text_corpus
from unlearn.data.batching import encode_rows
from unlearn.data.formatting import IGNORE_INDEX, EncodedQA, PromptFormat
from unlearn.errors import ConfigError
from unlearn.metrics.generation import pad_id
from unlearn.metrics.mia import DEFAULT_K, MIA_MIN_K, mia_metrics, privleak, score_examples

if TYPE_CHECKING:  # annotations only: the attacks' types
    from unlearn.attacks.relearn import RelearnSplit

Reference = Mapping[str, Any] | Literal["self"] | None
PRIVLEAK_KEY = "privleak_auc"  # the retain model's min-k% AUC (forget vs holdout), privleak's reference


def _prompt(cfg: DataConfig) -> PromptFormat:
    return cfg.options_as(TofuOptions).prompt


class TofuFamily(Benchmark):
    """A TOFU-style benchmark: fictitious authors' question-answer pairs, forget quality and model utility."""

    metrics = names.TABLE
    relearns = True
    relearn_min_heldout = 2  # forget quality and the distances compare distributions of truth ratios
    splits = FORGET_SPLITS
    default_split = "forget10"
    reference_doc = "the retain model's forget truth ratios (TOFU_EVAL.json or this project's retain_stats.json)"

    def __init__(self, name: str, load: Callable[[DataConfig], QASets], annotated_splits: tuple[str, ...],
                 options_type: type[TofuOptions]) -> None:
        self.name = name
        self._load = load
        self._annotated = annotated_splits
        self.options_type = options_type

    def has_key_texts(self, cfg: DataConfig) -> bool:
        return cfg.options_as(TofuOptions).importance_path is not None or cfg.split in self._annotated

    def load(self, cfg: DataConfig) -> QASets:
        return self._load(cfg)

    def tokenizer_corpus(self, data: QASets, cfg: DataConfig) -> list[str]:
        return text_corpus(data, _prompt(cfg))

    def finetune_examples(self, tokenizer, data: QASets, cfg: DataConfig,
                          model: Literal["target", "retain"]) -> list[EncodedQA]:
        rows = data.full if model == "target" else data.retain
        return encode_rows(tokenizer, list(rows) + list(data.general_knowledge), max_length=cfg.max_length,
                           fmt=_prompt(cfg))

    def unlearn_examples(self, tokenizer, data: QASets, cfg: DataConfig, *, key_texts: bool
                         ) -> tuple[list[EncodedQA], list[EncodedQA]]:
        keys = None
        if key_texts:
            if data.forget_key_texts is None:
                raise ConfigError(f"method.importance is on but benchmark {data.name!r} carries no key-token "
                                  "annotations; valid: set data.importance_path to an annotation file, or "
                                  "importance: false")
            keys = data.forget_key_texts
        forget = encode_rows(tokenizer, data.forget, max_length=cfg.max_length, fmt=_prompt(cfg), key_texts=keys)
        retain = encode_rows(tokenizer, data.retain, max_length=cfg.max_length, fmt=_prompt(cfg))
        return forget, retain

    def forget_key_texts(self, data: QASets) -> tuple[str, ...] | None:
        return data.forget_key_texts

    def evaluate(self, model, tokenizer, data: QASets, cfg: DataConfig, eval_cfg: EvalConfig,
                 reference: Reference, *, utility: bool = True) -> EvalOutput:
        """TOFU's evaluation; ``reference="self"``: relative metrics against the model's own statistics
        (the retain model in prepare: forget quality 1)."""
        ratios = None if reference in (None, "self") else reference[REFERENCE_KEY]
        sets = data.eval_sets() if utility else {names.FORGET: data.forget_eval}
        res = tofu_eval.evaluate(model, tokenizer, sets, cfg=eval_cfg, fmt=_prompt(cfg),
                                 retain_truth_ratios=ratios)
        metrics = dict(res.metrics)
        t0 = time.perf_counter()
        metrics.update(self._membership(model, tokenizer, data, cfg, eval_cfg))
        seconds = {**res.seconds, "membership": time.perf_counter() - t0}
        own = {REFERENCE_KEY: list(res.forget_truth_ratios), PRIVLEAK_KEY: metrics[MIA_MIN_K]}
        if reference == "self":
            metrics[names.FORGET_QUALITY] = maths.forget_quality(res.forget_truth_ratios, res.forget_truth_ratios)
            distances = maths.forget_distances(res.forget_truth_ratios, res.forget_truth_ratios)
            metrics.update({names.DISTANCE_METRICS[k]: v for k, v in distances.items()})
            reference = own
        if reference is not None and PRIVLEAK_KEY in reference:  # a retain_stats file may not carry it
            metrics[names.PRIVLEAK] = privleak(metrics[MIA_MIN_K], float(reference[PRIVLEAK_KEY]))
            metrics[names.ABS_PRIVLEAK] = abs(metrics[names.PRIVLEAK])
        return EvalOutput(names.TABLE.order(metrics), own, res.generations, seconds, res.per_item)

    def _membership(self, model, tokenizer, data: QASets, cfg: DataConfig, eval_cfg: EvalConfig) -> dict[str, float]:
        """The membership attacks' AUCs on forget vs holdout answers (open-unlearning's TOFU ``mia_*``)."""
        pad = pad_id(tokenizer)
        stats, texts = [], []
        for rows in (data.forget, data.holdout):
            examples = encode_rows(tokenizer, rows, max_length=eval_cfg.max_length, fmt=_prompt(cfg))
            stats.append(score_examples(model, examples, pad, eval_cfg.batch_size))
            # zlib's text is the scored tokens decoded, as open-unlearning's extract_target_texts_from_processed_data
            texts.append([tokenizer.decode([t for t in e.labels if t != IGNORE_INDEX], skip_special_tokens=True)
                          for e in examples])
        return mia_metrics(stats[0], stats[1], texts[0], texts[1], k=DEFAULT_K)

    def forget_count(self, data: QASets) -> int:
        return len(data.forget)

    def relearn_sets(self, tokenizer, data: QASets, cfg: DataConfig, split: RelearnSplit, reference: Reference
                     ) -> tuple[list[EncodedQA], QASets, Reference]:
        """Relearning examples: the forget rows ``split.relearn`` encoded as for unlearning. The held-out
        data: the forget rows ``split.heldout`` and their evaluation rows (matched by question), the other
        sets as they are; the retain model's forget truth ratios cut to those questions (privleak's retain
        AUC stays the full forget set's)."""
        relearn_rows, heldout_rows = split.relearn, split.heldout
        examples = encode_rows(tokenizer, [data.forget[i] for i in relearn_rows], max_length=cfg.max_length,
                               fmt=_prompt(cfg))
        keep = {data.forget[i]["question"] for i in heldout_rows}
        rows = [i for i, r in enumerate(data.forget_eval) if r["question"] in keep]
        if len(rows) != len(keep):
            raise ConfigError(f"{self.title}: {len(keep)} held-out forget questions but {len(rows)} evaluation rows "
                              "match them; the relearning attack needs one evaluation row per forget question")
        heldout = replace(data, forget=tuple(data.forget[i] for i in heldout_rows),
                          forget_eval=tuple(data.forget_eval[i] for i in rows), forget_key_texts=None)
        ref = reference
        if isinstance(reference, Mapping):
            ref = {**reference, REFERENCE_KEY: [reference[REFERENCE_KEY][i] for i in rows]}
        return examples, heldout, ref

    def reference_from_file(self, path: str | Path) -> dict[str, Any]:
        """Forget truth ratios, and privleak's retain AUC when the file has it (this project's
        ``privleak_auc``, or open-unlearning's ``mia_min_k.agg_value`` in TOFU_EVAL.json)."""
        out: dict[str, Any] = {REFERENCE_KEY: retain_stats_from_file(path)}
        doc = json.loads(Path(path).read_text())  # readable: retain_stats_from_file checked it
        auc = doc.get(PRIVLEAK_KEY)
        if auc is None and isinstance(doc.get(MIA_MIN_K), Mapping):
            auc = doc[MIA_MIN_K].get("agg_value")
        if auc is not None:
            if isinstance(auc, bool) or not isinstance(auc, (int, float)) or not 0.0 <= auc < 1.0:
                raise ConfigError(f"{path}: privleak's retain AUC is {auc!r}; expected a number in [0, 1)")
            out[PRIVLEAK_KEY] = float(auc)
        return out

    def check_reference(self, reference: Mapping[str, Any], data: QASets) -> None:
        if REFERENCE_KEY not in reference:
            raise ConfigError(f"retain statistics lack {REFERENCE_KEY!r}; expected {self.reference_doc}")
        check_retain_stats(reference[REFERENCE_KEY], len(data.forget_eval))
