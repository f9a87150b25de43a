"""Key-token annotations of forget answers (the SatImp paper's importance study) and the key-token rule.

An annotation gives each forget row a ``key_text``: the answer's critical words concatenated without
spaces (``"fatherfloristmothergamedeveloper"``). The SatImp authors' rule (tmlr-group/SatImp,
``dataloader/data_module_imp.py``) makes an answer token a key token when its token string, with its
non-ASCII characters removed (a tokenizer's word-boundary marker such as ``Ġ`` or ``▁``, or the bytes
of an accented letter), is non-empty, at least 2 characters long or numeric, and a substring of
``key_text``. The annotations of TOFU's forget01/05/10 ship with the package (``annotations/``); a
user's own file has the same format: JSON lines of ``{"question": ..., "key_text": ...}``, one per
forget row, in the forget split's order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from unlearn.errors import ConfigError, unknown_name

ANNOTATED_TOFU_SPLITS = ("forget01", "forget05", "forget10")
_FORMAT = 'JSON lines of {"question": str, "key_text": str}, one per forget row, in the split\'s order'


def packaged_annotation(split: str) -> Path:
    """The shipped annotation file of TOFU forget split ``split`` (``forget01``, ``forget05``, ``forget10``).

    Raises:
        UnknownNameError: for a split without shipped annotations.
    """
    if split not in ANNOTATED_TOFU_SPLITS:
        raise unknown_name("annotated TOFU split", split, ANNOTATED_TOFU_SPLITS)
    return Path(str(resources.files("unlearn.data") / "annotations" / f"importance_{split}.jsonl"))


def is_key_token(token: str, key_text: str) -> bool:
    """The authors' key-token rule on one token string (as ``tokenizer.convert_ids_to_tokens`` gives it)."""
    text = "".join(c for c in token if c.isascii())
    return text != "" and (len(text) >= 2 or text.isnumeric()) and text in key_text


def key_token_mask(tokens: Sequence[str], key_text: str) -> list[bool]:
    """``is_key_token`` of each token string of one answer."""
    return [is_key_token(t, key_text) for t in tokens]


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise ConfigError(f"key-token annotation file {str(path)!r} does not exist; expected {_FORMAT}")
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot be read ({e}); expected {_FORMAT}") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: line {n} is not JSON ({e.msg}); expected {_FORMAT}") from None
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "key_text")):
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ConfigError(f"{path}: line {n} needs string fields 'question' and 'key_text', got {found}; "
                              f"expected {_FORMAT}")
        rows.append(row)
    return rows


def load_key_texts(path: str | Path, forget_rows: Sequence[dict], split: str = "forget") -> tuple[str, ...]:
    """Read an annotation file and check it row by row against the forget split it annotates.

    Args:
        path: JSON lines of ``{"question", "key_text"}``, one per row of ``forget_rows``, in order.
        forget_rows: the forget split's rows (each with ``question``).
        split: the split's name, for messages.

    Returns:
        One ``key_text`` per forget row.

    Raises:
        ConfigError: naming the file and the mismatch: missing or malformed file, a row count that is not
            the split's, or a question that differs from the split's row at the same position.
    """
    path = Path(path).expanduser()
    rows = _read_rows(path)
    if len(rows) != len(forget_rows):
        raise ConfigError(f"{path}: {len(rows)} annotation rows but {split} has {len(forget_rows)} rows; "
                          f"expected one row per {split} row, in its order")
    for i, (ann, row) in enumerate(zip(rows, forget_rows)):
        if ann["question"] != row["question"]:
            raise ConfigError(f"{path}: row {i} annotates question {ann['question']!r} but {split} row {i} is "
                              f"{row['question']!r}; the rows must follow {split}'s order")
    return tuple(r["key_text"] for r in rows)
