"""MUSE's rows: loading the hub (``muse-bench/MUSE-News`` / ``MUSE-Books``) or a local copy, and cutting
text corpora into training chunks.

Layouts (the hub's configurations and splits, as its ``README.md`` ``configs:`` header declares them, one
``<config>/<split>-00000-of-00001.parquet`` file each):

==========  ==========================================  =====================
config      splits                                      columns
==========  ==========================================  =====================
raw         forget, retain1, retain2, holdout           text
verbmem     forget                                      prompt, gt
knowmem     forget_qa, forget_qa_icl, retain_qa,        question, answer
            retain_qa_icl
privleak    forget, retain, holdout                     text
==========  ==========================================  =====================

A local directory is either a copy of that repository (its ``README.md`` and parquet files, read by the
very ``datasets.load_dataset(directory, config, split=...)`` call that reads the hub), or JSON Lines, one
``<config>_<split>.jsonl`` file per split (``raw_forget.jsonl``, ``verbmem_forget.jsonl``,
``knowmem_forget_qa.jsonl``, ``privleak_holdout.jsonl``, ...), as ``../shared/data/muse_news/`` is.

Which files open-unlearning reads is ``configs/data/datasets/MUSE_*.yaml`` in locuslab/open-unlearning
(``MUSE_forget``: raw/forget, ``MUSE_retain``: raw/retain1, ``MUSE_forget_verbmem``, ``MUSE_forget_knowmem``
and ``MUSE_retain_knowmem`` with their ``*_icl`` few-shot splits, ``MUSE_MIA``: privleak forget/holdout).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unlearn.data.formatting import EncodedQA
from unlearn.data.jsonl import read_jsonl
from unlearn.errors import ConfigError, check_range, unknown_name

HUB_REPOS: dict[str, str] = {"news": "muse-bench/MUSE-News", "books": "muse-bench/MUSE-Books"}
CORPORA = tuple(HUB_REPOS)

# retain corpus name -> (config, split). raw/retain1 is open-unlearning's MUSE_retain default; a local
# JSON Lines copy may hold only privleak/retain (a small retain corpus of 100 articles).
RETAIN_SPLITS: dict[str, tuple[str, str]] = {
    "retain1": ("raw", "retain1"),
    "retain2": ("raw", "retain2"),
    "privleak_retain": ("privleak", "retain"),
}
HUB_DEFAULT_RETAIN = "retain1"
JSONL_DEFAULT_RETAIN = "privleak_retain"

TEXT_COLUMNS = ("text",)
VERBMEM_COLUMNS = ("prompt", "gt")
QA_COLUMNS = ("question", "answer")

_HUB_LAYOUT = ("a copy of the hub repository: README.md whose `configs:` header maps each config/split to "
               "<config>/<split>-*.parquet (raw/forget, verbmem/forget, knowmem/forget_qa, knowmem/forget_qa_icl, "
               "knowmem/retain_qa, knowmem/retain_qa_icl, privleak/forget, privleak/holdout)")
_JSONL_LAYOUT = ("JSON Lines files <config>_<split>.jsonl: raw_forget.jsonl, verbmem_forget.jsonl, "
                 "knowmem_forget_qa.jsonl, knowmem_forget_qa_icl.jsonl, knowmem_retain_qa.jsonl, "
                 "knowmem_retain_qa_icl.jsonl, privleak_forget.jsonl, privleak_holdout.jsonl, and the retain "
                 "corpus (privleak_retain.jsonl, or raw_retain1.jsonl / raw_retain2.jsonl)")


@dataclass(frozen=True)
class MuseSets:
    """Every MUSE row a run needs, validated (strings in the needed columns, non-empty but in the raw
    corpora, which open-unlearning joins as they are: MUSE-News raw/forget holds an empty article).

    Attributes:
        forget_texts: the forget corpus (raw/forget), what unlearning trains on.
        retain_texts: the retain corpus (``load_muse``'s ``retain_split``).
        verbmem: verbmem/forget rows ``{"prompt", "gt"}`` (``gt``: the true continuation).
        knowmem_forget, knowmem_retain: knowmem/forget_qa, retain_qa rows ``{"question", "answer"}``.
        knowmem_forget_icl, knowmem_retain_icl: their few-shot examples (``*_qa_icl``), never capped.
        privleak_forget, privleak_holdout: texts whose membership the privleak attack tells apart.
        privleak_retain: privleak/retain texts, empty where the source has none.
        forget_excerpts: a capped run's privleak forget texts, trained on (their scored prefix, one
            sequence each) with the forget corpus (``capped_sets``); empty for a whole-corpus run, whose corpus holds them.
        notes: what a capped run found of its probes in its corpora (``capped_sets``), for the run's output.
    """

    forget_texts: tuple[str, ...]
    retain_texts: tuple[str, ...]
    verbmem: tuple[dict[str, str], ...]
    knowmem_forget: tuple[dict[str, str], ...]
    knowmem_forget_icl: tuple[dict[str, str], ...]
    knowmem_retain: tuple[dict[str, str], ...]
    knowmem_retain_icl: tuple[dict[str, str], ...]
    privleak_forget: tuple[str, ...]
    privleak_holdout: tuple[str, ...]
    privleak_retain: tuple[str, ...] = ()
    forget_excerpts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Part:
    """One split to read: where, which columns, which cap applies (``articles`` / ``questions`` / none)."""

    config: str
    split: str
    columns: tuple[str, ...]
    cap: str | None
    required: bool = True
    allow_empty: bool = False  # raw corpora: MUSE-News raw/forget holds an empty article (row 821)


def _parts(retain: tuple[str, str]) -> dict[str, _Part]:
    return {
        "forget_texts": _Part("raw", "forget", TEXT_COLUMNS, "articles", allow_empty=True),
        "retain_texts": _Part(*retain, TEXT_COLUMNS, "articles", allow_empty=retain[0] == "raw"),
        "verbmem": _Part("verbmem", "forget", VERBMEM_COLUMNS, "questions"),
        "knowmem_forget": _Part("knowmem", "forget_qa", QA_COLUMNS, "questions"),
        "knowmem_forget_icl": _Part("knowmem", "forget_qa_icl", QA_COLUMNS, None),
        "knowmem_retain": _Part("knowmem", "retain_qa", QA_COLUMNS, "questions"),
        "knowmem_retain_icl": _Part("knowmem", "retain_qa_icl", QA_COLUMNS, None),
        "privleak_forget": _Part("privleak", "forget", TEXT_COLUMNS, "privleak"),
        "privleak_holdout": _Part("privleak", "holdout", TEXT_COLUMNS, "privleak"),
        "privleak_retain": _Part("privleak", "retain", TEXT_COLUMNS, "articles", required=False),
    }


def jsonl_name(config: str, split: str) -> str:
    """The JSON Lines file of ``config``/``split`` in a local copy (``knowmem_forget_qa.jsonl``)."""
    return f"{config}_{split}.jsonl"


class _Source:
    """Reads one split's rows (a list of mappings) from the hub / a hub-layout directory / JSON Lines."""

    def __init__(self, corpus: str, path: str | None) -> None:
        self.repo = HUB_REPOS[corpus]
        self.dir: Path | None = None
        self.jsonl = False
        if path is not None:
            self.dir = Path(path).expanduser()
            if not self.dir.is_dir():
                raise ConfigError(f"MUSE data path {str(path)!r} is not a directory; valid: a directory holding "
                                  f"{_JSONL_LAYOUT}; or {_HUB_LAYOUT}; or data.path: null for the hub ({self.repo})")
            self.jsonl = any(self.dir.glob("*.jsonl"))
            if not self.jsonl and not (self.dir / "README.md").is_file():
                raise ConfigError(f"MUSE data directory {str(self.dir)!r} holds neither layout: no *.jsonl files and "
                                  f"no README.md; expected {_JSONL_LAYOUT}; or {_HUB_LAYOUT}")

    @property
    def default_retain(self) -> str:
        return JSONL_DEFAULT_RETAIN if self.jsonl else HUB_DEFAULT_RETAIN

    def where(self, part: _Part) -> str:
        if self.jsonl:
            return str(self.dir / jsonl_name(part.config, part.split))
        return f"{self.dir if self.dir is not None else self.repo} config {part.config!r} split {part.split!r}"

    def rows(self, part: _Part) -> list[Any] | None:
        """The split's rows; None when an optional split is absent."""
        return self._jsonl_rows(part) if self.jsonl else self._hub_rows(part)

    def _jsonl_rows(self, part: _Part) -> list[Any] | None:
        file = self.dir / jsonl_name(part.config, part.split)
        if not file.is_file():
            if not part.required:
                return None
            raise ConfigError(f"MUSE data directory {str(self.dir)!r} lacks {file.name} ({part.config}/{part.split}); "
                              f"expected {_JSONL_LAYOUT}")
        return read_jsonl(file, f"one JSON object per line with {', '.join(part.columns)}")

    def _hub_rows(self, part: _Part) -> list[Any] | None:
        import datasets

        source = str(self.dir) if self.dir is not None else self.repo
        try:
            ds = datasets.load_dataset(source, part.config, split=part.split)
        except ValueError as e:  # an unknown config or split: datasets lists the ones it has
            if not part.required:
                return None
            raise ConfigError(f"MUSE source {source!r} has no {part.config}/{part.split} ({e}); expected "
                              f"{_HUB_LAYOUT if self.dir is not None else 'the hub repository ' + self.repo}") from e
        except (OSError, datasets.exceptions.DatasetsError) as e:  # missing files, offline, unreachable hub
            raise ConfigError(f"cannot read {part.config}/{part.split} of MUSE source {source!r}: {e}; expected "
                              f"{_HUB_LAYOUT if self.dir is not None else 'the hub repository ' + self.repo}") from e
        missing = [c for c in part.columns if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{self.where(part)} lacks column {missing[0]!r} (it has {ds.column_names}); valid "
                              f"columns: {', '.join(part.columns)}")
        return ds.select_columns(list(part.columns)).to_list()


