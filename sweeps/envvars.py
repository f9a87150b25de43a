"""Settings of libraries (Ray Tune, MLflow: environment variables; Ray's loggers' levels), set for one block only."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping

# tqdm's own switch, read when tqdm is imported: no progress bars of lm-evaluation-harness, datasets or
# transformers in the console of a command run without ``--verbose`` (nor in its Ray workers)
QUIET_ENV = {"TQDM_DISABLE": "1"}


@contextlib.contextmanager
def scoped_env(values: Mapping[str, str], *, keep_set: bool = False) -> Iterator[None]:
    """``values`` in ``os.environ`` inside the block; each variable is restored (or removed) after it.

    ``keep_set``: a variable already set (by the user) keeps its value; ``values`` are defaults then.
    """
    previous = {key: os.environ.get(key) for key in values}
    changed = {key: value for key, value in values.items() if not (keep_set and previous[key] is not None)}
    os.environ.update(changed)
    try:
        yield
    finally:
        for key in changed:
            if previous[key] is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = previous[key]


@contextlib.contextmanager
def scoped_logger_level(name: str, level: int, *, when: bool = True) -> Iterator[None]:
    """Logger ``name`` at ``level`` inside the block (only ``when``), its own level restored after it."""
    logger = logging.getLogger(name)
    previous = logger.level
    if when:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
