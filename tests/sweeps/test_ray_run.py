"""Ray Train runs the unlearning loop: FSDP2 sharding, worker-count invariance, exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sweeps.failures import RunFailedError, failure_summary, is_allocation_failure, may_be_lost, retryable
from sweeps.ray_run import run_unlearning
from sweeps.reporters import TuneReportThread
from unlearn.errors import ConfigError
from unlearn.train.config import load_run_config
from unlearn.train.prepare import prepare

pytestmark = pytest.mark.slow


# Every run here is SatImp-NPO: its frozen reference, sharded beside the policy on two FSDP workers, is checked
# never to move in the two-worker run that is compared with the one-worker run (one Ray Train run for both).
NPO = ["method.objective=npo", "method.alpha=1.0"]


@pytest.fixture(scope="module")
def small(small_overrides, ray_local):
    cfg = load_run_config(None, [*small_overrides, *NPO])
    return cfg, prepare(cfg, log=lambda s: None)


def _weights(run_dir):
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def one_worker(small, tmp_path_factory):
    cfg, prepared = small
    out = tmp_path_factory.mktemp("w1")
    return run_unlearning(cfg, out, prepared=prepared, log=lambda s: None), out


def test_cli_run_with_two_fsdp_workers_shards_and_matches_one_worker(small, one_worker, tmp_path, capsys):
    from sweeps.cli import main

    cfg, _ = small
    assert main(["run", f"cache_dir={cfg.cache_dir}", *_small_args(cfg), "scaling.workers=2", "--out", str(tmp_path)]) == 0
    assert "forget_quality" in capsys.readouterr().out
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["strategy"] == "fsdp" and doc["ray_workers"] == 2
    tl = doc["timeline"]  # from the driver's fit() call on: Ray Train's start-up, then the run's own setup
    assert tl["fit_start"] < tl["setup_start"] <= tl["loop_start"]
    res1, out1 = one_worker
    # each worker holds about half of the parameters
    total = res1.history[0]["params/total"]
    assert 0.4 * total <= doc["epochs"][0]["params/local_max"] <= 0.6 * total
    assert 0.4 * total <= doc["epochs"][0]["params/local_rank0"] <= 0.6 * total
    # same global batch -> same trajectory and result
    for e1, e2 in zip(res1.history, doc["epochs"], strict=True):
        assert e2["train/loss"] == pytest.approx(e1["train/loss"], rel=1e-4, abs=1e-6)
    assert doc["final"]["forget_truth_ratio"] == pytest.approx(res1.metrics["forget_truth_ratio"], rel=1e-3)
    w1, w2 = _weights(out1), _weights(tmp_path)
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
    # NPO's reference, sharded like the policy, is never trained; the policy did move
    assert doc["reference_max_change"] == 0.0 == res1.reference_max_change
    target = load_file(str(small[1].target_dir / "model.safetensors"))
    assert max(float((w2[k] - target[k]).abs().max()) for k in w2) > 0


def test_stop_after_epoch_one_then_resume_equals_uninterrupted(small, one_worker, tmp_path):
    cfg, prepared = small
    kw = dict(prepared=prepared, name="interrupted", storage_path=tmp_path / "ray", log=lambda s: None)
    assert run_unlearning(cfg, tmp_path, stop_after_epochs=1, **kw) is None
    assert not (tmp_path / "results.json").exists()
    resumed = run_unlearning(cfg, tmp_path, **kw)
    res1, out1 = one_worker
    assert [h["epoch"] for h in resumed.history] == [2]  # only the remaining epoch ran
    assert resumed.metrics["train/loss"] == pytest.approx(res1.metrics["train/loss"], rel=1e-6)
    assert resumed.metrics["forget_quality"] == pytest.approx(res1.metrics["forget_quality"])
    assert resumed.metrics["forget_truth_ratio"] == pytest.approx(res1.metrics["forget_truth_ratio"], rel=1e-6)
    w1, w2 = _weights(out1), _weights(tmp_path)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_a_finished_run_is_refused_not_overwritten(small, one_worker):
    cfg, prepared = small
    _, out = one_worker
    before = (out / "results.json").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a finished run .*valid: another output directory"):
        run_unlearning(cfg, out, prepared=prepared, log=lambda s: None)
    assert (out / "results.json").read_bytes() == before


def test_local_launcher_runs_in_this_process_and_matches_ray_train(small, one_worker, tmp_path):
    """scaling.launcher=local: Ray Train's local mode, no worker process; same run, bit for bit. Interrupted,
    it resumes from the checkpoint it wrote where Ray Train would; the process's settings are restored."""
    import resource

    cfg, prepared = small
    local = load_run_config(None, [f"cache_dir={cfg.cache_dir}", *_small_args(cfg), "scaling.launcher=local"])
    threads, limits = torch.get_num_threads(), resource.getrlimit(resource.RLIMIT_DATA)
    kw = dict(prepared=prepared, name="local", storage_path=tmp_path / "ray", log=lambda s: None)
    assert run_unlearning(local, tmp_path, stop_after_epochs=1, **kw) is None
    assert [d.name for d in (tmp_path / "ray" / "local").iterdir()] == ["epoch_0001"]  # Ray Train's layout
    resumed = run_unlearning(local, tmp_path, **kw)
    assert (torch.get_num_threads(), resource.getrlimit(resource.RLIMIT_DATA)) == (threads, limits)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["launcher"] == "local" and doc["ray_workers"] == 1
    assert [h["epoch"] for h in resumed.history] == [2] and resumed.history[0]["train/resumed_from_epoch"] == 1.0
    res1, out1 = one_worker
    assert json.loads((out1 / "results.json").read_text())["launcher"] == "ray_train"
    for key in ("train/loss", "forget_quality", "forget_truth_ratio", "model_utility"):
        assert resumed.metrics[key] == res1.metrics[key], key
    w1, w2 = _weights(out1), _weights(tmp_path)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_local_launcher_errors(small, tmp_path):
    cfg, prepared = small
    local = load_run_config(None, [f"cache_dir={cfg.cache_dir}", *_small_args(cfg), "scaling.launcher=auto",
                                   "optim.lr=1e9", "optim.grad_clip=null"])
    assert local.scaling.resolved_launcher == "local"
    with pytest.raises(RunFailedError, match=r"^DivergedError: .*loss"):  # the run's own error, in this process
        run_unlearning(local, tmp_path / "a", prepared=prepared, log=lambda s: None)
    with pytest.raises(ConfigError, match=r"--address 127.0.0.1:1 with scaling.launcher=auto.*valid: "
                                          r"scaling.launcher=ray_train"):
        run_unlearning(local, tmp_path / "b", prepared=prepared, address="127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"s3://bucket/x with scaling.launcher=auto"):
        run_unlearning(local, tmp_path / "c", prepared=prepared, storage_path="s3://bucket/x")
    with pytest.raises(ConfigError, match=r"scaling.launcher='local' runs one CPU worker.*scaling.workers=2"):
        load_run_config(None, ["scaling.launcher=local", "scaling.workers=2"])
    assert load_run_config(None, ["scaling.launcher=auto", "scaling.workers=2"]).scaling.resolved_launcher == "ray_train"


def test_lora_on_two_workers_follows_the_one_worker_run(small, lora_one_worker, tmp_path):
    """model.lora (SatImp-NPO, the reference the policy with its adapters off) on two Ray Train workers under
    FSDP2 (the adapters sharded with their layers): the one-worker trajectory, and the export (gathered on rank 0,
    merged in a fresh copy: peft does not merge a sharded model) equal to the one worker's, merged weights and
    adapter, to a small fraction of how far they moved (Adam amplifies reduction-order rounding). DDP, and
    FSDP2 again, on two gloo workers without Ray: tests/unlearn/models/test_lora.py (a Ray Train run here costs
    ~15 s, nearly all of it Ray Train's start-up, the same for either strategy)."""
    from tests.conftest import LORA

    strategy = "fsdp"

    cfg1, res1, out1 = lora_one_worker
    _, prepared = small
    cfg = load_run_config(None, [f"cache_dir={cfg1.cache_dir}", *_small_args(cfg1), *LORA, "scaling.workers=2",
                                 f"scaling.strategy={strategy}"])
    res = run_unlearning(cfg, tmp_path, prepared=prepared, log=lambda s: None)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["strategy"] == strategy and doc["ray_workers"] == 2 and res.reference_max_change == 0.0
    for e1, e2 in zip(res1.history, res.history, strict=True):
        assert e2["train/loss"] == pytest.approx(e1["train/loss"], rel=1e-4, abs=1e-6)
    target = load_file(str(prepared.target_dir / "model.safetensors"))
    w1, w2 = _weights(out1), _weights(tmp_path)
    assert sorted(w1) == sorted(w2) == sorted(target)  # the merged model: plain Hugging Face keys
    moved = max(float((w1[k] - target[k]).abs().max()) for k in w1)
    assert moved > 0 and max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-2 * moved
    a1, a2 = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (out1, tmp_path))
    largest = max(float(v.abs().max()) for v in a1.values())
    assert sorted(a1) == sorted(a2) and max(float((a1[k] - a2[k]).abs().max()) for k in a1) < 1e-2 * largest


