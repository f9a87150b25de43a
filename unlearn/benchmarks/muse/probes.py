"""Where MUSE's probes come from in its corpora, and the corpora of a capped (small) run built from that.

MUSE's probes are excerpts of its corpora: a verbmem prompt and its true continuation run through the
forget corpus (raw/forget), a privleak forget text is a stretch of it, a knowmem answer is a fact one of
its articles states. A run that keeps only N articles of a corpus must keep the ones its probes come from,
or the target model never trains on what is measured. This module finds them (in the corpus joined into
one stream, as training joins it, so a probe that spans two articles is found too) and says which probes
it could not place.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

SEP = "\n\n"  # chunk_texts joins a corpus with it; a probe can run across the join
PRIVLEAK_NEEDLE = 200  # characters: a privleak text's head, which places it
VERBMEM_PROMPT_NEEDLE = 200  # the end of a verbmem prompt (what the model continues from)
VERBMEM_GT_NEEDLE = 100  # the head of its true continuation
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{3,}")


class Stream:
    """A corpus joined with ``SEP``; maps a found excerpt back to the articles it overlaps."""

    def __init__(self, articles: Sequence[str]) -> None:
        self.articles = tuple(articles)
        self.text = SEP.join(self.articles)
        self.starts: list[int] = []
        pos = 0
        for a in self.articles:
            self.starts.append(pos)
            pos += len(a) + len(SEP)

    def find(self, needle: str) -> tuple[int, ...]:
        """The articles overlapped by the first occurrence of ``needle`` (empty: not found)."""
        needle = needle.strip()
        at = self.text.find(needle) if needle else -1
        if at < 0:
            return ()
        first = bisect_right(self.starts, at) - 1
        last = bisect_right(self.starts, at + len(needle) - 1) - 1
        return tuple(range(first, last + 1))

    def holding(self, answer: str, question: str) -> tuple[int, ...]:
        """The article stating a knowmem ``answer``: of those holding it, the one sharing most words of
        ``question`` (none when no article holds it, or none shares a word: a bare number is everywhere)."""
        answer = answer.strip()
        words = {w.lower() for w in _WORD.findall(question)}
        best, best_score = None, 0
        for i, a in enumerate(self.articles):
            if answer and answer in a:
                score = len(words & {w.lower() for w in _WORD.findall(a)})
                if score > best_score:
                    best, best_score = i, score
        return () if best is None else (best,)


@dataclass(frozen=True)
class ProbeMatch:
    """Which probes of one kind were found in a corpus: row index -> articles (empty tuple: not found)."""

    kind: str
    corpus: str
    where: tuple[tuple[int, ...], ...]

    @property
    def found(self) -> tuple[int, ...]:
        return tuple(i for i, w in enumerate(self.where) if w)

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(i for i, w in enumerate(self.where) if not w)

    @property
    def articles(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(a for w in self.where for a in w))

    def note(self) -> str:
        """One line for the run's output: how many were found, in which articles, and the rows that were not."""
        n = len(self.where)
        line = (f"{self.kind}: {len(self.found)}/{n} found in {self.corpus} "
                f"({len(self.articles)} article(s))")
        if self.missing:
            line += f"; not found: rows {list(self.missing)}"
        return line


def match_verbmem(stream: Stream, rows: Sequence[dict[str, str]]) -> ProbeMatch:
    """Each verbmem row's articles: those holding the end of its prompt and the head of its ``gt``."""
    where = []
    for r in rows:
        tail = stream.find(r["prompt"].strip()[-VERBMEM_PROMPT_NEEDLE:])
        head = stream.find(r["gt"].strip()[:VERBMEM_GT_NEEDLE])
        where.append(tuple(dict.fromkeys((*tail, *head))) if tail and head else ())
    return ProbeMatch("verbmem", "raw/forget", tuple(where))


def match_texts(stream: Stream, texts: Sequence[str], kind: str, corpus: str) -> ProbeMatch:
    """Each text's articles, placed by its first ``PRIVLEAK_NEEDLE`` characters."""
    return ProbeMatch(kind, corpus, tuple(stream.find(t.strip()[:PRIVLEAK_NEEDLE]) for t in texts))


def match_knowmem(stream: Stream, rows: Sequence[dict[str, str]], kind: str, corpus: str) -> ProbeMatch:
    """Each knowmem row's article: the one holding its answer that shares most words with its question."""
    return ProbeMatch(kind, corpus, tuple(stream.holding(r["answer"], r["question"]) for r in rows))


def capped_corpus(articles: Sequence[str], probed: Sequence[int], banned: Sequence[int], n: int
                  ) -> tuple[str, ...]:
    """The ``probed`` articles, then the first others up to ``n`` in all, in corpus order; never a
    ``banned`` one (an article holding a holdout text: holdout texts are never trained on)."""
    out = set(banned)
    keep = dict.fromkeys(i for i in probed if i not in out)
    for i in range(len(articles)):
        if len(keep) >= n:
            break
        if i not in out:
            keep.setdefault(i)
    return tuple(articles[i] for i in sorted(keep))
