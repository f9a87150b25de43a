"""The sweep's plots and tables from a real Optuna study, logged to a real MLflow store."""

from __future__ import annotations

from pathlib import Path

import optuna
from mlflow import MlflowClient

from sweeps.report.plots import log_sweep_artifacts, study_figures, trials_dataframe
from sweeps.tracking import SweepTracker


# --------------------------------------------------------------------------------------------------
# sweep artifacts from a real Optuna study
# --------------------------------------------------------------------------------------------------
def small_study(directions: list[str]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=directions, sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        b1 = trial.suggest_float("method.beta1", 0.1, 5.0)
        b2 = trial.suggest_float("method.beta2", 0.1, 5.0)
        return (b1 - 1) ** 2 + b2 if len(directions) == 1 else (b1, b2)

    study.optimize(objective, n_trials=6)
    return study


def test_log_sweep_artifacts(tracker: SweepTracker, tmp_path: Path) -> None:
    tracker.start_parent("sweep-g", {}, {})
    study = small_study(["minimize"])
    space = tmp_path / "space.yaml"
    space.write_text("method.beta1: {low: 0.1, high: 5.0}\n")
    files = log_sweep_artifacts(tracker, study, space, {"method": {"beta1": 1.0}}, tmp_path / "out")

    assert len(trials_dataframe(study)) == 6
    assert (tmp_path / "out" / "plots" / "plotly.min.js").is_file()
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    logged = {f.path for d in ("sweep", "plots") for f in client.list_artifacts(tracker.parent_run_id, d)}
    # MLflow gets PNGs (they show inline and offline); plotly HTML would load plotly.js from a CDN
    assert logged == {"sweep/space.yaml", "sweep/best_config.yaml", "sweep/trials.csv",
                      "plots/optimization_history.png", "plots/param_importances.png", "plots/contour.png"}
    plots = ("optimization_history", "param_importances", "contour")
    assert set(files) == {"best_config", "trials", *plots, *(f"{p}.png" for p in plots)}
    png = client.download_artifacts(tracker.parent_run_id, "plots/contour.png", str(tmp_path))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(png).stat().st_size > 10_000
    # the local interactive copies need no network: they load the plotly.min.js beside them
    html = (tmp_path / "out" / "plots" / "contour.html").read_text()
    assert 'src="plotly.min.js"' in html and "cdn.plot.ly" not in html


def test_study_figures_multi_objective() -> None:
    figures = study_figures(small_study(["minimize", "maximize"]))
    assert "pareto_front" in figures and "optimization_history_objective_0" in figures
    assert "contour_objective_1" in figures


def test_study_figures_skip_what_a_study_cannot_support() -> None:
    study = optuna.create_study()
    assert study_figures(study) == {}  # no completed trial
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert set(study_figures(study)) == {"optimization_history"}


