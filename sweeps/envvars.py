"""Settings that libraries (Ray Tune, MLflow) read from environment variables, set for one block only."""

from __future__ import annotations

import contextlib
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