def _check_row(row: Any, i: int, part: _Part, where: str) -> dict[str, str]:
    """The row's needed columns, each a string (non-empty unless ``part.allow_empty``)."""
    valid = f"each row needs {'' if part.allow_empty else 'non-empty '}string columns {', '.join(part.columns)}"
    if not isinstance(row, Mapping):
        raise ConfigError(f"{where} row {i} is {type(row).__name__}, not an object; {valid}")
    out = {}
    for col in part.columns:
        if col not in row:
            what = "has no answer" if col == "answer" else "lacks it"
            raise ConfigError(f"{where} row {i}: column {col!r} is missing ({what}; the row has {sorted(row)}); "
                              f"{valid}")
        value = row[col]
        if not isinstance(value, str) or not (value.strip() or part.allow_empty):
            what = "an empty answer" if col == "answer" and isinstance(value, str) else f"{value!r:.80}"
            raise ConfigError(f"{where} row {i}: column {col!r} is {what}; {valid}")
        out[col] = value
    return out


def _check_cap(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name}={value!r} must be an integer >= 1 or null (every row)")
    check_range(name, value, low=1)


def load_muse(corpus: str, path: str | None, *, retain_split: str | None = None, max_articles: int | None = None,
              max_questions: int | None = None, max_privleak: int | None = None) -> MuseSets:
    """Load and validate every MUSE split a run needs, before any model is loaded.

    Follows the splits of locuslab/open-unlearning's ``configs/data/datasets/MUSE_*.yaml`` (forget corpus
    raw/forget, retain corpus raw/retain1, verbmem/forget, knowmem forget_qa / retain_qa with their
    ``*_icl`` few-shot rows, privleak forget / holdout).

    Args:
        corpus: ``news`` (``muse-bench/MUSE-News``) or ``books`` (``muse-bench/MUSE-Books``).
        path: None for the hub; else a local directory, in the JSON Lines layout
            (``<config>_<split>.jsonl``) or a copy of the hub repository (``README.md`` + parquet files,
            read through ``datasets.load_dataset`` exactly as the hub is).
        retain_split: the retain corpus: ``retain1`` / ``retain2`` (raw/retain1, raw/retain2) or
            ``privleak_retain`` (privleak/retain, 100 articles). None: ``retain1`` for the hub and a
            hub-layout directory (open-unlearning's ``MUSE_retain``), ``privleak_retain`` for a JSON Lines
            copy, since the shared copy (``../shared/data/muse_news/``) has no raw retain corpus.
        max_articles: a capped (small) run: N articles of each corpus at least, those its kept probes come
            from first (``capped_sets``); the privleak forget texts are trained on as excerpts.
        max_questions: keep the first N rows of every probe (verbmem, knowmem forget / retain); the
            few-shot ``*_icl`` rows are kept whole, they make up every knowmem prompt.
        max_privleak: keep the first N privleak forget and holdout texts (None: all of them).

    Raises:
        ConfigError: an unknown corpus or retain split, a missing directory, file, split or column, a row
            whose needed column is missing or not a non-empty string (naming file, row and column), or an
            empty split.
    """
    if corpus not in HUB_REPOS:
        raise unknown_name("MUSE corpus", corpus, CORPORA, "data.corpus")
    if retain_split is not None and retain_split not in RETAIN_SPLITS:
        raise unknown_name("MUSE retain split", retain_split, RETAIN_SPLITS, "data.retain_split")
    _check_cap("data.max_articles", max_articles)
    _check_cap("data.max_questions", max_questions)
    _check_cap("data.max_privleak", max_privleak)
    source = _Source(corpus, path)
    parts = _parts(RETAIN_SPLITS[retain_split or source.default_retain])
    # the text corpora are capped by capped_sets, from the whole corpora (the probes' articles first)
    caps = {"articles": None, "questions": max_questions, "privleak": max_privleak, None: None}
    loaded: dict[tuple[str, str], list[Any] | None] = {}  # the retain corpus may be privleak/retain: read once
    values: dict[str, tuple[Any, ...]] = {}
    for field_name, part in parts.items():
        key = (part.config, part.split)
        if key not in loaded:
            loaded[key] = source.rows(part)
        rows = loaded[key]
        if rows is None:
            values[field_name] = ()
            continue
        where = source.where(part)
        if not rows:
            raise ConfigError(f"{where} has no rows; every MUSE split needs at least one "
                              "(privleak forget and holdout both, for the membership AUC)")
        rows = rows[: caps[part.cap]] if caps[part.cap] is not None else rows
        checked = [_check_row(r, i, part, where) for i, r in enumerate(rows)]
        values[field_name] = tuple(r["text"] for r in checked) if part.columns == TEXT_COLUMNS else tuple(checked)
    sets = MuseSets(**values)
    if max_articles is None:
        return sets
    return capped_sets(sets, max_articles, retain_is_privleak=parts["retain_texts"].config == "privleak")


