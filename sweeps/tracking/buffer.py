"""Telling an unreachable store from a bad request, and the durable buffer of operations to replay."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import requests
from mlflow.exceptions import MlflowException, RestException


# --------------------------------------------------------------------------------------------------
# Failure classification and the local buffer
# --------------------------------------------------------------------------------------------------
def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means "the store is down or busy, try again later" (not a bad request)."""
    import sqlalchemy.exc
    import urllib3.exceptions

    transient = (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout,
                 urllib3.exceptions.HTTPError)
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, transient):
            return True
        if isinstance(e, RestException) and e.get_http_status_code() >= 500:
            return True
        if isinstance(e, sqlalchemy.exc.OperationalError) and "locked" in str(e):
            return True
        e = e.__cause__ or e.__context__
    # http_request re-raises connection failures as a bare MlflowException with this wording
    return isinstance(exc, MlflowException) and str(exc).startswith("API request to") and (
        "failed with exception" in str(exc) or "timeout" in str(exc)
    )


class OpBuffer:
    """Buffered store operations, one JSON object a line: ``{"op", "kwargs", "experiment", "sweep_id", "ts"}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (the driver may die right after)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        """All records, oldest first (a torn last line, from a crash mid-write, is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def replace(self, records: list[dict[str, Any]]) -> None:
        """Atomically keep only ``records`` (removing the file when there are none)."""
        if not records:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self.read())


