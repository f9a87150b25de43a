"""A two-trial MUSE sweep recorded in MLflow with MUSE's metrics, and the shipped MUSE space's report."""

from __future__ import annotations

import pytest
import yaml
from mlflow import MlflowClient

from sweeps.report import format_report
from sweeps.space import load_space
from sweeps.sweep import SweepSettings, launch_sweep
from tests.conftest import MUSE_DIR, REPO
from unlearn.benchmarks import get_benchmark

pytestmark = pytest.mark.slow


def test_two_trial_muse_sweep(tmp_path, ray_local, cache_dir):
    space = yaml.safe_load((REPO / "search_spaces" / "muse.yaml").read_text())
    space["base"] = yaml.safe_load((REPO / "search_spaces" / space["base"]).read_text())  # the preset, inlined
    # The shipped space on a cheaper setup: this checks the sweep's plumbing and records, not unlearning
    # (tests/unlearn/benchmarks/muse/test_end_to_end.py checks that on the shipped base)
    space["base"]["data"].update({"path": str(MUSE_DIR), "max_articles": 4, "max_questions": 4, "max_privleak": 8,
                                  "max_length": 128})
    space["base"].update({"cache_dir": str(cache_dir), "model": {"name": "tiny-2l"}})
    space["base"]["prepare"] = {"epochs": 2, "batch_size": 8}
    space["base"]["optim"]["epochs"] = 1
    space["budget"] = {"num_samples": 2, "max_concurrent": 2, "seed": 0}
    path = tmp_path / "muse.yaml"
    path.write_text(yaml.safe_dump(space))
    result = launch_sweep(path, [], SweepSettings(out_dir=str(tmp_path / "out"), progress=False))
    assert len(result.trials) == 2
    client = MlflowClient(result.mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    kids = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert len(kids) == 2
    table = get_benchmark("muse").metrics
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert set(table.names) <= set(kid.data.metrics)
        assert 0.0 <= kid.data.metrics["forget_knowmem_rouge"] <= 1.0
    report = format_report(result.out_dir, load_space(path))
    assert "forget_knowmem_rouge" in report and "forget_verbmem_rouge" in report and "privleak" in report
    assert "forget_quality" not in report  # TOFU's metrics are TOFU's
    assert "pareto set" in report
