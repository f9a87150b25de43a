"""MUSE's plug-in: text corpora cut into ``data.max_length``-token chunks (loss on every token), the
MUSE evaluator, and the retain model's privleak AUC as reference statistics."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from unlearn.benchmarks.base import Benchmark, EvalOutput
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.benchmarks.muse import names
from unlearn.benchmarks.muse.options import DEFAULT_CORPUS, MuseOptions
from unlearn.data.formatting import EncodedQA
from unlearn.errors import ConfigError

if TYPE_CHECKING:  # annotations only: the attacks' types
    from unlearn.attacks.config import RelearnConfig
    from unlearn.attacks.relearn import RelearnSplit

REFERENCE_KEY = "privleak_auc"


class MuseBenchmark(Benchmark):
    """MUSE news or books: forget a corpus of articles, keep the retain corpus's knowledge."""

    name = "muse"
    metrics = names.TABLE
    splits = ("forget",)
    default_split = "forget"
    reference_doc = ("the retain model's privleak AUC (open-unlearning's MUSE_EVAL.json or this project's "
                     '{"privleak_auc": x})')
    title = "MUSE"
    options_type = MuseOptions
    relearns = True  # by forget article; scored on the probes of the others (unlearn.benchmarks.muse.relearn)
    relearn_unit = "forget article"

    def load(self, cfg: DataConfig):
        from unlearn.benchmarks.muse.data import load_muse

        opts = cfg.options_as(MuseOptions)
        return load_muse(opts.corpus or DEFAULT_CORPUS, cfg.path, retain_split=opts.retain_split,
                         max_articles=opts.max_articles, max_questions=opts.max_questions,
                         max_privleak=opts.max_privleak)

    def data_notes(self, data) -> tuple[str, ...]:
        return data.notes

    def tokenizer_corpus(self, data, cfg: DataConfig) -> list[str]:
        seen: dict[str, None] = {}
        for text in (*data.forget_texts, *data.retain_texts, *data.privleak_forget, *data.privleak_holdout):
            seen.setdefault(text)
        for row in data.verbmem:
            seen.setdefault(row["prompt"])
            seen.setdefault(row["gt"])
        for rows in (data.knowmem_forget, data.knowmem_forget_icl, data.knowmem_retain, data.knowmem_retain_icl):
            for row in rows:
                seen.setdefault(f"Question: {row['question']}\nAnswer: {row['answer']}")
        return list(seen)

    def finetune_examples(self, tokenizer, data, cfg: DataConfig, model: Literal["target", "retain"]
                          ) -> list[EncodedQA]:
        retain = _retain_examples(tokenizer, data, cfg)
        return [*_forget_examples(tokenizer, data, cfg), *retain] if model == "target" else retain

    def unlearn_examples(self, tokenizer, data, cfg: DataConfig, *, key_texts: bool
                         ) -> tuple[list[EncodedQA], list[EncodedQA]]:
        if key_texts:
            raise ConfigError("method.importance needs key-token annotations, which MUSE's text corpora do not "
                              "have; valid: importance: false")
        return _forget_examples(tokenizer, data, cfg), _retain_examples(tokenizer, data, cfg)

    def evaluate(self, model, tokenizer, data, cfg: DataConfig, eval_cfg: EvalConfig,
                 reference: Mapping[str, Any] | Literal["self"] | None, *, utility: bool = True) -> EvalOutput:
        """MUSE's evaluation; ``reference="self"``: privleak against the model's own AUC (0). ``utility``
        is not used: the retain knowmem set is scored all the same."""
        from unlearn.benchmarks.muse.evaluate import MuseEvalConfig, evaluate_muse

        # eval.batch_size and eval.rouge apply; generation lengths are open-unlearning's (128 / 32 new tokens);
        # texts are scored at the length the model was trained at (open-unlearning: 2048 for 2048-token
        # training), data.mia_max_length to override, the model's context at most
        muse_cfg = MuseEvalConfig(batch_size=eval_cfg.batch_size, generate=eval_cfg.rouge,
                                  max_length=mia_length(cfg))
        retain_auc = None if reference in (None, "self") else float(reference[REFERENCE_KEY])
        res = evaluate_muse(model, tokenizer, data, muse_cfg, retain_auc=retain_auc)
        metrics = dict(res.metrics)
        if reference == "self":
            from unlearn.benchmarks.muse.evaluate import privleak_interval
            from unlearn.metrics.mia import privleak

            metrics[names.PRIVLEAK] = privleak(res.privleak_auc, res.privleak_auc)
            interval = (metrics[names.ci_low(names.MIA_MIN_K)], metrics[names.ci_high(names.MIA_MIN_K)])
            metrics.update(privleak_interval(interval, res.privleak_auc))
        metrics[names.PRIVLEAK_AUC] = res.privleak_auc
        if names.PRIVLEAK in metrics:
            metrics[names.ABS_PRIVLEAK] = abs(metrics[names.PRIVLEAK])
        return EvalOutput(names.TABLE.order(metrics), {REFERENCE_KEY: res.privleak_auc}, res.generations, res.seconds,
                          res.per_item)

    def forget_count(self, data) -> int:
        return len(data.forget_texts)

    def relearn_scored(self, data, split: RelearnSplit, cfg: RelearnConfig) -> dict[str, tuple[int, ...]]:
        """The verbmem, knowmem forget and privleak forget rows from no relearned article (``scored_rows``)."""
        from unlearn.benchmarks.muse.relearn import scored_rows

        return scored_rows(data, split.relearn, cfg.fraction)

    def relearn_sets(self, tokenizer, data, cfg: DataConfig, split: RelearnSplit,
                     reference: Mapping[str, Any] | None) -> tuple[list[EncodedQA], Any, Mapping[str, Any] | None]:
        """Relearning examples: the forget side's training examples of the relearned articles (their chunks,
        the excerpts and probe windows placed there); scored on ``split.scored``'s probes, the other sets
        whole; the reference (privleak's retain AUC, over the whole forget set) as it is."""
        from unlearn.benchmarks.muse.relearn import relearned_side, scored_side

        examples = _forget_examples(tokenizer, relearned_side(data, split.relearn, split.scored), cfg)
        return examples, scored_side(data, split.scored), reference

    def reference_from_file(self, path: str | Path) -> dict[str, Any]:
        from unlearn.benchmarks.muse.evaluate import retain_auc_from_file

        return {REFERENCE_KEY: retain_auc_from_file(path)}

    def check_reference(self, reference: Mapping[str, Any], data) -> None:
        value = reference.get(REFERENCE_KEY)
        # privleak divides by 1 - AUC (open-unlearning's privacy.py): an AUC of 1 leaves nothing to compare with
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ConfigError(f"retain statistics hold {REFERENCE_KEY}={value!r}; expected a ROC AUC in [0, 1): "
                              f"{self.reference_doc}")


