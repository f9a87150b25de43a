"""Checks before write: every path, URI and address a command was given, checked before it writes anything.

Each check only reads (the file system, a TCP connect with a short timeout) and raises ``ConfigError``
naming the flag, the value and what would be valid. ``launch`` runs them all before it creates
``sweep.json``, ``optuna.db``, the MLflow parent run or a Ray cluster; ``resume``, ``run`` and
``export-best`` run the ones that apply.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from unlearn.errors import ConfigError

PROBE_TIMEOUT_S = 3.0
# Ray Tune's storage goes through pyarrow's file systems (fsspec for the rest)
STORAGE_SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss", "az", "file")
_VALID_OPTUNA = ("sqlite:////absolute/path/optuna.db, or a reachable database server such as "
                 "postgresql://user:password@host:5432/db or mysql+pymysql://user:password@host:3306/db")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433, "oracle": 1521}


def probe_tcp(host: str, port: int, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when something accepts a TCP connection at ``host:port`` within ``timeout_s``, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.timeout:
        return f"no answer within {timeout_s:g} s"
    except OSError as e:
        return e.strerror or type(e).__name__


def _first_existing(path: Path) -> Path:
    return next(p for p in (path, *path.parents) if p.exists())


def check_writable_dir(value: str | Path, flag: str, valid: str = "a new or empty directory") -> Path:
    """A directory that exists or can be created, and can be written; returns it resolved.

    Raises:
        ConfigError: it is an existing file, it lies under a file, or its nearest existing parent is not
            writable (a read-only file system, missing permissions).
    """
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is an existing file, not a directory; valid: {valid}")
    return _creatable(path, path, flag, valid)


def check_writable_file(value: str | Path, flag: str, valid: str) -> Path:
    """A file path that can be created or replaced (not a directory, not under a file); returns it resolved."""
    path = Path(value).expanduser().resolve()
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is an existing directory; valid: {valid}")
    return _creatable(path, path.parent, flag, valid)


def _creatable(path: Path, start: Path, flag: str, valid: str) -> Path:
    """``path`` if it can be created from ``start``'s nearest existing parent (a writable directory)."""
    existing = _first_existing(start)
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path} cannot be created: {existing} is a file, not a directory; valid: {valid}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} cannot be written: {existing} is not writable (permissions or a "
                          f"read-only file system); valid: {valid} on writable storage")
    return path


def check_storage_path(value: str | None, flag: str = "--storage-path") -> None:
    """Ray storage: a writable local (or shared) directory, or a URI of a file system Ray can write to."""
    if value is None:
        return
    valid = ("a writable directory every node sees (NFS), or a URI: "
             + ", ".join(f"{s}://..." for s in STORAGE_SCHEMES if s != "file"))
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        if scheme not in STORAGE_SCHEMES:
            raise ConfigError(f"{flag} {value!r}: unknown storage scheme {scheme!r}; valid: {valid}")
        if scheme != "file":
            return  # remote storage: checked by Ray when the first trial writes to it
        value = value.split("://", 1)[1]
    check_writable_dir(value, flag, valid)


def check_optuna_storage(url: str | None) -> None:
    """An Optuna RDB URL: parseable, its driver installed, its sqlite file creatable / its server reachable."""
    if url is None:
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:  # (a subclass of ArgumentError)
        raise ConfigError(f"--optuna-storage {url!r}: unknown database kind {url.split(':', 1)[0]!r}; "
                          f"valid: {_VALID_OPTUNA}") from None
    except ArgumentError:
        raise ConfigError(f"--optuna-storage {url!r} is not a database URL; valid: {_VALID_OPTUNA}") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise ConfigError(f"--optuna-storage {url!r} needs the database driver {e.name or e} (not installed); "
                          f"install it, or use sqlite:////absolute/path/optuna.db") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if not db or db == ":memory:":
            raise ConfigError(f"--optuna-storage {url!r} keeps no file (a resume needs the study); "
                              f"valid: {_VALID_OPTUNA}")
        if not db.startswith("/"):
            raise ConfigError(f"--optuna-storage {url!r} is a relative sqlite path (each working directory "
                              f"would get its own study); use an absolute one: sqlite:///{Path(db).resolve()}")
        check_writable_file(db, "--optuna-storage", _VALID_OPTUNA)
        check_sqlite_file(Path(db), "--optuna-storage")
        return
    host, port = parsed.host or "localhost", parsed.port or _DB_PORTS.get(backend)
    if port is not None and (why := probe_tcp(host, port)) is not None:
        raise ConfigError(f"--optuna-storage {parsed.render_as_string(hide_password=True)!r}: the database "
                          f"server {host}:{port} is not reachable ({why}); start it, or use "
                          "sqlite:////absolute/path/optuna.db")


def check_sqlite_file(path: Path, flag: str) -> None:
    """An existing (non-empty) file must be an SQLite database: another file would be overwritten or fail."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise ConfigError(f"{flag}: {path} exists and is not an SQLite database; valid: a new file, or a "
                          "database this tool wrote")


def check_model_dirs(cfg) -> None:
    """A local model directory (``model.name``, ``prepare.retain_model``) must hold a saved model and its
    tokenizer.

    ``check_model_source`` (unlearn.models) checks that the path exists; without ``config.json`` or a
    tokenizer file the loader fails later and blames sentencepiece / tiktoken.
    """
    for key, name in (("model.name", cfg.model.name), ("prepare.retain_model", cfg.prepare.retain_model)):
        if not name:
            continue
        path = Path(str(name)).expanduser()
        if not path.is_dir():
            continue
        missing = [] if (path / "config.json").is_file() else ["config.json"]
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            missing.append(f"a tokenizer file ({', '.join(_TOKENIZER_FILES)})")
        if missing:
            raise ConfigError(f"{key}={name!r} is a directory without {' and '.join(missing)}, not a saved model; "
                              "valid: a directory written by save_pretrained for the model and its tokenizer, a "
                              "preset, or a hub id like 'org/model'")
