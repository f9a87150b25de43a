"""A comparison's life: check every method before any compute, then run the methods' sweeps side by side on
one cluster, then write the leaderboard (``sweeps.compare.leaderboard``).

Each method's sweep is an ordinary, resumable sweep in ``DIR/methods/<name>/`` (nested under one MLflow
comparison run), run by a driver process of its own attached to the comparison's cluster
(``sweeps.compare.driver``; why not threads: there). At most ``methods_at_once`` run at a time
(``sweeps.compare.pool``), so at most ``methods_at_once x budget.max_concurrent`` trials. A method's outcome is
recorded in ``compare.json`` as its driver ends; one method's failure is recorded (the leaderboard says why)
and the others go on. Killed at any point, the same call continues it: a recorded method is kept, an
interrupted one resumed (``resume_sweep``), a missing one launched.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.compare.leaderboard import Leaderboard, build_leaderboard, failures
from sweeps.compare.output import write_leaderboard
from sweeps.compare.driver import FINISHED, INTERRUPTED, MethodJob
from sweeps.compare.pool import Job, Outcome, methods_at_once, run_pool
from sweeps.compare.spec import CompareSpec, compare_from_dict
from sweeps.layout import SWEEP_FILE, default_tracking_uri, read_json, write_json_atomic
from sweeps.preflight import check_model_dirs, check_writable_dir
from sweeps.signals import SweepInterrupted, interruptible
from sweeps.tracking import check_tracking_uri
from unlearn.config import load_yaml
from unlearn.errors import ConfigError
from unlearn.train.prepare import check_prepare_inputs

COMPARE_FILE = "compare.json"  # the comparison's identity and progress (which methods are done)
SPEC_FILE = "compare.yaml"  # the spec as launched (a resume runs it)
METHODS_DIR = "methods"
LOGS_DIR = "logs"  # each method driver's output (DIR/logs/<method>.log)


@dataclass(frozen=True)
class CompareSettings:
    """Where a comparison runs and writes (``None``: inside ``out_dir`` / a local cluster)."""

    out_dir: str
    address: str | None = None
    mlflow_uri: str | None = None
    progress: bool = True
    verbose: bool = False

    @property
    def root(self) -> Path:
        return Path(self.out_dir).expanduser().resolve()

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_uri or default_tracking_uri(self.root)


@dataclass
class CompareResult:
    out_dir: Path
    leaderboard: Leaderboard
    failed: dict[str, str] = field(default_factory=dict)  # method -> why it has no result
    parent_run_id: str | None = None


def method_dir(root: Path, name: str) -> Path:
    return root / METHODS_DIR / name


def _check(spec: CompareSpec, settings: CompareSettings) -> dict[str, Any] | None:
    """Everything a comparison needs, before it writes or computes anything. Returns the directory's
    comparison record when it continues one (the same spec), None for a new one."""
    root = settings.root
    check_writable_dir(root, "--out")
    check_tracking_uri(settings.tracking_uri)
    for m in spec.methods:
        cfg = m.space.base_config
        check_model_dirs(cfg)
        check_prepare_inputs(cfg, cfg.benchmark.load(cfg.data))
    if (root / COMPARE_FILE).is_file():
        stored = load_yaml(root / SPEC_FILE)
        if stored != spec.raw:
            raise ConfigError(f"{root} holds comparison {stored.get('name')!r} of another spec; valid: continue it "
                              f"with `unlearn-sweep compare {root / SPEC_FILE} --out {root}` (or `unlearn-sweep "
                              f"resume {root}`), or choose another --out")
        return read_json(root / COMPARE_FILE, "the comparison record")
    if root.exists() and any(p for p in root.iterdir() if p.name != ".gitkeep"):
        raise ConfigError(f"--out {root} is not empty and holds no comparison; valid: a new or empty directory")
    return None


def _parent_run(spec: CompareSpec, settings: CompareSettings, doc: dict[str, Any]) -> str:
    """The comparison's MLflow run (experiment ``unlearn-sweep/<name>``): created once, RUNNING again on resume."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    if doc.get("parent_run_id"):
        client.update_run(doc["parent_run_id"], status="RUNNING")
        return doc["parent_run_id"]
    exp = client.get_experiment_by_name(doc["experiment"])
    exp_id = exp.experiment_id if exp else client.create_experiment(doc["experiment"])
    run = client.create_run(exp_id, run_name=spec.name, tags={"unlearn.role": "comparison",
                                                              "unlearn.compare_id": doc["compare_id"],
                                                              "unlearn.compare_dir": str(settings.root)})
    client.log_param(run.info.run_id, "methods", ",".join(m.name for m in spec.methods))
    client.log_param(run.info.run_id, "metric", spec.metric)
    return run.info.run_id