def test_more_workers_than_the_cluster_fails_with_numbers(small, tmp_path):
    cfg, prepared = small
    big = load_run_config(None, [*_small_args(cfg), "scaling.workers=64"])
    with pytest.raises(ConfigError, match=r"cannot place 64 worker.*asked CPU=64.*the cluster has CPU=8"):
        run_unlearning(big, tmp_path, prepared=prepared)


def test_use_gpu_without_gpu_fails_clearly(small, tmp_path):
    cfg, prepared = small
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    gpu = load_run_config(None, [*_small_args(cfg), "scaling.use_gpu=true"])
    with pytest.raises(ConfigError, match="use_gpu=true but the Ray cluster has no GPU"):
        run_unlearning(gpu, tmp_path, prepared=prepared)


def test_only_a_lost_worker_restarts_a_run():
    assert retryable("ray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task.")
    assert retryable("WorkerHealthCheckTimeoutError: worker 0 did not answer")
    for own in ("DivergedError: loss is nan at epoch 0, step 3 (optim.lr=1e9)",
                "OutOfMemoryError: out of memory on worker 0 ...", "ConfigError: data.path 'x' not found"):
        assert not retryable(own)


def test_failure_summary_names_the_cause():
    from tests.conftest import SMALL

    cfg = load_run_config(None, SMALL)
    died = "Training failed.\nray.exceptions.ActorDiedError: The actor died unexpectedly before finishing this task."
    assert failure_summary(cfg, died).startswith("ray.exceptions.ActorDiedError")  # a lost worker: retried
    assert failure_summary(cfg, "Traceback ...\nDivergedError: loss is nan at epoch 0, step 2\nmore") \
        == "DivergedError: loss is nan at epoch 0, step 2"
    oom = failure_summary(cfg, "msgpack: Cannot allocate memory\nSystemExit")
    assert oom.startswith("OutOfMemoryError: out of memory") and "optim.micro_batch_size" in oom
    capped = load_run_config(None, [*SMALL, "scaling.memory_limit_gb=0.5"])
    native = failure_summary(capped, died)  # died without a Python error under its cap: out of memory
    assert native.startswith("OutOfMemoryError") and "died under its memory cap" in native
    assert "scaling.memory_limit_gb (now 0.5)" in native and not retryable(native)
    # ... or was killed from outside, which looks the same: retried as a lost worker would be (a Ray Train
    # worker killed under a cap: test_worker_killed_mid_trial_restarts_from_checkpoint); a Python-side
    # allocation failure is out of memory for sure
    assert may_be_lost(native) and not may_be_lost(oom) and not may_be_lost(died)
    # a run in this process (launcher local) raised a Python error: that error, whatever the memory cap
    assert failure_summary(capped, "RuntimeError: Expected all tensors on one device\nmore", in_process=True) \
        == "RuntimeError: Expected all tensors on one device"


