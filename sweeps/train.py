"""Every unlearning run goes through Ray Train: ``TorchTrainer`` workers run ``unlearn_worker``.

``run_unlearning`` is what ``unlearn-sweep run`` and each sweep trial call. Inside a Tune trial it is
the trial's driver (the Ray Train V2 pattern): ``TuneReportCallback`` forwards rank 0's reports to Tune.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from unlearn.config import to_dict
from unlearn.errors import UnlearnError
from unlearn.train.config import RunConfig, run_config_from_dict
from unlearn.train.prepare import Prepared, prepare
from unlearn.train.run import WorkerResult, unlearn_worker, write_results


class RayReporter:
    """Reports each epoch to Ray Train from every rank, with a sharded checkpoint."""

    def __init__(self, stop_after: int | None = None, checkpoint_root: Path | None = None) -> None:
        self.stop_after = stop_after
        self.checkpoint_root = checkpoint_root

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state) -> None:
        import ray.train

        with tempfile.TemporaryDirectory(prefix="unlearn-ckpt-") as tmp:
            save_state(Path(tmp))
            ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(tmp),
                             checkpoint_dir_name=f"epoch_{epoch + 1:04d}")
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise StopAfterEpochs(epoch + 1)

    def resume_dir(self) -> Path | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            # Checkpoints live in the run's storage path (local or shared): read them in place.
            return Path(ckpt.path)
        return latest_complete_checkpoint(self.checkpoint_root)


def latest_complete_checkpoint(root: Path | None) -> Path | None:
    """The newest fully written checkpoint under the run's storage, even one whose report Ray lost.

    A worker killed right after ``ray.train.report`` can take the report with it: Ray Train then
    restarts from an older checkpoint, or from none. The files are on storage all the same; a
    checkpoint counts once both its DCP metadata and ``meta.json`` are there.
    """
    if root is None or not root.is_dir():
        return None
    done = [d for d in root.glob("epoch_*") if (d / "meta.json").is_file() and (d / "state" / ".metadata").is_file()]
    return max(done, key=lambda d: d.name) if done else None


class OutOfMemoryError(UnlearnError, RuntimeError):
    """A worker ran out of (GPU or host) memory; the message says what to change."""


def _oom_advice(cfg: RunConfig, dist, error: BaseException) -> str:
    micro = cfg.optim.micro_batch_size or -(-cfg.optim.batch_size // dist.world_size)
    return (f"out of memory on worker {dist.rank} ({type(error).__name__}: {str(error).splitlines()[0][:200]}) with "
            f"micro-batches of {micro} sequences x up to {cfg.data.max_length} tokens per worker; lower "
            f"optim.micro_batch_size (now {cfg.optim.micro_batch_size}) or optim.batch_size (now "
            f"{cfg.optim.batch_size}) or data.max_length, use more workers with scaling.strategy=fsdp, or a "
            "smaller model.dtype (bfloat16)")


class RunFailedError(RuntimeError):
    """A Ray Train run failed; the message is the workers' own error (e.g. a diverged loss)."""


def _worker_error_summary(error: Exception) -> str:
    """The most telling line of a failed run: this package's errors first, else the last line."""
    import re

    text = str(error)
    ours = re.findall(r"((?:DivergedError|ConfigError|UnlearnError|OutOfMemoryError)[^\n]*)", text)
    if ours:
        return ours[-1]
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else repr(error)


class StopAfterEpochs(Exception):
    """Raised by a run asked to stop early (``stop_after_epochs``): simulates an interruption."""


def _worker_entry(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from unlearn.train.loop import Dist
    from unlearn.train.strategy import make_strategy

    cfg = run_config_from_dict(config["run"])
    prepared = Prepared(**{**config["prepared"], "root": Path(config["prepared"]["root"]),
                           "target_dir": Path(config["prepared"]["target_dir"])})
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    dist = Dist(ctx.get_world_rank(), ctx.get_world_size(), device)
    strategy = make_strategy(cfg.scaling.resolved_strategy, device, dist.world_size)
    out_dir = Path(config["out_dir"]) if config["out_dir"] else None
    root = config.get("checkpoint_root")
    reporter = RayReporter(config.get("stop_after"), Path(root) if root else None)
    log = print if dist.rank == 0 else (lambda s: None)
    try:
        result = unlearn_worker(cfg, prepared, strategy=strategy, dist=dist, reporter=reporter, out_dir=out_dir, log=log)
    except StopAfterEpochs:
        return
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not isinstance(e, torch.OutOfMemoryError) and "allocate" not in str(e):
            raise
        raise OutOfMemoryError(_oom_advice(cfg, dist, e)) from e
    if dist.rank == 0 and out_dir is not None:
        write_results(out_dir, cfg, prepared, result, {"ray_workers": dist.world_size, "strategy": strategy.name})


def run_unlearning(cfg: RunConfig, out_dir: str | Path, *, prepared: Prepared | None = None, name: str | None = None,
                   storage_path: str | Path | None = None, address: str | None = None, max_failures: int = 0,
                   callbacks: list | None = None, stop_after_epochs: int | None = None, log=print) -> WorkerResult | None:
    """prepare (cached) -> unlearn on Ray Train workers -> evaluate; rank 0 writes ``out_dir/results.json``.

    Args:
        name, storage_path: the Ray Train run's identity; the same pair resumes from its latest checkpoint.
        max_failures: worker failures to survive (restarts from the latest checkpoint).
        callbacks: Ray Train ``UserCallback``s (``TuneReportCallback`` inside a Tune trial).
        stop_after_epochs: stop after this many epochs (an interruption; a second call resumes).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from sweeps.cluster import check_placeable, ensure_ray

    out = Path(out_dir).resolve()
    resources = ensure_ray(address)
    check_placeable(cfg.scaling, resources)
    prepared = prepared or prepare(cfg, log=log)
    storage = Path(storage_path).resolve() if storage_path else out / "ray"
    trainer = TorchTrainer(
        _worker_entry,
        train_loop_config={"run": to_dict(cfg), "prepared": {**asdict(prepared), "root": str(prepared.root),
                                                              "target_dir": str(prepared.target_dir)},
                           "out_dir": str(out), "stop_after": stop_after_epochs,
                           "checkpoint_root": str(storage / (name or "unlearn")) if "://" not in str(storage) else None},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.scaling.workers, use_gpu=cfg.scaling.use_gpu,
                                               resources_per_worker={"CPU": cfg.scaling.cpus_per_worker}),
        run_config=ray.train.RunConfig(name=name or "unlearn", storage_path=str(storage),
                                       failure_config=ray.train.FailureConfig(max_failures=max_failures),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                                       callbacks=callbacks or []),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as e:
        raise RunFailedError(_worker_error_summary(e)) from e
    results = out / "results.json"
    if stop_after_epochs is not None or not results.is_file():
        return None
    from sweeps.results import load_results

    doc = load_results(out)
    return WorkerResult(doc["final"], doc["epochs"], doc.get("best_epoch"), doc.get("reference_max_change"))