def run_compare(spec: CompareSpec, settings: CompareSettings) -> CompareResult:
    """Run (or continue) a comparison into ``settings.out_dir`` and write its leaderboard.

    Raises:
        ConfigError: a bad path, model or input, or a directory holding another comparison (before any compute).
        SweepInterrupted: Ctrl-C or SIGTERM; the same call (or ``resume``) continues it.
    """
    root = settings.root
    doc = _check(spec, settings)
    with interruptible(root):
        if doc is None:
            root.mkdir(parents=True, exist_ok=True)
            (root / SPEC_FILE).write_text(spec.to_yaml())
            doc = {"compare_id": uuid.uuid4().hex[:12], "name": spec.name, "created": time.time(),
                   "experiment": f"unlearn-sweep/{spec.name}", "tracking_uri": settings.tracking_uri, "done": {}}
            write_json_atomic(root / COMPARE_FILE, doc)
        doc["parent_run_id"] = _parent_run(spec, settings, doc)
        write_json_atomic(root / COMPARE_FILE, doc)
        todo = [m for m in spec.methods if m.name not in doc["done"]]
        if todo:
            _run_methods(spec, todo, settings, doc)
    return finish_compare(root, spec, settings.tracking_uri, doc)


def _run_methods(spec: CompareSpec, todo: list, settings: CompareSettings, doc: dict[str, Any]) -> None:
    """The methods' drivers on one cluster (a local one started here unless ``--address``), each outcome
    recorded as it comes; ``SweepInterrupted`` once the running ones stopped, after a stop signal."""
    from sweeps.cluster import ensure_ray, job_attachment

    root = settings.root
    resources = ensure_ray(settings.address, verbose=settings.verbose)
    # the drivers join the cluster this process joined (or started), with its job's worker environment; through
    # Ray Client (ray://) each connects to the address itself
    client = (settings.address or os.environ.get("RAY_ADDRESS") or "").startswith("ray://")
    cluster, cluster_env = (None, {}) if client else job_attachment()
    jobs = [Job(m.name, tuple(MethodJob(str(root), m.name, settings.address, cluster, cluster_env, settings.progress,
                                        settings.verbose).argv()), root / LOGS_DIR / f"{m.name}.log") for m in todo]
    at_once = methods_at_once(spec, resources)

    def started(job: Job) -> None:
        if settings.progress:
            how = "resuming" if (method_dir(root, job.name) / SWEEP_FILE).is_file() else "launching"
            print(f"compare: method {job.name}: {how} {method_dir(root, job.name)} (log: {job.log})", flush=True)

    def ended(o: Outcome) -> None:
        if o.status != INTERRUPTED:
            doc["done"][o.name] = "finished" if o.status == FINISHED else f"failed: {o.why}"
            write_json_atomic(root / COMPARE_FILE, doc)
        if settings.progress:
            print(f"compare: method {o.name}: {o.status}{f' ({o.why})' if o.why else ''}", flush=True)

    if settings.progress:
        print(f"compare: {len(jobs)} method(s) to run, {at_once} at a time, each with at most "
              f"{spec.methods[0].space.budget.max_concurrent} trials at once", flush=True)
    _, signum = run_pool(jobs, at_once, env=_driver_env(), on_start=started, on_end=ended)
    if signum is not None:
        raise SweepInterrupted(root, signum)


def _driver_env() -> dict[str, str]:
    """This environment, with this package importable by the drivers wherever the caller runs from."""
    import sweeps

    env = dict(os.environ)
    here = str(Path(sweeps.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PYTHONUNBUFFERED"] = "1"  # a driver's log is read as it is written
    return env


def finish_compare(root: Path, spec: CompareSpec, tracking_uri: str, doc: dict[str, Any]) -> CompareResult:
    """The leaderboard from the methods' directories, written and logged to the comparison run."""
    from mlflow.tracking import MlflowClient

    from sweeps.compare.hypotheses import format_verdicts, test_hypotheses

    board = build_leaderboard(spec, root, METHODS_DIR, failures(doc))
    paths = write_leaderboard(board, root, format_verdicts(test_hypotheses(spec, board)))
    run_id = doc.get("parent_run_id")
    if run_id:
        client = MlflowClient(tracking_uri)
        for p in paths:
            client.log_artifact(run_id, str(p), "comparison")
        client.set_terminated(run_id, "FINISHED")
    failed = {k: v for k, v in doc["done"].items() if v != "finished"}
    return CompareResult(root, board, failed, run_id)


def load_compare_dir(root: str | Path) -> tuple[CompareSpec, dict[str, Any]]:
    """A comparison directory's spec and record (``ConfigError`` if it holds none)."""
    root = Path(root).expanduser().resolve()
    if not (root / COMPARE_FILE).is_file():
        raise ConfigError(f"{root} holds no comparison ({COMPARE_FILE} missing); valid: a directory written by "
                          "`unlearn-sweep compare SPEC --out DIR`")
    return (compare_from_dict(load_yaml(root / SPEC_FILE), source=str(root / SPEC_FILE)),
            read_json(root / COMPARE_FILE, "the comparison record"))


def is_compare_dir(root: str | Path) -> bool:
    return (Path(root).expanduser() / COMPARE_FILE).is_file()


def resume_or_run_compare(root: str | Path, *, address: str | None = None, progress: bool = True,
                          verbose: bool = False) -> CompareResult:
    """Continue the comparison in ``root`` with the spec it was launched with."""
    spec, doc = load_compare_dir(root)
    uri = doc["tracking_uri"]
    settings = CompareSettings(str(root), address, None if uri == default_tracking_uri(Path(root).resolve()) else uri,
                               progress, verbose)
    return run_compare(spec, settings)
