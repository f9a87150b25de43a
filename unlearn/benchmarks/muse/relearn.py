"""MUSE's relearning split: which probes a relearned model is scored on, and what it relearns on.

The relearning attack (Hu et al., ICLR 2025: relearn on part of the unlearned set, then ask about the rest)
splits MUSE's forget corpus by article (raw/forget, what unlearning trains on). The relearned model is
scored on the forget probes that come from no relearned article: the verbmem rows, knowmem forget questions
and privleak forget texts placed in the held-out articles, or in none of the corpus's articles (``probes``:
a probe not found in it is not in a relearned article either). It relearns on the forget side's training
examples restricted to the relearned articles: their chunks and, in a capped run, the privleak excerpts and
(``data.probe_windows``) the probe windows of the probes placed there. The knowmem retain questions and the
privleak holdout texts are scored whole; privleak's retain AUC stays the whole forget set's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from unlearn.benchmarks.muse.data import MuseSets
from unlearn.benchmarks.muse.probes import VERBMEM_GT_NEEDLE, VERBMEM_PROMPT_NEEDLE, Stream, match_knowmem, match_texts
from unlearn.errors import ConfigError

# the evaluation sets the split restricts (MuseSets fields), in the order the record lists them
SCORED_SETS: tuple[str, ...] = ("verbmem", "knowmem_forget", "privleak_forget")


def probe_articles(data: MuseSets) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Each forget probe's articles of ``data.forget_texts`` (empty: found in none), by ``SCORED_SETS`` name: a
    verbmem row's, those holding the end of its prompt or the head of its continuation (either: a row is
    relearned on if any part of what it is scored on is); a knowmem question's, the article stating its answer
    (``Stream.holding``); a privleak text's, those its head runs through."""
    stream = Stream(data.forget_texts)
    verbmem = tuple(tuple(dict.fromkeys((*stream.find(r["prompt"].strip()[-VERBMEM_PROMPT_NEEDLE:]),
                                         *stream.find(r["gt"].strip()[:VERBMEM_GT_NEEDLE]))))
                    for r in data.verbmem)
    return {
        "verbmem": verbmem,
        "knowmem_forget": match_knowmem(stream, data.knowmem_forget, "knowmem forget answers", "raw/forget").where,
        "privleak_forget": match_texts(stream, data.privleak_forget, "privleak forget texts", "raw/forget").where,
    }


def scored_rows(data: MuseSets, relearn_articles: Sequence[int], fraction: float) -> dict[str, tuple[int, ...]]:
    """The rows of each of ``SCORED_SETS`` placed in no article of ``relearn_articles``.

    Raises:
        ConfigError: a set left without a row to score (its metric would be undefined), or relearned
            articles that hold no text (MUSE-News raw/forget has an empty article), naming the fraction.
    """
    relearned = set(relearn_articles)
    out = {name: tuple(i for i, where in enumerate(rows) if not relearned.intersection(where))
           for name, rows in probe_articles(data).items()}
    n = len(data.forget_texts)
    empty = [name for name, rows in out.items() if not rows]
    if empty:
        raise ConfigError(f"eval.relearn.fraction={fraction} relearns on {len(relearned)} of {n} forget articles, "
                          f"which hold every {empty[0]} row, so none is left to score the relearned model on; valid: "
                          "a smaller eval.relearn.fraction or another eval.relearn.seed, or more articles "
                          "(data.max_articles)")
    if not any(data.forget_texts[i].strip() for i in relearned):
        raise ConfigError(f"eval.relearn.fraction={fraction} relearns only on empty forget articles "
                          f"{sorted(relearned)}; valid: a larger eval.relearn.fraction or another eval.relearn.seed")
    return out


def relearned_side(data: MuseSets, relearn_articles: Sequence[int], scored: dict[str, tuple[int, ...]]) -> MuseSets:
    """``data`` cut to what the relearning attack trains on: the relearned articles, and the probes not
    ``scored`` (their windows with ``data.probe_windows``; a capped run's privleak excerpts, which are its
    privleak forget texts)."""
    def rest(rows: tuple, name: str) -> tuple:
        keep = set(scored[name])
        return tuple(r for i, r in enumerate(rows) if i not in keep)

    return replace(data, forget_texts=tuple(data.forget_texts[i] for i in sorted(relearn_articles)),
                   verbmem=rest(data.verbmem, "verbmem"), knowmem_forget=rest(data.knowmem_forget, "knowmem_forget"),
                   forget_excerpts=rest(data.forget_excerpts, "privleak_forget") if data.forget_excerpts else ())


def scored_side(data: MuseSets, scored: dict[str, tuple[int, ...]]) -> MuseSets:
    """``data`` with each of ``SCORED_SETS`` cut to its ``scored`` rows; the other sets as they are."""
    return replace(data, **{name: tuple(getattr(data, name)[i] for i in scored[name]) for name in SCORED_SETS})
