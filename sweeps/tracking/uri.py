"""Checking an MLflow tracking URI before a sweep writes anything (sqlite file or http server)."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from sweeps.tracking.names import _VALID_URIS
from unlearn.errors import ConfigError


# --------------------------------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------------------------------
MLFLOW_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def runs_page_url(ui: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs (table and charts).

    ``workflowType=machine_learning``: MLflow 3.17's UI shows an experiment as its workflow switch says,
    GenAI (an overview of traces) unless the browser chose otherwise; the URL's value wins over it.
    """
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before a sweep starts, on a tracking URI the sweep could not write to.

    http(s): the server must answer ``GET <uri>/health`` within 3 s. sqlite: the path must be absolute
    and its directory must exist or be creatable. Any other scheme is rejected.

    Raises:
        ConfigError: naming the URI and what would be valid.
    """
    if uri.startswith(("http://", "https://")):
        _check_http(uri)
    elif uri.startswith("sqlite:"):
        _check_sqlite(uri)
    else:
        raise ConfigError(f"tracking URI {uri!r} is not supported; valid: {_VALID_URIS}")


def _check_http(uri: str) -> None:
    url = f"{uri.rstrip('/')}/health"
    try:
        response = requests.get(url, timeout=3)
    except requests.RequestException as e:
        raise ConfigError(
            f"MLflow tracking server {uri!r} is not reachable ({type(e).__name__}); start it "
            f"(mlflow server --backend-store-uri sqlite:////abs/mlflow.db --host 127.0.0.1 --port 5000) "
            f"or use another URI; valid: {_VALID_URIS}"
        ) from None
    if response.status_code != 200:
        raise ConfigError(
            f"{url} answered HTTP {response.status_code}: {uri!r} is not a healthy MLflow tracking "
            f"server; valid: {_VALID_URIS}"
        )


def _sqlite_path(uri: str) -> Path:
    if not uri.startswith("sqlite:///") or len(uri) <= len("sqlite:///"):
        raise ConfigError(f"tracking URI {uri!r} has no database file; valid: {_VALID_URIS}")
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path.startswith("/"):
        raise ConfigError(
            f"tracking URI {uri!r} is a relative sqlite path (each process would get its own database); "
            f"use an absolute one: sqlite:///{Path(path).resolve().as_posix()}"
        )
    return Path(path)


def _check_sqlite(uri: str) -> None:
    from sweeps.preflight import check_sqlite_file

    if _sqlite_path(uri).is_dir():
        raise ConfigError(f"tracking URI {uri!r} names a directory, not a database file; valid: {_VALID_URIS}")
    check_sqlite_file(_sqlite_path(uri), f"tracking URI {uri!r}")
    parent = _sqlite_path(uri).parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"tracking URI {uri!r}: directory {parent} does not exist and cannot be created "
            f"({existing} is not a writable directory); valid: {_VALID_URIS}"
        )


