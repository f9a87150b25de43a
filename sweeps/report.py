"""Reading a sweep back without Ray: the trial table, the best trial / Pareto set, export-best."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from unlearn.errors import ConfigError
from unlearn.train.run import MODEL_DIR, RESULTS_FILE

from sweeps.ledger import TRIAL_FILE, TRIALS_DIR, damaged_trial_advice, read_json
from sweeps.space import SearchSpace

BEST_FILE = "best_config.yaml"


def collect_trials(root: Path) -> list[dict[str, Any]]:
    """One dict per trial: id, status, sampled params, metrics (final if the run finished), reason.

    A damaged file does not hide the others: its trial is listed with status DAMAGED and the file named.
    """
    trials = []
    for d in sorted((root / TRIALS_DIR).glob("*")) if (root / TRIALS_DIR).is_dir() else []:
        row: dict[str, Any] = {"trial_id": d.name, "status": "PENDING", "params": {}, "metrics": {}, "reason": None,
                               "config": None, "dir": str(d)}
        try:
            if (d / TRIAL_FILE).is_file():
                doc = read_json(d / TRIAL_FILE, f"record of trial {d.name}", damaged_trial_advice(d))
                row.update(status=doc.get("status", "RUNNING"), params=doc.get("params", {}),
                           metrics=doc.get("last_metrics", {}), reason=doc.get("reason"))
            if (d / RESULTS_FILE).is_file():
                res = read_json(d / RESULTS_FILE, f"results of trial {d.name}", damaged_trial_advice(d))
                row.update(metrics=res["final"], config=res["config"], has_model=(d / MODEL_DIR).is_dir())
        except ConfigError as e:
            row.update(status="DAMAGED", reason=str(e))
        trials.append(row)
    return trials


def _objective_values(space: SearchSpace, row: dict[str, Any]) -> list[float] | None:
    vals = [row["metrics"].get(m) for m in space.metric_names]
    if any(v is None or not isinstance(v, (int, float)) or math.isnan(v) for v in vals):
        return None
    return [v if d == "maximize" else -v for v, d in zip(vals, space.directions)]  # larger is better


def pick_best(space: SearchSpace, trials: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Best finished trial (single objective) or the Pareto set and its member best on the first objective."""
    done = [t for t in trials if t["status"] == "FINISHED" and t["config"] is not None
            and _objective_values(space, t) is not None]
    if not done:
        return None, []
    scores = {t["trial_id"]: _objective_values(space, t) for t in done}
    pareto = [t for t in done if not any(
        all(a >= b for a, b in zip(scores[o["trial_id"]], scores[t["trial_id"]])) and scores[o["trial_id"]] != scores[t["trial_id"]]
        for o in done)]
    # Ties on the first objective (forget quality moves in coarse steps) go to the better model utility:
    # of two equally forgetful models, the one that kept more is the one to export.
    utility = space.base_config.benchmark.metrics.utility_metric
    best = max(pareto, key=lambda t: (scores[t["trial_id"]][0], _utility(t, utility)))
    return best, pareto if space.is_multi_objective else [best]


def _utility(trial: dict[str, Any], name: str | None) -> float:
    """The trial's value of the benchmark's utility metric (-inf when missing)."""
    value = trial["metrics"].get(name) if name is not None else None
    return value if isinstance(value, (int, float)) and not math.isnan(value) else -math.inf


def write_best_config(root: Path, best: dict[str, Any]) -> Path:
    path = root / BEST_FILE
    _write_text_atomic(path, _config_yaml(best))
    return path


def _config_yaml(trial: dict[str, Any]) -> str:
    head = f"# best trial {trial['trial_id']} of this sweep; reproduce with: unlearn-sweep run THIS_FILE --out DIR\n"
    return head + yaml.safe_dump(trial["config"], sort_keys=False)


