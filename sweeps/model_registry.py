"""Registering an exported model in the MLflow model registry (aliases, not deprecated stages)."""

from __future__ import annotations

from pathlib import Path

from unlearn.errors import ConfigError


def register_model(root: Path, trial_id: str, model_dir: Path, name: str) -> str:
    """Log the trial's model under its MLflow child run and register it as a new version of ``name``."""
    from mlflow import MlflowClient

    from sweeps.layout import load_sweep_meta
    from sweeps.tracking import check_tracking_uri

    meta = load_sweep_meta(root)
    check_tracking_uri(meta["tracking_uri"])
    if not model_dir.is_dir():
        raise ConfigError(f"trial {trial_id} kept no model ({model_dir} missing); nothing to register")
    client = MlflowClient(meta["tracking_uri"])
    experiments = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(
        experiments, filter_string=f"tags.`unlearn.sweep_id` = '{meta['sweep_id']}' and tags.`unlearn.role` = 'sweep'")
    runs = [r for p in parents for r in client.search_runs(
        [p.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{p.info.run_id}' and tags.`unlearn.trial_id` = '{trial_id}'")]
    if not runs:
        raise ConfigError(f"no MLflow run of trial {trial_id} in {meta['tracking_uri']}")
    run = runs[0]
    client.log_artifacts(run.info.run_id, str(model_dir), "model")
    try:
        client.get_registered_model(name)
    except Exception:  # noqa: BLE001 - MLflow raises a generic RestException when absent
        client.create_registered_model(name)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "best", version.version)
    return f"models:/{name}/{version.version}"
