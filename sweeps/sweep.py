"""The product's main job: a sweep directory's life. ``launch_sweep`` checks everything, sets the directory
up and runs the sweep (``sweeps.fit``); a launch that fails or is stopped before its first trial is rolled
back; ``resume_sweep`` continues one. Signals: ``sweeps.signals``; the directory's layout: ``sweeps.layout``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import ray.tune

from sweeps.cluster import check_address, check_placeable, ensure_ray
from sweeps.fit import NoTrialFinished, SweepResult, run_sweep
from sweeps.layout import (
    SPACE_FILE,
    SWEEP_BACKUP,
    SWEEP_FILE,
    TRIALS_DIR,
    TUNE_NAME,
    SweepSettings,
    load_sweep_meta,
    storage_child,
    write_json_atomic,
)
from sweeps.lock import LOCK_FILE, check_unlocked, sweep_lock
from sweeps.preflight import check_model_dirs, check_optuna_storage, check_storage_path, check_writable_dir
from sweeps.signals import SweepInterrupted, interruptible
from sweeps.space import SearchSpace, load_space, load_sweep_space
from sweeps.tracking import check_tracking_uri
from unlearn.config import to_dict
from unlearn.errors import ConfigError
from unlearn.train.prepare import check_prepare_inputs

__all__ = ["NoTrialFinished", "SweepInterrupted", "SweepResult", "SweepSettings", "launch_sweep", "load_sweep_meta",
           "resume_sweep"]


def _check_settings(settings: SweepSettings) -> None:
    """Every path, URI and address of a sweep, before it writes anything or starts Ray (reads only)."""
    check_writable_dir(settings.root, "--out")
    check_storage_path(settings.storage_path)
    check_optuna_storage(settings.optuna_storage)
    check_tracking_uri(settings.tracking_uri)
    check_address(settings.address)


def _check_new_sweep(settings: SweepSettings) -> None:
    """``--out`` (and ``--storage-path``) must not hold another sweep's state."""
    root = settings.root
    if (root / SWEEP_FILE).exists():
        raise ConfigError(f"{root} already holds a sweep; continue it with `unlearn-sweep resume {root}` or choose "
                          "another --out")
    if root.exists() and any(p for p in root.iterdir() if p.name not in (".gitkeep", LOCK_FILE)):
        raise ConfigError(f"--out {root} is not empty; valid: a new or empty directory")
    tune_dir = storage_child(settings.ray_storage, TUNE_NAME)
    if settings.storage_path and "://" not in tune_dir and Path(tune_dir).exists():
        raise ConfigError(f"--storage-path {settings.storage_path} already holds a Ray Tune experiment ({tune_dir}, "
                          "another sweep's: a resume would restore the wrong one); valid: a storage path of its "
                          f"own for each sweep, e.g. {storage_child(settings.storage_path, root.name)}")


def launch_sweep(space: SearchSpace | str | Path, overrides: Sequence[str] = (),
                 settings: SweepSettings | None = None) -> SweepResult:
    """Validate everything, then run a new sweep into ``settings.out_dir``.

    ``space``: a loaded space, or a file / shipped space's name that ``load_space`` reads with ``overrides``.

    Everything is checked before anything is written; the directory is then locked for the driver's
    life (``sweeps.lock``). A launch that fails, or is interrupted, before its first trial started removes
    what it wrote, so a (corrected) launch into the same ``--out`` is accepted.

    Raises:
        NoTrialFinished: the sweep ran, but none of its trials finished.
        SweepInterrupted: Ctrl-C or SIGTERM, at any point (``undone`` before the first trial).
    """
    if settings is None:
        raise TypeError("launch_sweep needs settings (SweepSettings: at least out_dir)")
    if isinstance(space, SearchSpace) and overrides:
        raise ConfigError(f"overrides {list(overrides)} given with a loaded space; valid: apply them when loading "
                          "it (load_space(path, overrides)), or pass the space's file")
    root = settings.root
    with interruptible(root):
        try:
            return _launch(space, overrides, settings)
        except SweepInterrupted as e:
            if _any_trial_started(root):
                raise
            raise SweepInterrupted(root, e.signum, undone=True) from None


def _launch(space: SearchSpace | str | Path, overrides: Sequence[str], settings: SweepSettings) -> SweepResult:
    if not isinstance(space, SearchSpace):
        space = load_space(space, overrides)
    root = settings.root
    _check_settings(settings)
    check_unlocked(root, action="launch")  # a running sweep there is named as such, not as "already holds"
    _check_new_sweep(settings)
    cfg = space.base_config
    check_model_dirs(cfg)
    check_prepare_inputs(cfg, cfg.benchmark.load(cfg.data))
    root.mkdir(parents=True, exist_ok=True)
    with sweep_lock(root, action="launch"):
        _check_new_sweep(settings)  # again, as the owner: another launch may have won the race
        sweep_id = uuid.uuid4().hex[:12]
        meta = {"sweep_id": sweep_id, "name": space.name, "study_name": f"{space.name}-{sweep_id}",
                "created": time.time(), "settings": to_dict(settings), "source": space.source,
                "overrides": list(overrides), "tracking_uri": settings.tracking_uri,
                "optuna_storage": settings.study_storage, "ray_storage": settings.ray_storage}
        try:
            resources = ensure_ray(settings.address, verbose=settings.verbose)
            check_placeable(cfg.scaling, resources)
            (root / SPACE_FILE).write_text(space.to_yaml())
            write_json_atomic(root / SWEEP_FILE, meta)
            write_json_atomic(root / SWEEP_BACKUP, meta)  # sweep.json is never rewritten: this copy restores it
            result = run_sweep(space, settings, meta, resources, resume=False)
        except Exception:  # SweepInterrupted included
            if not _any_trial_started(root):
                _undo_launch(settings, meta)
            raise
    return _require_a_finished_trial(result)


