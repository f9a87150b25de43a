"""The layout of a sweep directory, and where a sweep runs and writes (``SweepSettings``).

Everything a resume, a report or an export needs lies in the directory:

    DIR/sweep.json            settings: space, storage URIs, sweep id (written once, at launch)
    DIR/sweep.json.bak        its copy, which restores it
    DIR/space.yaml            the search space as launched (overrides applied)
    DIR/optuna.db             the Optuna study (inspect with optuna-dashboard sqlite:///DIR/optuna.db)
    DIR/mlflow.db, mlartifacts/   the default MLflow store (``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db``)
    DIR/ray/                  Ray Tune experiment state and each trial's Ray Train checkpoints
    DIR/constraints.json      the space's constraints resolved to absolute bounds (after prepare)
    DIR/trials/<id>/          trial.json (driver's record), plan.json (the trial's resolved config: sweeps.plan),
                              record.json (the trial's values of record: sweeps.record)
                              and its run: config.json, results.json, model/ (with budget.replicates > 1:
                              one run per replicate in replicates/<r>/)
    DIR/confirm/              the confirmation stage (``budget.confirm``, sweeps.confirm): candidates.json (the
                              points raced), <trial id>/<c>/ the run of that point on confirmation seed c,
                              confirmation.json (the race's outcome: the confirmed best, its probability of
                              being best, the runner-up and their paired difference)
    DIR/best_config.yaml      the chosen trial's run config, ready to run

Files are replaced atomically; a damaged one is reported by name, never silently skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn.errors import ConfigError

SWEEP_FILE = "sweep.json"
SWEEP_BACKUP = "sweep.json.bak"
SPACE_FILE = "space.yaml"
TUNE_NAME = "tune"
TRIALS_DIR = "trials"
TRIAL_FILE = "trial.json"
CONFIG_FILE = "config.json"
RECORD_FILE = "record.json"
PLAN_FILE = "plan.json"
REPLICATES_DIR = "replicates"
CONSTRAINTS_FILE = "constraints.json"
BEST_FILE = "best_config.yaml"
CONFIRM_DIR = "confirm"
CANDIDATES_FILE = "candidates.json"
CONFIRMATION_FILE = "confirmation.json"
MLFLOW_DB = "mlflow.db"
OPTUNA_DB = "optuna.db"


@dataclass(frozen=True)
class SweepSettings:
    """Where a sweep runs and writes. ``None`` means: inside the sweep directory / a local cluster."""

    out_dir: str
    address: str | None = None
    storage_path: str | None = None  # Ray storage; shared storage (NFS, S3) on a multi-node cluster
    mlflow_uri: str | None = None
    optuna_storage: str | None = None  # an Optuna RDB URL; default sqlite:///DIR/optuna.db
    progress: bool = True
    verbose: bool = False  # Ray's notices and the libraries' progress bars (``--verbose``)
    # a comparison's method sweep (``sweeps.compare``): the comparison's MLflow experiment and parent run,
    # under which this sweep's parent run nests (None: an experiment of its own, a top-level parent)
    experiment: str | None = None
    parent_run_id: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.out_dir).expanduser().resolve()

    @property
    def ray_storage(self) -> str:
        return self.storage_path or str(self.root / "ray")

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or default_tracking_uri(self.root)

    @property
    def study_storage(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.root / OPTUNA_DB}"


def default_tracking_uri(sweep_dir: Path) -> str:
    """The sweep's own sqlite store, ``sqlite:///<absolute sweep_dir>/mlflow.db``.

    The path is absolute: a relative one would give each process (and each cwd) its own database.
    """
    return f"sqlite:///{(Path(sweep_dir).resolve() / MLFLOW_DB).as_posix()}"


def trial_dir(sweep_dir: Path, trial_id: str) -> Path:
    return sweep_dir / TRIALS_DIR / trial_id


def replicate_dir(trial: Path, index: int, replicates: int) -> Path:
    """Where replicate ``index`` of a trial runs: the trial's own directory when it has one replicate."""
    return trial if replicates == 1 else trial / REPLICATES_DIR / str(index)


def confirm_run_dir(sweep_dir: Path, trial_id: str, index: int) -> Path:
    """Where the confirmation stage runs trial ``trial_id``'s point on confirmation seed ``index``."""
    return sweep_dir / CONFIRM_DIR / trial_id / str(index)


def storage_child(storage: str, name: str) -> str:
    """``storage/name`` for a path or a URI (``s3://bucket/x``, whose '//' ``Path`` would fold)."""
    return f"{storage.rstrip('/')}/{name}" if "://" in storage else str(Path(storage) / name)


def write_json_atomic(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(path)


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_json(path: Path, what: str, advice: str | None = None) -> dict[str, Any]:
    """Read a JSON object; a truncated, invalid or non-object file raises ConfigError naming it, ``what``
    and ``advice`` (what the user can do about it)."""
    try:
        doc = json.loads(path.read_text())
        problem = None if isinstance(doc, dict) else f"it holds a JSON {type(doc).__name__}, not an object"
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        problem = str(e)
    if problem is not None:
        raise ConfigError(f"{path} ({what}) is damaged: {problem}"
                          + (f"; {advice}" if advice else " (it is written atomically: an outside crash or edit "
                             "damaged it)"))
    return doc


_META_KEYS = {"sweep_id": str, "name": str, "study_name": str, "settings": dict, "tracking_uri": str,
              "optuna_storage": str, "ray_storage": str}


def _meta_problem(doc: Any) -> str | None:
    """What is wrong with the shape of a sweep.json document (None: nothing)."""
    if not isinstance(doc, dict):
        return f"it holds a JSON {type(doc).__name__}, not an object"
    for key, tp in _META_KEYS.items():
        if not isinstance(doc.get(key), tp):
            return f"{key!r} is {'missing' if key not in doc else 'not a ' + tp.__name__}"
    fields = {f.name for f in dataclasses.fields(SweepSettings)}
    if "out_dir" not in doc["settings"] or set(doc["settings"]) - fields:
        return f"'settings' must hold out_dir and only {', '.join(sorted(fields))}"
    return None


def load_sweep_meta(root: Path) -> dict[str, Any]:
    """``DIR/sweep.json``, checked for shape.

    Raises:
        ConfigError: not found (the directory holds no sweep), or damaged (with the copy that restores it).
    """
    path = root / SWEEP_FILE
    if not path.is_file():
        raise ConfigError(f"{root} holds no sweep ({SWEEP_FILE} not found); valid: a directory written by "
                          "`unlearn-sweep launch --out DIR`")
    try:
        doc = json.loads(path.read_text())
        problem = _meta_problem(doc)
    except (ValueError, UnicodeDecodeError) as e:
        problem = f"not JSON ({e})"
    if problem is None:
        return doc
    backup = root / SWEEP_BACKUP
    try:
        good_backup = _meta_problem(json.loads(backup.read_text())) is None
    except (OSError, ValueError, UnicodeDecodeError):
        good_backup = False
    fix = (f"it is written once, at launch, with a copy: restore it with `cp {backup} {path}`" if good_backup else
           f"there is no intact copy ({backup}); the trials' records stay readable in {root / TRIALS_DIR} (each "
           "trials/ID/config.json reruns with `unlearn-sweep run`), and the settings are the params of the "
           "sweep's MLflow parent run")
    raise ConfigError(f"{path} (the sweep's settings) is damaged: {problem}; {fix}")
