"""The local Ray cluster: its workers reach this cluster's state API, whatever a stopped cluster left, and
run Ray Train without a preemption watcher."""

import pytest

pytestmark = pytest.mark.slow


def test_workers_query_this_clusters_state_api(ray_local):
    import ray

    @ray.remote(num_cpus=0)
    def state_of(actor_id: str) -> tuple[str, str]:
        import os

        from ray.util.state import get_actor

        # Ray Train's PlacementGroupCleaner makes this call; a wrong address costs 40 s per call.
        return os.environ.get("RAY_API_SERVER_ADDRESS", ""), get_actor(actor_id, timeout=5).state

    @ray.remote(num_cpus=0)
    class Alive:
        def ping(self) -> int:
            return 1

    actor = Alive.remote()
    ray.get(actor.ping.remote())
    address, state = ray.get(state_of.remote(actor._actor_id.hex()), timeout=60)
    assert address.startswith("http://127.0.0.1:")
    assert state == "ALIVE"


def test_local_cluster_runs_train_without_the_preemption_watcher(ray_local):
    import ray

    @ray.remote(num_cpus=0)
    def flag() -> str | None:
        import os

        return os.environ.get("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")

    # one node that no one reclaims: the watcher actor would only slow each run's start
    assert ray.get(flag.remote(), timeout=60) == "0"
