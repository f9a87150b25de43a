"""Shared by several test modules: the tiny search space of the sweep tests, and real processes that tests
start and stop (an MLflow server, a two-node Ray cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from sweeps.cluster import free_port


def tiny_space(tmp_path: Path, cache_dir: Path, num_samples: int = 3, epochs: int = 2, launcher: str = "local") -> Path:
    """A two-parameter SatImp space on the small setup (tests/conftest.py's SMALL, so its prepare is the
    session's), written to ``tmp_path/tiny.yaml``.

    ``launcher``: local (each trial's run in its Tune trial's process: no Ray Train start-up, ~14 s a run
    on 2 cores) unless the test is about Ray Train workers (``ray_train``) or the shipped spaces' ``auto``.
    """
    space = {
        "name": "tiny",
        "base": {"data": {"num_authors": 8, "qa_per_author": 4}, "model": {"name": "tiny-2l"},
                 "prepare": {"epochs": 6}, "method": {"weighting": "satimp", "objective": "gd"},
                 "optim": {"epochs": epochs, "batch_size": 4}, "eval": {"max_new_tokens": 12, "batch_size": 64},
                 "scaling": {"launcher": launcher}, "cache_dir": str(cache_dir)},
        "parameters": {"method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0},
                       "method.beta2": {"distribution": "uniform", "low": 0.0, "high": 1.0}},
        "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
        "initial_points": [{"method.beta1": 5.0, "method.beta2": 0.1}],
        "budget": {"num_samples": num_samples, "max_concurrent": 2, "seed": 0},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(space))
    return path

SERVER_START_TIMEOUT_S = 90.0


class MlflowServer:
    """A real ``mlflow server`` subprocess on 127.0.0.1 that can be stopped and restarted on its port."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.uri = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(Path(sys.executable).parent / "mlflow"), "server",
               "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
               "--artifacts-destination", str(self.root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        # job execution spawns a dozen worker processes: minutes of start-up on a 2-core machine
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=self.root)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                if requests.get(f"{self.uri}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"mlflow server did not answer in {SERVER_START_TIMEOUT_S} s\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # the server runs uvicorn as a child: signal the session we created (its group id is our pid)
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""


class RayNodes:
    """A two-node Ray cluster on 127.0.0.1: a head and a worker node, each a ``ray start --block`` process.

    Stopped by signalling the process groups this class created (never ``ray stop``, which would end
    every Ray instance on the machine, the test session's own included).
    """

    def __init__(self, root: Path, cpus_per_node: int = 4) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard_port = free_port()
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"  # its state API tells which nodes are up
        self.cpus = cpus_per_node
        self.procs: list[subprocess.Popen] = []

    def _ray(self, *args: str) -> subprocess.Popen:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        log = (self.root / f"node{len(self.procs)}.log").open("ab")
        cmd = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--node-ip-address=127.0.0.1",
               f"--num-cpus={self.cpus}", "--object-store-memory=300000000", *args]
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self._ray("--head", f"--port={self.port}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                  f"--dashboard-port={self.dashboard_port}")
        self._wait_nodes(1)
        self._ray(f"--address={self.address}")
        self._wait_nodes(2)

    def _wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        # The head's state API over HTTP: a request per poll (a driver process per poll, importing Ray and
        # joining the cluster, took seconds of CPU each on 2 cores)
        url = f"{self.dashboard}/api/v0/nodes?limit=100"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert all(p.poll() is None for p in self.procs), self.log_tail()
            try:
                rows = requests.get(url, timeout=5).json()["data"]["result"]["result"]
                if sum(r["state"] == "ALIVE" for r in rows) == n:
                    return
            except (requests.RequestException, ValueError, KeyError, TypeError):
                pass  # the dashboard is not up yet
            time.sleep(0.2)
        raise TimeoutError(f"{n} Ray node(s) did not come up at {self.address}\n{self.log_tail()}")

    def log_tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(self.root.glob("node*.log")))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5  # `ray start --block` can sit out a SIGTERM for 30 s and more
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