def capped_sets(sets: MuseSets, n: int, *, retain_is_privleak: bool) -> MuseSets:
    """A capped (small) run's corpora from the whole ones in ``sets``: what it trains on holds what it measures.

    - forget corpus: every raw/forget article a kept verbmem row (its prompt's end, its gt's head) or
      knowmem forget answer comes from, then the first others up to ``n`` articles; never one holding a
      privleak holdout text (holdout texts are never trained on). The kept privleak forget texts are
      trained on too, as excerpts (``forget_excerpts``, each its scored prefix, one sequence, at tokenization):
      MUSE's privleak forget set is a sample of its forget corpus, and its ~100 texts span ~100 articles,
      which a small run could not afford whole.
    - retain corpus: the texts holding the kept knowmem retain answers, then the first others up to ``n``;
      where it is privleak/retain, ``privleak_retain`` is that corpus (what the retain side holds).

    The probes are spread over the whole corpus, so the first N articles alone would leave them untrained
    on. Which probes were found, and which not, is in ``notes`` (the run prints them).
    """
    from unlearn.benchmarks.muse.probes import Stream, capped_corpus, match_knowmem, match_texts, match_verbmem

    forget, retain = Stream(sets.forget_texts), Stream(sets.retain_texts)
    retain_name = "the retain corpus"
    verbmem = match_verbmem(forget, sets.verbmem)
    knowmem = match_knowmem(forget, sets.knowmem_forget, "knowmem forget answers", "raw/forget")
    privleak = match_texts(forget, sets.privleak_forget, "privleak forget texts", "raw/forget")
    holdout = match_texts(forget, sets.privleak_holdout, "privleak holdout texts", "raw/forget")
    holdout_retain = match_texts(retain, sets.privleak_holdout, "privleak holdout texts", retain_name)
    knowmem_retain = match_knowmem(retain, sets.knowmem_retain, "knowmem retain answers", retain_name)
    if sets.verbmem and sets.privleak_forget and not verbmem.found and not privleak.found:
        raise ConfigError(f"none of the {len(sets.verbmem)} verbmem rows and {len(sets.privleak_forget)} privleak forget "
                          "texts kept is in raw/forget: the probes and the corpus do not belong together (another "
                          "corpus or release?); valid: a MUSE copy whose verbmem / privleak rows are excerpts of its "
                          "raw/forget, or data.max_articles=null (the whole corpus)")
    banned = holdout.articles
    probed = [*verbmem.articles, *knowmem.articles]
    forget_texts = capped_corpus(sets.forget_texts, probed, banned, n)
    retain_texts = capped_corpus(sets.retain_texts, knowmem_retain.articles, holdout_retain.articles, n)
    lost = sorted(set(probed) & set(banned))
    notes = (
        verbmem.note(), knowmem.note(),
        privleak.note() + f"; all {len(sets.privleak_forget)} trained on as their scored prefix (MUSE's forget-set "
                          "sample)",
        f"privleak holdout texts in raw/forget: rows {list(holdout.found)} in article(s) {list(banned)}, left out of "
        "training" + (f" (they held probes too: article(s) {lost})" if lost else "") if banned
        else "privleak holdout texts: none in raw/forget",
        knowmem_retain.note() + (f"; privleak holdout rows {list(holdout_retain.found)} are in the retain corpus "
                                 f"(text(s) {list(holdout_retain.articles)}), left out" if holdout_retain.found else ""),
        f"capped corpora: {len(forget_texts)} forget articles ({len(set(probed) - set(banned))} probed) + "
        f"{len(sets.privleak_forget)} privleak excerpts; {len(retain_texts)} retain texts",
    )
    return replace(sets, forget_texts=forget_texts, retain_texts=retain_texts, forget_excerpts=sets.privleak_forget,
                   privleak_retain=retain_texts if retain_is_privleak else sets.privleak_retain[:n], notes=notes)


