"""How a run reports its epochs and keeps its checkpoints: to Ray Train from its workers (``RayReporter``),
or in Ray Train's local mode to Tune and to storage in Ray Train's layout (``LocalReporter``, with
``TuneReportThread``); ``latest_complete_checkpoint`` finds a run's newest finished checkpoint either way."""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


class StopAfterEpochs(Exception):
    """Raised by a run asked to stop early (``stop_after_epochs``): simulates an interruption."""


class RayReporter:
    """Reports each epoch to Ray Train from every rank, with a sharded checkpoint when one is due."""

    def __init__(self, stop_after: int | None = None, checkpoint_root: Path | None = None) -> None:
        self.stop_after = stop_after
        self.checkpoint_root = checkpoint_root

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state) -> None:
        import ray.train

        if save_state is None:
            ray.train.report(dict(metrics))
        else:
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


class TuneReportThread:
    """Reports to Tune from a thread of its own, in order, so that the run never waits for them.

    ``ray.tune.report`` returns only once Tune's driver has taken the result and asked for the next one:
    a round trip through the driver's callbacks (ledger, MLflow, progress), ~15 ms per epoch with two
    trials busy on 2 cores (BENCHMARKS.md). Only for sweeps without a scheduler: ASHA decides on each
    result, and a trial it stops must stop there. A report that fails, or Tune stopping the trial
    (``SystemExit`` raised in the reporting thread, e.g. at the time budget), is raised in the run at its
    next report or at ``close``.
    """

    def __init__(self, report=None) -> None:
        if report is None:
            import ray.tune

            report = ray.tune.report
        self._report = report
        self._error: BaseException | None = None
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tune-reports")  # one: in order

    def _send(self, metrics: dict[str, float]) -> None:
        if self._error is not None:
            return  # the trial is over for Tune: drop the rest
        try:
            self._report(metrics)
        except BaseException as e:  # noqa: BLE001 -- SystemExit: Tune stopped the trial
            self._error = e

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def put(self, metrics: dict[str, float]) -> None:
        self._raise()
        self._sender.submit(self._send, metrics)

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait until every report is with Tune (the trial's last result must be, before its function
        returns); then raise what reporting raised, unless the run is failing anyway."""
        self._sender.shutdown(wait=True)
        if raise_errors:
            self._raise()


class LocalReporter:
    """A run in Ray Train's local mode: its checkpoints go to the run's storage in Ray Train's layout
    (``NAME/epoch_NNNN``, the newest ``keep``), its reports to Tune when the caller is a Tune trial
    (from ``TuneReportThread`` unless ``wait_for_tune``)."""

    def __init__(self, checkpoint_root: Path, *, to_tune: bool, wait_for_tune: bool = True,
                 stop_after: int | None = None, keep: int = 2) -> None:
        self.checkpoint_root = checkpoint_root
        self.to_tune = to_tune
        self.stop_after = stop_after
        self.keep = keep
        self._reports = TuneReportThread() if to_tune and not wait_for_tune else None

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state) -> None:
        if save_state is not None:
            final = self.checkpoint_root / f"epoch_{epoch + 1:04d}"
            partial = self.checkpoint_root / f".partial_{final.name}"  # complete once renamed
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            save_state(partial)
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            for old in sorted(self.checkpoint_root.glob("epoch_*"))[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        if self._reports is not None:
            self._reports.put(dict(metrics))
        elif self.to_tune:
            import ray.tune

            ray.tune.report(dict(metrics))
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise StopAfterEpochs(epoch + 1)

    def resume_dir(self) -> Path | None:
        return latest_complete_checkpoint(self.checkpoint_root)

    def close(self, *, raise_errors: bool = True) -> None:
        if self._reports is not None:
            self._reports.close(raise_errors=raise_errors)


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
