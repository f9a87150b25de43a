"""Connecting to Ray: a local cluster by default, ``--address`` / ``RAY_ADDRESS`` for an existing one."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from sweeps.envvars import QUIET_ENV, scoped_logger_level
from unlearn.errors import ConfigError
from unlearn.train.config import ScalingConfig

# Ray Train's controller polls its workers every 2 s by default: a run's end is noticed up to 2 s late,
# a fixed cost of every trial that dominates short ones. A poll is one cheap actor call.
TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
             # Ray's native crash handler (absl) allocates; in a worker at its memory cap
             # (scaling.memory_limit_gb) it re-raised SIGABRT forever and the trial hung. Without it a native
             # abort ends the worker; Python's faulthandler (enabled in each worker) still prints the stacks.
             "RAY_DISABLE_FAILURE_SIGNAL_HANDLER": "1",
             # transformers' progress bars (loading, saving a model), twice per trial in the sweep's console
             "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
# A local cluster is one node that no one reclaims: Ray Train's preemption watcher (one more actor per
# run, watching for node drains) only slows each run's start (~2.5 s of ~13 s measured here, see
# BENCHMARKS.md). A cluster given by --address keeps it.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}
LOCAL_NUM_CPUS = 8  # logical CPUs declared for a local cluster (see README: lets trials overlap on 2 cores)
# Where ray.init says, as a warning, that a new local cluster has token authentication (Ray >= 2.59)
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


def ensure_ray(address: str | None = None, *, num_cpus: int | None = None, verbose: bool = False,
               env: Mapping[str, str] | None = None) -> dict[str, float]:
    """Start (or connect to) Ray once per process; returns the cluster's total resources.

    A local cluster starts without Ray's notice that token authentication is on (it stays on); ``verbose``
    shows it. ``QUIET_ENV``, when set here, is set in the workers too. ``env``: more environment variables
    for this job's workers (a comparison's method driver attached to the comparison's local cluster gets
    that cluster's, ``job_attachment``).

    Raises:
        ConfigError: the address cannot be reached (checked before any trial or worker starts).
    """
    import ray

    if not ray.is_initialized():
        check_address(address)  # seconds, not Ray's minutes of retries against nothing
        address = address or os.environ.get("RAY_ADDRESS") or None
        # The dashboard (bound to loopback) also serves the state API that Ray Train's cleaner actors poll.
        kwargs: dict = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "configure_logging": False,
                        "runtime_env": {"env_vars": {**TRAIN_ENV, **{k: os.environ[k] for k in QUIET_ENV
                                                                     if k in os.environ}, **(env or {})}}}
        if address is None:
            address = "local"  # always a fresh cluster: never attach silently to one left running
            kwargs["num_cpus"] = num_cpus or max(LOCAL_NUM_CPUS, os.cpu_count() or 1)
            # Ray Train's PlacementGroupCleaner asks the state API whether the controller lives. Without an
            # address the state API takes the one in /tmp/ray/ray_current_cluster, which a `ray start`
            # cluster stopped earlier leaves behind: every call then waits 40 s for a dead GCS and each run's
            # teardown stalls 12 s. Point the workers at this cluster's own dashboard instead.
            port = free_port()
            kwargs["dashboard_port"] = port
            kwargs["runtime_env"]["env_vars"].update(LOCAL_TRAIN_ENV, RAY_API_SERVER_ADDRESS=f"http://127.0.0.1:{port}")
        try:
            with _token_notice(shown=verbose or address != "local"), _keep_sigterm_handler():
                ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            if address == "local":
                raise
            raise ConfigError(f"cannot connect to the Ray cluster at --address {address!r}: {e}; valid: the address "
                              "printed by `ray start --head` (e.g. 127.0.0.1:6379), or none for a local cluster") from None
    return dict(ray.cluster_resources())


def job_attachment() -> tuple[str, dict[str, str]]:
    """How another driver joins the cluster this process is connected to (``ensure_ray`` first): its GCS
    address and this job's worker environment (for a local cluster: its dashboard's address and Ray Train's
    settings, which a driver given a bare address would not set)."""
    import ray

    ctx = ray.get_runtime_context()
    return ctx.gcs_address, dict((ctx.runtime_env or {}).get("env_vars") or {})


@contextmanager
def _keep_sigterm_handler():
    """ray.init installs a SIGTERM handler of its own (``sys.exit``; Ray's native one prints a stack dump) over
    a Python handler the caller set (a sweep's: a one-line message, exit 143): the caller's is put back, and
    a SIGTERM that came during ray.init is delivered to it."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous) or threading.current_thread() is not threading.main_thread():
        yield  # no handler of the caller's: Ray's stays (``run``)
        return
    try:
        yield
    except SystemExit as e:
        if e.code == signal.SIGTERM:  # Ray's handler ran
            signal.signal(signal.SIGTERM, previous)
            previous(signal.SIGTERM, None)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _token_notice(shown: bool):
    """Ray's warning that the local cluster it starts has token authentication, hidden unless ``shown``: the
    cluster is this tool's own, on loopback, and the token is in ~/.ray/auth_token (README, Ray cluster)."""
    return scoped_logger_level(TOKEN_NOTICE_LOGGER, logging.ERROR, when=not shown)


_VALID_ADDRESSES = ("auto (the cluster `ray start --head` started on this machine), the host:port of a running "
                    "head's GCS (printed by `ray start --head`, e.g. 127.0.0.1:6379), ray://host:10001 (Ray "
                    "Client), or no --address for a local cluster")


def check_address(address: str | None) -> None:
    """Fail in seconds, naming the address, when nothing listens there (``--address``, else RAY_ADDRESS).

    A TCP connect to the head's GCS port (or Ray Client's), with a short timeout, before ``ray.init``:
    against a closed port Ray itself retries for minutes ("Failed to connect to GCS").

    Raises:
        ConfigError: the address is malformed, or nothing accepts a connection there.
    """
    from sweeps.preflight import probe_tcp

    flag = "--address"
    if not address:
        address, flag = os.environ.get("RAY_ADDRESS") or None, "RAY_ADDRESS"
    if address in (None, "local"):
        return
    target = address
    if address == "auto":
        from ray._common.utils import get_ray_address_file

        recorded = Path(get_ray_address_file(None))
        target = os.environ.get("RAY_ADDRESS") or (recorded.read_text().strip() if recorded.is_file() else "")
        if not target or target == "auto":
            return  # Ray looks for a running head itself, and says at once when there is none
    client = target.startswith("ray://")
    hostport = target[len("ray://"):] if client else target
    host, sep, port = hostport.rpartition(":")
    if "://" in hostport or not sep or not host or not port.isdigit():
        if client and "://" not in hostport and ":" not in hostport:
            host, port = hostport, "10001"  # Ray Client's default port
        else:
            raise ConfigError(f"{flag} {address!r} is not a Ray cluster address; valid: {_VALID_ADDRESSES}")
    why = probe_tcp(host.strip("[]"), int(port))
    if why is not None:
        seen = f" (resolved to {target}: a cluster stopped since?)" if address == "auto" else ""
        raise ConfigError(f"cannot connect to the Ray cluster at {flag} {address!r}{seen}: nothing answers on "
                          f"{host}:{port} ({why}); start it (`ray start --head "
                          f"{'--ray-client-server-port' if client else '--port'} {port}`) or use another address; "
                          f"valid: {_VALID_ADDRESSES}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_placeable(scaling: ScalingConfig, resources: dict[str, float], *, trials: int = 1) -> None:
    """Fail with the numbers (not an endless wait) when the workers of one run cannot be placed."""
    if scaling.use_gpu and resources.get("GPU", 0) < 1:
        raise ConfigError("scaling.use_gpu=true but the Ray cluster has no GPU (resources: "
                          f"{_fmt(resources)}); valid: scaling.use_gpu=false, or a cluster with GPUs")
    need_cpu = scaling.workers * scaling.cpus_per_worker * trials
    have_cpu = resources.get("CPU", 0.0)
    need_gpu = scaling.workers * trials if scaling.use_gpu else 0
    if need_cpu > have_cpu or need_gpu > resources.get("GPU", 0.0):
        raise ConfigError(
            f"cannot place {scaling.workers} worker(s) x {scaling.cpus_per_worker} CPU"
            f"{' + 1 GPU' if scaling.use_gpu else ''}: asked CPU={need_cpu:g}"
            f"{f', GPU={need_gpu}' if need_gpu else ''}, the cluster has {_fmt(resources)}; lower scaling.workers or "
            "scaling.cpus_per_worker, or add nodes"
        )


def _fmt(resources: dict[str, float]) -> str:
    keys = [k for k in ("CPU", "GPU", "memory") if k in resources]
    return ", ".join(f"{k}={resources[k]:g}" if k != "memory" else f"memory={resources[k] / 2**30:.1f} GiB" for k in keys)
