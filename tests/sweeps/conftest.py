"""Fixtures shared by the sweep tests: the local Ray cluster, a real MLflow sqlite store and a tracker on it."""

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


@pytest.fixture(scope="package")
def ray_local():
    """One local Ray cluster for the sweep tests (8 logical CPUs on 2 cores, dashboard on 127.0.0.1), shut down
    after the last of them: its idle processes (and the actors Ray Train runs leave) would take CPU from the
    tests that come after (the MUSE prepare ran 160 s beside it, 124 s alone)."""
    import ray

    from sweeps.cluster import ensure_ray

    resources = ensure_ray(num_cpus=8)
    yield resources
    ray.shutdown()


@pytest.fixture(scope="package", autouse=True)
def _no_ray_after_the_sweep_tests():
    """A sweep test that started Ray without ``ray_local`` (a launch in this process does) leaves no cluster
    running into the tests after this package either."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