def _any_trial_started(root: Path) -> bool:
    return (root / TRIALS_DIR).is_dir() and any((root / TRIALS_DIR).iterdir())


def _undo_launch(settings: SweepSettings, meta: dict[str, Any]) -> None:
    """Remove what a launch that failed before its first trial wrote: nothing blocks a corrected relaunch.

    ``--out`` held nothing before (checked), so all but the lock file goes; an external study is deleted,
    an external MLflow parent run stays, FAILED (``_run``), a new launch makes a new one.
    """
    root = settings.root
    for p in root.iterdir():
        if p.name in (LOCK_FILE, ".gitkeep"):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if settings.optuna_storage:
        try:
            optuna.delete_study(study_name=meta["study_name"], storage=settings.optuna_storage)
        except Exception:  # noqa: BLE001 -- never created, or the database is what failed
            pass
    tune_dir = storage_child(settings.ray_storage, TUNE_NAME)
    if settings.storage_path and "://" not in tune_dir:
        shutil.rmtree(tune_dir, ignore_errors=True)  # did not exist before the launch (checked)


def _require_a_finished_trial(result: SweepResult) -> SweepResult:
    # DAMAGED: the trial finished, a file of it was damaged since (``report`` names it); not this error
    if not any(t.status in ("FINISHED", "DAMAGED") for t in result.trials):
        raise NoTrialFinished(result)
    return result


def resume_sweep(out_dir: str | Path, *, address: str | None = None, progress: bool = True,
                 verbose: bool = False) -> SweepResult:
    """Continue an interrupted sweep: finished trials are kept, unfinished ones run again from checkpoints.

    Raises:
        SweepLockedError: another driver owns the directory.
        ConfigError: its settings are damaged, or its study is missing (checked before anything runs).
        NoTrialFinished: the sweep ended, but none of its trials finished.
        SweepInterrupted: Ctrl-C or SIGTERM, at any point.
    """
    root = Path(out_dir).expanduser().resolve()
    with interruptible(root):
        return _resume(root, address, progress, verbose)


def _resume(root: Path, address: str | None, progress: bool, verbose: bool) -> SweepResult:
    check_unlocked(root, action="resume")  # a launch still starting has written no sweep.json yet
    meta = load_sweep_meta(root)
    settings = SweepSettings(**{**meta["settings"], "address": address or meta["settings"].get("address"),
                                "progress": progress, "verbose": verbose})
    space = load_sweep_space(root)
    check_storage_path(settings.storage_path)
    check_tracking_uri(settings.tracking_uri)
    check_address(settings.address)
    _check_study(root, meta, settings)
    with sweep_lock(root, action="resume"):  # the checks above only read: a failed one leaves no lock file
        resources = ensure_ray(settings.address, verbose=settings.verbose)
        result = run_sweep(space, settings, meta, resources, resume=True)
    return _require_a_finished_trial(result)


def _check_study(root: Path, meta: dict[str, Any], settings: SweepSettings) -> None:
    """A resume needs the sweep's Optuna study once Tune has started it (trials, a saved experiment).

    Without it the restored searcher refers to study trials that do not exist, and the resume crashes
    with its trials left RUNNING. Refused up front, with what can be done.
    """
    url, name = meta["optuna_storage"], meta["study_name"]
    started = _any_trial_started(root) or ray.tune.Tuner.can_restore(storage_child(settings.ray_storage, TUNE_NAME))
    if not started:
        return  # stopped before its first trial: the resume creates the study
    db = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    if db is not None and not db.is_file():
        missing = f"{db} is missing"
    else:
        try:
            if name in optuna.get_all_study_names(url):
                return
        except Exception as e:  # noqa: BLE001 -- a damaged file, an unreachable server: say which
            raise ConfigError(f"cannot resume {root}: its Optuna study {name!r} cannot be read from {url} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); repair or restore that "
                              "database, then resume again") from None
        missing = f"{url} holds no study {name!r}"
    raise ConfigError(
        f"cannot resume {root}: its Optuna study is gone ({missing}): the searcher's history and the trials' "
        f"study records live there, and the search cannot go on without them. Restore it from a backup and "
        f"resume again; or keep what ran (`unlearn-sweep report {root}`, `unlearn-sweep export-best {root} --out "
        f"best.yaml`) and search on in a new sweep: `unlearn-sweep launch {root / SPACE_FILE} --out NEW_DIR`")