def format_report(root: Path, space: SearchSpace) -> str:
    """A plain-text table of all trials, then the best trial (or Pareto set)."""
    trials = collect_trials(root)
    if not trials:
        return f"{root}: no trial has started yet"
    names = sorted({k for t in trials for k in t["params"]})
    table = space.base_config.benchmark.metrics
    metrics = list(space.metric_names) + [m for m in table.shown if m not in space.metric_names]
    header = ["trial", "status", *names, *metrics]
    rows = [[t["trial_id"], t["status"], *[_fmt(t["params"].get(n)) for n in names],
             *[_fmt(t["metrics"].get(m)) for m in metrics]] for t in trials]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    counts = {s: sum(t["status"] == s for t in trials) for s in ("FINISHED", "RUNNING", "FAILED", "KILLED", "DAMAGED")}
    lines.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v))
    for t in trials:
        if t["status"] in ("FAILED", "DAMAGED") and t["reason"]:
            limit = 500 if t["status"] == "DAMAGED" else 200  # a damaged file's message ends with what to do
            lines.append(f"  {t['trial_id']} {t['status'].lower()}: {t['reason'].splitlines()[0][:limit]}")
    best, pareto = pick_best(space, trials)
    if best is None:
        lines.append("best: none yet (no finished trial with all objective metrics)")
    elif space.is_multi_objective:
        lines.append("pareto set (" + ", ".join(space.metric_names) + "): " + ", ".join(
            f"{t['trial_id']} (" + ", ".join(_fmt(t["metrics"][m]) for m in space.metric_names) + ")" for t in pareto))
    else:
        m = space.metric_names[0]
        lines.append(f"best: {best['trial_id']} {m}={_fmt(best['metrics'][m])}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _refuse_overwrite(path: Path, force: bool, what: str) -> None:
    if force or not path.exists():
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    raise ConfigError(f"{what} {path} already exists and is not empty; pass --force to overwrite it")


def _check_export_paths(out_yaml: Path, model_dir: Path | None, force: bool) -> None:
    """Both destinations usable, checked before either is written (no half export)."""
    from sweeps.checks import check_writable_dir, check_writable_file

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


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _copy_dir_atomic(src: Path, dest: Path) -> None:
    """Copy ``src`` to a temporary sibling of ``dest``, then rename it into place: a kill mid-copy leaves
    the temporary directory (named ``.NAME.partial-PID``), never a truncated model under ``dest``."""
    dest = dest.resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    shutil.copytree(src, tmp)
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        dest.rename(old)  # --force: the old one goes only once the new one is complete
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def export_best(root: Path, space: SearchSpace, out_yaml: Path, *, model_dir: Path | None = None,
                register: str | None = None, trial_id: str | None = None, force: bool = False) -> dict[str, Any]:
    """Write the best (or the named) trial's resolved run config; optionally copy / register its model.

    Both destinations are checked before either is written; the model is copied to a temporary
    directory and renamed into place, the YAML replaced atomically.
    """
    _check_export_paths(out_yaml, model_dir, force)
    trials = collect_trials(root)
    if trial_id is not None:
        chosen = next((t for t in trials if t["trial_id"] == trial_id), None)
        if chosen is None or chosen["config"] is None:
            raise ConfigError(f"trial {trial_id!r} has no finished run in {root}; finished trials: "
                              f"{', '.join(t['trial_id'] for t in trials if t['config']) or 'none'}")
    else:
        chosen, _ = pick_best(space, trials)
        if chosen is None:
            raise ConfigError(f"{root}: no finished trial has all objective metrics ({', '.join(space.metric_names)})")
    src = Path(chosen["dir"]) / MODEL_DIR
    if model_dir is not None:
        if not src.is_dir():
            raise ConfigError(f"trial {chosen['trial_id']} kept no model ({src} missing); valid: export without "
                              "--model, or a trial that kept its model")
        _copy_dir_atomic(src, model_dir)
    _write_text_atomic(out_yaml, _config_yaml(chosen))
    if register:
        from sweeps.registry import register_model

        chosen["registered"] = register_model(root, chosen["trial_id"], src, register)
    return chosen