def test_allocation_failures_are_recognised_in_worker_and_driver_alike():
    for message in ("[enforce fail at alloc_cpu.cpp:121] DefaultCPUAllocator: can't allocate memory: you tried to "
                    "allocate 4294967296 bytes", "CUDA out of memory. Tried to allocate 2.00 GiB",
                    "Unable to allocate 1.2 GiB for an array", "mmap: Cannot allocate memory",
                    "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate: failed to allocate"):
        assert is_allocation_failure(message), message
    for message in ("Expected all tensors to be on the same device", "DivergedError: loss is nan at epoch 0",
                    "ray.exceptions.ActorDiedError: The actor died unexpectedly"):
        assert not is_allocation_failure(message), message


def test_tune_reports_from_a_thread_keep_order_and_raise_in_the_run():
    import threading
    import time

    got, gate = [], threading.Event()

    def slow_report(metrics):  # Tune's driver taking its time: the run does not wait for it
        gate.wait(5)
        got.append(metrics["epoch"])

    reports = TuneReportThread(slow_report)
    for epoch in range(1, 6):
        reports.put({"epoch": epoch})
    assert got == []  # every put returned while the first report still waits at the gate (no timing)
    gate.set()
    reports.close()  # waits for every report: the trial's last result reaches Tune before it returns
    assert got == [1, 2, 3, 4, 5]

    def stopped(metrics):  # what ray.tune.report does when Tune stops the trial (time budget)
        raise SystemExit(0)

    reports = TuneReportThread(stopped)
    reports.put({"epoch": 1})
    deadline = time.time() + 5
    with pytest.raises(SystemExit):  # the run stops at its next report
        while time.time() < deadline:
            reports.put({"epoch": 2})
            time.sleep(0.01)
    reports.close()

    def broken(metrics):
        raise TypeError(f"cannot serialise {metrics}")

    reports = TuneReportThread(broken)
    reports.put({"epoch": 1})
    with pytest.raises(TypeError, match="cannot serialise"):
        reports.close()
    failing = TuneReportThread(broken)
    failing.put({"epoch": 1})
    failing.close(raise_errors=False)  # the run is failing already: its own error is the one to see


def test_unknown_strategy_lists_valid():
    with pytest.raises(ConfigError, match=r"scaling.strategy='zero3'.*auto, fsdp, ddp, single"):
        load_run_config(None, ["scaling.strategy=zero3"])


def _small_args(cfg):
    from tests.conftest import SMALL

    return [*SMALL, *NPO]
