"""The sweep's plots and tables from its Optuna study, logged to the MLflow parent run."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sweeps.tracking.tracker import SweepTracker

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Sweep artifacts: Optuna's own table and plots
# --------------------------------------------------------------------------------------------------
def trials_dataframe(study: Any) -> Any:
    """All trials of an Optuna study as a pandas DataFrame (one row per trial, params as columns)."""
    return study.trials_dataframe(multi_index=False)


def _find_param(names: set[str], dotted: str) -> str | None:
    """The study's name for a dotted param (OptunaSearch may spell ``method.beta1`` as ``method/beta1``)."""
    return next((n for n in sorted(names) if n.replace("/", ".") == dotted), None)


def _objectives(study: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Per objective: (name suffix, plot kwargs, importance kwargs); one unnamed entry if single-objective."""
    import optuna

    if len(study.directions) == 1:
        return [("", {}, {})]
    names = list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])
    out = []
    for i, (name, direction) in enumerate(zip(names, study.directions)):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0  # importances assume minimise
        out.append((f"_{name}", {"target": lambda t, i=i: t.values[i], "target_name": name},
                    {"target": lambda t, i=i, s=sign: s * t.values[i], "target_name": name}))
    return out


def _importances(study: Any, kw: dict[str, Any], vis: Any) -> Any:
    with warnings.catch_warnings():
        # Optuna warns that a custom target is minimised: _objectives already negated maximised ones
        warnings.filterwarnings("ignore", message=".*to achieve low `target` values.*")
        # PED-ANOVA on a few trials (a 4-trial sweep): every parameter gets the same importance, which the
        # plot shows; the warning would only print Optuna's source lines into the sweep's output
        warnings.filterwarnings("ignore", message=".*quantiles select the same set of trials.*")
        return vis.plot_param_importances(study, **kw)


def _figure_makers(study: Any, vis: Any, contour: tuple[str, str]) -> dict[str, Callable[[], Any]]:
    """Per plot name, a function drawing it with ``vis`` (``optuna.visualization`` or its matplotlib twin)."""
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        logger.info("no completed trial: no sweep plots")
        return {}
    params = {p for t in complete for p in t.params}
    pair = [_find_param(params, p) for p in contour]
    figures: dict[str, Callable[[], Any]] = {}
    for suffix, kw, imp_kw in _objectives(study):
        figures[f"optimization_history{suffix}"] = lambda kw=kw: vis.plot_optimization_history(study, **kw)
        if len(complete) >= 2 and len(params) >= 2:
            figures[f"param_importances{suffix}"] = lambda kw=imp_kw: _importances(study, kw, vis)
        if all(pair):
            figures[f"contour{suffix}"] = lambda kw=kw: vis.plot_contour(study, params=pair, **kw)
    if len(study.directions) in (2, 3):
        names = [kw["target_name"] for _, kw, _ in _objectives(study)]
        figures["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=names)
    return figures


def study_figures(study: Any, contour: tuple[str, str] = ("method.beta1", "method.beta2")) -> dict[str, Any]:
    """Optuna's plotly plots of a study, by name; plots a study cannot support are skipped (with a log line)."""
    from optuna import visualization as vis

    makers = _figure_makers(study, vis, contour)
    return {name: fig for name, make in makers.items() if (fig := _render(name, make)) is not None}


def study_pngs(study: Any, out_dir: Path, contour: tuple[str, str] = ("method.beta1", "method.beta2")) -> dict[str, Path]:
    """The same plots drawn by Optuna's matplotlib backend, saved as PNG in ``out_dir`` (no JavaScript:
    they show offline and inline in the MLflow UI)."""
    import matplotlib

    matplotlib.use("Agg")  # a sweep driver has no display; Agg is what a headless process gets anyway
    import matplotlib.pyplot as plt
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization import matplotlib as vis

    out: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # Optuna marks its matplotlib backend experimental
        for name, make in _figure_makers(study, vis, contour).items():
            drawn = _render(name, make)
            if drawn is None:
                continue
            axes = drawn.flat[0] if hasattr(drawn, "flat") else drawn  # a contour of >2 params is a grid
            fig = axes.figure
            out[name] = out_dir / f"{name}.png"
            fig.savefig(out[name], dpi=110, bbox_inches="tight")
            plt.close(fig)
    return out


def _render(name: str, make: Callable[[], Any]) -> Any | None:
    try:
        return make()
    except (ValueError, RuntimeError, ZeroDivisionError, ImportError) as e:
        logger.warning("skipping sweep plot %s: %s", name, e)
        return None


def log_sweep_artifacts(tracker: SweepTracker, study: Any, space_yaml_path: Path,
                        best_config: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Path]:
    """Write the sweep's summary to ``out_dir`` and log it to the parent run.

    Logged: the search space YAML (``sweep/``), the best config (``sweep/best_config.yaml``; none when
    ``best_config`` is None: no trial finished), all trials (``sweep/trials.csv``) and Optuna's plots as
    PNG (``plots/<name>.png``, drawn by Optuna's matplotlib backend: MLflow shows them inline, offline).
    ``out_dir/plots/`` also holds them as interactive HTML that shares one local ``plotly.min.js`` (plotly
    HTML logged to MLflow would load plotly.js from a CDN, blank on an offline cluster).

    Returns:
        The local files written, by name.
    """
    import yaml

    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    files = {"trials": out_dir / "trials.csv"}
    if best_config is not None:
        files["best_config"] = out_dir / "best_config.yaml"
        files["best_config"].write_text(yaml.safe_dump(json.loads(json.dumps(dict(best_config), default=str)),
                                                       sort_keys=False))
    else:
        (out_dir / "best_config.yaml").unlink(missing_ok=True)
    trials_dataframe(study).to_csv(files["trials"], index=False)
    for path in (Path(space_yaml_path), files.get("best_config"), files["trials"]):
        if path is not None:
            tracker.log_parent_artifact(path, "sweep")
    for name, fig in study_figures(study).items():  # interactive, offline: the copies share plotly.min.js
        files[name] = out_dir / "plots" / f"{name}.html"
        fig.write_html(files[name], include_plotlyjs="directory")
    for name, png in study_pngs(study, out_dir / "plots").items():
        files[f"{name}.png"] = png
        tracker.log_parent_artifact(png, "plots")
    return files