def mia_length(cfg: DataConfig) -> int:
    """Tokens of each privleak text the membership attacks score: ``data.mia_max_length``, else the length
    the model was trained at (``data.max_length``)."""
    return cfg.options_as(MuseOptions).mia_max_length or cfg.max_length


def _forget_examples(tokenizer, data, cfg: DataConfig) -> list[EncodedQA]:
    """The forget side a run trains on: the forget corpus in ``data.max_length``-token chunks; a capped run's
    privleak forget texts as scored (their first ``mia_length`` tokens, one sequence each); with
    ``data.probe_windows`` each verbmem and knowmem forget probe as evaluated (``probe_windows``)."""
    from unlearn.benchmarks.muse.data import chunk_texts
    from unlearn.benchmarks.muse.evaluate import probe_windows

    out = chunk_texts(tokenizer, list(data.forget_texts), cfg.max_length)
    out += probe_windows(tokenizer, data, ["privleak"], mia_length(cfg))
    if cfg.options_as(MuseOptions).probe_windows:
        out += probe_windows(tokenizer, data, ["verbmem", "knowmem_forget"], cfg.max_length)
    return out


def _retain_examples(tokenizer, data, cfg: DataConfig) -> list[EncodedQA]:
    """The retain side: the retain corpus in chunks; with ``data.probe_windows`` each retain knowmem probe as
    evaluated."""
    from unlearn.benchmarks.muse.data import chunk_texts
    from unlearn.benchmarks.muse.evaluate import probe_windows

    out = chunk_texts(tokenizer, list(data.retain_texts), cfg.max_length)
    if cfg.options_as(MuseOptions).probe_windows:
        out += probe_windows(tokenizer, data, ["knowmem_retain"], cfg.max_length)
    return out