def special_prefix(tokenizer) -> list[int]:
    """The token ids the tokenizer adds in front of any text by itself (Llama: BOS; byte-level BPE: none).

    open-unlearning tokenizes MUSE text with ``add_special_tokens=True`` (``preprocess_pretraining_instance``
    in ``src/data/utils.py``); what that adds to an empty string is what precedes every sequence.
    """
    return list(tokenizer("", add_special_tokens=True)["input_ids"])


def chunk_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[EncodedQA]:
    """The corpus ``texts`` as consecutive ``max_length``-token training chunks, loss on every token.

    Follows open-unlearning's ``PretrainingDataset._chunk_raw_text`` (``src/data/pretraining.py``): the
    texts are joined with ``"\\n\\n"`` into one stream, tokenized once without special tokens, and cut
    into ``len // max_length + 1`` chunks of ``max_length`` tokens, so the short tail is kept (an article
    boundary can fall inside a chunk). Each chunk is then prefixed with what the tokenizer adds by itself
    (``special_prefix``: BOS for Llama, nothing for a byte-level BPE), as its ``preprocess_pretraining_instance``
    does with ``add_special_tokens=True``; a chunk is therefore ``len(prefix) + max_length`` tokens at most.

    Two details differ, both where open-unlearning's output carries no information: the chunk ids are
    used as they are (open-unlearning decodes each chunk to text and tokenizes it again, which can merge
    tokens differently at the cut), so the chunks tile the token stream exactly; and an empty tail (the
    stream's length a multiple of ``max_length``) is dropped rather than trained on as a lone prefix.

    Args:
        tokenizer: a Hugging Face tokenizer.
        texts: the corpus, in order.
        max_length: tokens per chunk (>= 1), the prefix not counted.

    Returns:
        One ``EncodedQA`` per chunk with ``labels == input_ids`` and ``prompt_len == 0`` (a causal LM never
        predicts position 0, so the prefix carries no loss either way).
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ConfigError(f"max_length={max_length!r} must be an integer >= 1")
    check_range("max_length", max_length, low=1)
    if not texts:
        return []
    stream = list(tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"])
    prefix = special_prefix(tokenizer)
    chunks = []
    for start in range(0, len(stream), max_length):
        ids = tuple(prefix + stream[start : start + max_length])
        chunks.append(EncodedQA(ids, ids, 0))
    return chunks
