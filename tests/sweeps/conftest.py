"""Fixtures shared by the sweep tests: a real MLflow sqlite store and a tracker on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweeps.layout import default_tracking_uri
from sweeps.tracking import SweepTracker


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sqlite store per module (creating one costs seconds); each test has its own experiment."""
    return tmp_path_factory.mktemp("sweep")


@pytest.fixture
def tracker(sweep_dir: Path, request: pytest.FixtureRequest) -> SweepTracker:
    return SweepTracker(default_tracking_uri(sweep_dir), request.node.name, sweep_dir)
