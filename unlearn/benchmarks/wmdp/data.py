"""WMDP's unlearning corpora: ``cais/wmdp-corpora`` through ``datasets``, or local JSON Lines.

The hub repository holds the public corpora as configurations with one ``train`` split and a ``text``
column: ``cyber-forget-corpus``, ``cyber-retain-corpus`` and ``bio-retain-corpus`` (open-unlearning's
``configs/data/datasets/WMDP_Corpora_*.yaml``). The biology forget corpus (``bio-forget-corpus``) is
access-controlled: its owners hand it out on request, as a JSON Lines file, so it is always a local file.

A local directory (``data.path``) holds ``<corpus>-forget-corpus.jsonl`` and ``<corpus>-retain-corpus.jsonl``,
one JSON object per line with a string ``text`` (other columns, such as the biology corpus's ``title`` and
``abstract``, are ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from unlearn.data.jsonl import read_jsonl
from unlearn.errors import ConfigError, unknown_name

HUB_REPO = "cais/wmdp-corpora"
CORPORA = ("bio", "cyber")
PUBLIC = frozenset({"cyber-forget-corpus", "cyber-retain-corpus", "bio-retain-corpus"})
BIO_FORGET_NOTE = ("the WMDP biology forget corpus (bio-forget-corpus) is access-controlled and not on the hub: "
                   "request it from its owners (the WMDP authors' request form, linked from "
                   "https://github.com/centerforaisafety/wmdp), then set data.path to the directory holding "
                   "bio-forget-corpus.jsonl and bio-retain-corpus.jsonl")
Part = Literal["forget", "retain"]


@dataclass(frozen=True)
class WmdpCorpora:
    """The forget and retain corpora of one WMDP subset (``bio`` or ``cyber``), in file order."""

    corpus: str
    forget_texts: tuple[str, ...]
    retain_texts: tuple[str, ...]


def corpus_name(corpus: str, part: Part) -> str:
    """``cyber-forget-corpus``: the hub configuration and the local file stem."""
    return f"{corpus}-{part}-corpus"


def _local_rows(directory: Path, name: str) -> list[Any]:
    file = directory / f"{name}.jsonl"
    if not file.is_file():
        note = f"; {BIO_FORGET_NOTE}" if name not in PUBLIC else ""
        raise ConfigError(f"WMDP data directory {str(directory)!r} lacks {file.name}; valid: a directory holding "
                          f"<corpus>-forget-corpus.jsonl and <corpus>-retain-corpus.jsonl (JSON Lines with a string "
                          f"'text'){note}")
    return read_jsonl(file, "one object per line with a string 'text'")


def _hub_rows(name: str) -> list[Any]:
    import datasets

    try:
        ds = datasets.load_dataset(HUB_REPO, name, split="train")
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as e:  # offline, unreachable, renamed
        raise ConfigError(f"cannot read {HUB_REPO} configuration {name!r}: {e}; valid: network access to the hub, "
                          "or data.path: a directory holding its JSON Lines copy") from e
    if "text" not in ds.column_names:
        raise ConfigError(f"{HUB_REPO} configuration {name!r} has no 'text' column (it has {ds.column_names})")
    return ds.select_columns(["text"]).to_list()


def _texts(rows: list[Any], where: str, max_documents: int | None) -> tuple[str, ...]:
    if not rows:
        raise ConfigError(f"{where} has no rows; a WMDP corpus needs at least one document")
    rows = rows[:max_documents] if max_documents is not None else rows
    out = []
    for i, row in enumerate(rows):
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            got = f"row {i} has no string 'text' ({sorted(row) if isinstance(row, dict) else type(row).__name__})"
            raise ConfigError(f"{where} {got}; valid: JSON objects with a string 'text'")
        out.append(text)
    return tuple(out)


def load_corpora(corpus: str, path: str | None, *, max_documents: int | None = None) -> WmdpCorpora:
    """Load and validate the forget and retain corpora of ``corpus``, before any model is loaded.

    Args:
        corpus: ``cyber`` or ``bio``.
        path: None for the hub (``cais/wmdp-corpora``; the biology forget corpus is not there); else a
            directory holding ``<corpus>-forget-corpus.jsonl`` and ``<corpus>-retain-corpus.jsonl``.
        max_documents: keep the first N documents of each corpus (small runs); None: all.

    Raises:
        ConfigError: an unknown corpus, the biology forget corpus without a local copy (saying how to get
            one), a missing directory, file, or ``text`` column, a line that is not JSON, an empty corpus.
    """
    if corpus not in CORPORA:
        raise unknown_name("WMDP corpus", corpus, CORPORA, "data.corpus")
    directory = None
    if path is not None:
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise ConfigError(f"WMDP data path {str(path)!r} is not a directory; valid: a directory holding "
                              f"{corpus_name(corpus, 'forget')}.jsonl and {corpus_name(corpus, 'retain')}.jsonl, or "
                              f"data.path: null for the hub ({HUB_REPO}; cyber and the biology retain corpus only)")
    elif corpus_name(corpus, "forget") not in PUBLIC:
        raise ConfigError(f"data.corpus={corpus!r} with data.path: null: {BIO_FORGET_NOTE}")
    texts = {}
    for part in ("forget", "retain"):
        name = corpus_name(corpus, part)
        rows = _local_rows(directory, name) if directory is not None else _hub_rows(name)
        where = str(directory / f"{name}.jsonl") if directory is not None else f"{HUB_REPO} {name!r}"
        texts[part] = _texts(rows, where, max_documents)
    return WmdpCorpora(corpus, texts["forget"], texts["retain"])
