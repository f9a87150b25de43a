"""Exporting a sweep's chosen trial: its run config as ready-to-run YAML, its model, a registry version."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweeps.layout import (
    BEST_FILE,
    write_text_atomic,
)
from sweeps.model_registry import register_model
from sweeps.report.select import Choice, choice_notes, choose, pick_best
from sweeps.report.trials import TrialRow, collect_trials, load_bounds
from sweeps.space import SearchSpace
from unlearn.errors import ConfigError
from unlearn.models.lora import ADAPTER_DIR
from unlearn.train.run import MODEL_DIR


def write_best_config(root: Path, best: TrialRow, notes: Sequence[str] = ()) -> Path:
    path = root / BEST_FILE
    write_text_atomic(path, config_yaml(best, "best trial", notes))
    return path


def best_config_notes(space: SearchSpace, trials: Sequence[TrialRow], bounds, choice: Choice) -> list[str]:
    """The lines ``best_config.yaml`` is headed by: how sure the choice is (``select.choice_notes``)."""
    return choice_notes(space, trials, bounds, choice)


def config_yaml(trial: TrialRow, what: str, notes: Sequence[str] = ()) -> str:
    """The trial's run config (its replicate 0) as ready-to-run YAML, headed by its values of record, its
    replicates' seeds and ``notes`` (how sure the choice is)."""
    head = [f"# {what} {trial.trial_id} of this sweep; reproduce with: unlearn-sweep run THIS_FILE --out DIR"]
    head += [f"# {line}" for line in notes]
    record = trial.record
    if record is not None and len(record.replicates) > 1:
        seeds = list(trial.seeds)
        head.append(f"# its value of record is the {record.aggregate} over {len(seeds)} replicates, seeds {seeds}; "
                    f"this file runs replicate 0 (seed {seeds[0]}); set seed: to run another")
    return "\n".join(head) + "\n" + yaml.safe_dump(trial.config, sort_keys=False)


def _refuse_overwrite(path: Path, force: bool, what: str) -> None:
    if force or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    raise ConfigError(f"{what} {path} already exists and is not empty; pass --force to overwrite it")


def _check_export_paths(out_yaml: Path, model_dir: Path | None, force: bool) -> None:
    """Both destinations usable, checked before either is written (no half export)."""
    from sweeps.preflight import check_writable_dir, check_writable_file

    check_writable_file(out_yaml, "--out", "a YAML file path (new, or an existing file with --force)")
    _refuse_overwrite(out_yaml, force, "--out")
    if model_dir is None:
        return
    valid = "a new or empty directory, or with --force an existing directory to replace"
    check_writable_dir(model_dir, "--model", valid)
    _refuse_overwrite(model_dir, force, "--model")
    if model_dir.resolve() == out_yaml.resolve() or out_yaml.resolve().is_relative_to(model_dir.resolve()):
        raise ConfigError(f"--out {out_yaml} lies in --model {model_dir}, which the export replaces; valid: a YAML "
                          "path outside the model directory")


def _copy_dir_atomic(src: Path, dest: Path, extra: dict[str, Path] | None = None) -> None:
    """Copy ``src`` (and each ``extra`` directory, as ``dest/NAME``) to a temporary sibling of ``dest``, then
    rename it into place: a kill mid-copy leaves the temporary directory (named ``.NAME.partial-PID``), never
    a truncated model under ``dest``."""
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.copytree(src, tmp)
    for name, path in (extra or {}).items():
        shutil.copytree(path, tmp / name)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        dest.rename(old)  # --force: the old one goes only once the new one is complete
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class ExportedTrial:
    """What ``export_best`` exported: the trial, and the model version it registered (``models:/NAME/VERSION``), if any."""

    trial: TrialRow
    registered: str | None = None


def export_best(root: Path, space: SearchSpace, out_yaml: Path, *, model_dir: Path | None = None,
                register: str | None = None, trial_id: str | None = None, force: bool = False) -> ExportedTrial:
    """Write the best (or the named) trial's resolved run config; optionally copy / register its model.

    Both destinations are checked before either is written; the model is copied to a temporary
    directory and renamed into place, the YAML replaced atomically.
    """
    _check_export_paths(out_yaml, model_dir, force)
    trials = collect_trials(root)
    if trial_id is not None:
        chosen = next((t for t in trials if t.trial_id == trial_id), None)
        if chosen is None or chosen.config is None:
            raise ConfigError(f"trial {trial_id!r} has no finished run in {root}; finished trials: "
                              f"{', '.join(t.trial_id for t in trials if t.config) or 'none'}")
        notes: list[str] = []
    else:
        bounds = load_bounds(root)
        choice = choose(root, space, trials, bounds)
        chosen = choice.best
        if chosen is None:
            raise ConfigError(f"{root}: no finished{' feasible' if bounds else ''} trial has all objective "
                              f"metrics ({', '.join(space.metric_names)})")
        notes = best_config_notes(space, trials, bounds, choice)
    src = chosen.run_dir / MODEL_DIR
    if model_dir is not None:
        if not src.is_dir():
            raise ConfigError(f"trial {chosen.trial_id} kept no model ({src} missing); valid: export without "
                              "--model, or a trial that kept its model")
        # a LoRA trial: the merged model, with its adapter (peft format) in MODEL/adapter
        adapter = chosen.run_dir / ADAPTER_DIR
        _copy_dir_atomic(src, model_dir, {ADAPTER_DIR: adapter} if adapter.is_dir() else None)
    write_text_atomic(out_yaml, config_yaml(chosen, 'trial' if trial_id else 'best trial', notes))
    registered = register_model(root, chosen.trial_id, src, register) if register else None
    return ExportedTrial(chosen, registered)


PARETO_INDEX = "index.yaml"


def export_pareto(root: Path, space: SearchSpace, out_dir: Path, *, force: bool = False) -> list[dict[str, Any]]:
    """One ready-to-run YAML per Pareto-optimal feasible trial in ``out_dir`` (``<trial>.yaml``), and
    ``index.yaml``: per trial its objectives' values of record (with intervals), seeds and file.

    With one objective the Pareto set is the best trial. ``out_dir`` must be new or empty (or ``force``).
    """
    from sweeps.preflight import check_writable_dir

    check_writable_dir(out_dir, "--pareto", "a new or empty directory, or with --force an existing one")
    _refuse_overwrite(out_dir, force, "--pareto")
    trials = collect_trials(root)
    _, pareto = pick_best(space, trials, load_bounds(root))
    if not pareto:
        raise ConfigError(f"{root}: no finished feasible trial has all objective metrics "
                          f"({', '.join(space.metric_names)}): no Pareto set to export")
    index = []
    for t in pareto:
        path = out_dir / f"{t.trial_id}.yaml"
        write_text_atomic(path, config_yaml(t, "Pareto-optimal trial"))
        index.append(_index_entry(t, path, space.metric_names))
    write_text_atomic(out_dir / PARETO_INDEX, yaml.safe_dump({"objectives": [
        {"metric": o.metric, "direction": o.direction} for o in space.objectives], "pareto": index}, sort_keys=False))
    return index


def _index_entry(t: TrialRow, path: Path, metrics: Sequence[str]) -> dict[str, Any]:
    """The trial's entry of ``index.yaml``, as plain data (lists, not tuples: YAML's safe dumper)."""
    return {"trial": t.trial_id, "file": path.name, "objectives": {m: t.metrics[m] for m in metrics},
            "intervals": {m: list(t.intervals[m]) for m in metrics if m in t.intervals}, "seeds": list(t.seeds)}
