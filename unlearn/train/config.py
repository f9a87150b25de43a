"""The fully resolved configuration of one unlearning run (what ``results.json`` records)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from unlearn.config import Override, apply_overrides, from_dict, load_yaml, parse_override, to_dict
from unlearn.attacks import metric_table
from unlearn.benchmarks import MetricTable, get_benchmark
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.errors import ConfigError, check_range
from unlearn.losses.head import check_loss_path
from unlearn.losses.method import PARAM_NAMES, MethodConfig
from unlearn.models.load import MODEL_PRESETS, ModelConfig


@dataclass(frozen=True)
class PrepareConfig:
    """Fine-tuning of the target (full set) and retain (retain split) models: the TOFU protocol."""

    epochs: int = 20  # the default setup's target memorises its forget answers (ROUGE-L ~0.99)
    lr: float = 3e-3
    batch_size: int = 16
    weight_decay: float = 0.0
    finetune: bool = True  # False for a hub model that is already the target (e.g. a TOFU-finetuned Llama)
    retain_model: str | None = None  # a retain model to evaluate instead of training one
    retain_stats: str | None = None  # or its forget truth ratios: TOFU_EVAL.json or this project's format
    seed: int = 0  # initialisation and data order of the prepared models (not the unlearning seed)

    def __post_init__(self) -> None:
        check_range("prepare.epochs", self.epochs, low=0)
        check_range("prepare.lr", self.lr, low=0.0, low_inclusive=False)
        check_range("prepare.batch_size", self.batch_size, low=1)
        check_range("prepare.weight_decay", self.weight_decay, low=0.0)


@dataclass(frozen=True)
class OptimConfig:
    """The unlearning optimisation. ``batch_size`` is global: the same whatever the worker count."""

    epochs: int = 8
    lr: float = 2e-3  # tuned on the embedded default (tiny model); TOFU-scale Llamas use ~1e-5
    batch_size: int = 8
    micro_batch_size: int | None = None  # per worker and step; None = batch_size / workers (no accumulation)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_epochs: float = 0.0  # linear warm-up over this many epochs of steps (the paper: 1); or warmup_steps
    grad_clip: float | None = 1.0
    # The LM head + per-token CE (unlearn.losses.head): auto = a CUDA kernel (cce, then liger) on CUDA where the
    # gpu extra is installed, else chunked (vocabulary chunks, never all logits); naive = full logits. "fused"
    # is the old name of chunked, stored as chunked.
    loss_path: Literal["auto", "chunked", "naive", "cce", "liger", "fused"] = "auto"

    def __post_init__(self) -> None:
        # a forced kernel must be installed (checked here); whether it can run is known on the device (train_epoch)
        object.__setattr__(self, "loss_path", check_loss_path(self.loss_path))
        check_range("optim.epochs", self.epochs, low=1)
        check_range("optim.lr", self.lr, low=0.0, low_inclusive=False)
        check_range("optim.batch_size", self.batch_size, low=1)
        if self.micro_batch_size is not None:
            check_range("optim.micro_batch_size", self.micro_batch_size, low=1)
        check_range("optim.weight_decay", self.weight_decay, low=0.0)
        check_range("optim.warmup_steps", self.warmup_steps, low=0)
        check_range("optim.warmup_epochs", self.warmup_epochs, low=0.0, high=self.epochs)
        if self.warmup_steps and self.warmup_epochs:
            raise ConfigError(f"optim.warmup_steps={self.warmup_steps} and optim.warmup_epochs={self.warmup_epochs} "
                              "are both set; valid: one of them (the other 0)")
        if self.grad_clip is not None:
            check_range("optim.grad_clip", self.grad_clip, low=0.0, low_inclusive=False)


    def with_warmup_steps(self, steps_per_epoch: int) -> OptimConfig:
        """This config with ``warmup_epochs`` turned into ``warmup_steps`` (at least 1 when set), as the
        reference does (``warmup_steps = max(1, steps_per_epoch)`` for one epoch)."""
        if not self.warmup_epochs:
            return self
        steps = max(1, round(self.warmup_epochs * steps_per_epoch))
        return dataclasses.replace(self, warmup_steps=steps, warmup_epochs=0.0)


@dataclass(frozen=True)
class ScalingConfig:
    """Ray Train workers of one run."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    strategy: Literal["auto", "fsdp", "ddp", "single"] = "auto"  # auto: single for 1 worker, fsdp otherwise
    # Host memory (GiB) a worker may allocate for its run (model, optimiser, activations, evaluation) on top
    # of what its runtime holds when the run starts (Python, torch, Ray). Beyond it an allocation fails and
    # the trial ends as out of memory, instead of the node's OOM killer taking other trials down. Linux
    # (RLIMIT_DATA); None = no cap.
    memory_limit_gb: float | None = None
    # Where the run executes. ray_train: on Ray Train workers (a controller and a worker group per run:
    # ~14 s of process start-up on 2 cores, BENCHMARKS.md). local: Ray Train's local mode, in the calling
    # process (a sweep trial's own, kept across trials; `unlearn-sweep run`'s): no start-up, one CPU worker.
    # auto: local for one CPU worker, ray_train otherwise.
    launcher: Literal["auto", "ray_train", "local"] = "ray_train"

    def __post_init__(self) -> None:
        check_range("scaling.workers", self.workers, low=1)
        if self.launcher == "local" and (self.workers > 1 or self.use_gpu):
            raise ConfigError(f"scaling.launcher='local' runs one CPU worker in the calling process, got "
                              f"scaling.workers={self.workers}, scaling.use_gpu={str(self.use_gpu).lower()}; valid: "
                              "workers=1 and use_gpu=false, or scaling.launcher=ray_train / auto")
        check_range("scaling.cpus_per_worker", self.cpus_per_worker, low=0.0, low_inclusive=False)
        if self.memory_limit_gb is not None:
            check_range("scaling.memory_limit_gb", self.memory_limit_gb, low=0.0, low_inclusive=False)
        if self.strategy == "single" and self.workers > 1:
            raise ConfigError(f"scaling.strategy='single' takes one worker, got scaling.workers={self.workers}; "
                              "valid: workers=1, or strategy fsdp / ddp")

    @property
    def resolved_strategy(self) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "single" if self.workers == 1 else "fsdp"

    @property
    def resolved_launcher(self) -> str:
        if self.launcher != "auto":
            return self.launcher
        return "local" if self.workers == 1 and not self.use_gpu else "ray_train"


DEFAULT_METHOD = MethodConfig(weighting="satimp", objective="gd", beta1=5.0, beta2=0.1, alpha=1.0)
"""The method of a config that names none: SatImp (beta1=5, beta2=0.1, the authors' recommendation) on
gradient difference. Decided here only; ``run_config_from_dict`` fills it in."""


@dataclass(frozen=True)
class RunConfig:
    """One unlearning run: prepare (cached) -> unlearn -> evaluate."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    method: MethodConfig = DEFAULT_METHOD
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    seed: int = 0
    epoch_eval: bool = False  # evaluate after every epoch (reported with its epoch)
    keep_best_by: str | None = None  # with epoch_eval: keep the epoch best by this metric (in its direction)
    # A resumable checkpoint every N epochs (0: none; an interrupted run starts over), none after the last
    # epoch (the model and results are written then). Every epoch is reported all the same; a restarted
    # run resumes from the latest checkpoint.
    checkpoint_every: int = 1
    cache_dir: str = "~/.cache/unlearn-sweeps"

    def __post_init__(self) -> None:
        check_range("checkpoint_every", self.checkpoint_every, low=0)
        if self.keep_best_by is not None:
            if not self.epoch_eval:
                raise ConfigError("keep_best_by needs epoch_eval: true (the best epoch is chosen among evaluated ones)")
            self.metrics.higher_is_better(self.keep_best_by, "keep_best_by")
        self._check_rmu_layer()
        if self.model.lora is not None and self.method.trainable is not None:
            raise ConfigError(f"method.trainable={self.method.trainable!r} picks the full weights RMU trains, but with "
                              "model.lora only the adapters on model.lora.target_modules train; valid: drop "
                              "method.trainable (the adapters' layers choose what trains), or model.lora: null")
        if self.eval.relearn is not None and not self.benchmark.relearns:
            from unlearn.benchmarks import BENCHMARKS

            able = [n for n in BENCHMARKS.names() if BENCHMARKS.get(n).relearns]
            raise ConfigError(f"eval.relearn is set but benchmark {self.data.benchmark!r} has no relearning attack "
                              f"(its plug-in implements no relearning split); valid: eval.relearn: null, or "
                              f"data.benchmark one of {', '.join(able)}")
        if self.method.importance and not self.benchmark.has_key_texts(self.data):
            raise ConfigError(f"method.importance needs key-token annotations of the forget split, and benchmark "
                              f"{self.data.benchmark!r} has none for split {self.data.split!r}; valid: set "
                              "data.importance_path to an annotation file (JSON lines of question, key_text), "
                              "or importance: false")

    def _check_rmu_layer(self) -> None:
        """RMU's steered layer exists in a tiny preset (a loaded model is checked when the run loads it)."""
        layer = getattr(self.method.component_params()["objective"], "layer", None)
        if layer is None or not self.model.is_preset:
            return
        n = MODEL_PRESETS.get(self.model.name).num_layers
        if layer >= n:
            raise ConfigError(f"method.layer={layer} is out of range for model {self.model.name!r} ({n} decoder "
                              f"layers); valid: 0 to {n - 1} (the reference's layer 7 is for 32-layer 7B models)")

    @property
    def benchmark(self):
        """The benchmark plug-in ``data.benchmark`` names (``unlearn.benchmarks.base.Benchmark``)."""
        return get_benchmark(self.data.benchmark)

    @property
    def metrics(self) -> MetricTable:
        """This run's metric table: the benchmark's, then a prefixed copy per configured attack
        (``unlearn.attacks.metric_table``): what objectives, constraints and ``keep_best_by`` may name."""
        return metric_table(self.benchmark.metrics, self.eval.quant, self.eval.relearn)

    @property
    def cache_root(self) -> Path:
        return Path(self.cache_dir).expanduser().resolve()


def load_run_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """The default config, updated by a YAML file and dotted ``key=value`` overrides; validated.

    An override changes its one field of what the file (or the default) resolves to: ``method.beta1=3``
    keeps the default method's objective and alpha.
    """
    data: dict[str, Any] = load_yaml(path) if path is not None else {}
    where = str(path) if path is not None else ""
    try:
        return run_config_from_dict(data, overrides)
    except ConfigError as e:
        raise type(e)(f"{where}: {e}" if where else str(e)) from None


def run_config_from_dict(data: Mapping[str, Any], overrides: Iterable[str | Override] = ()) -> RunConfig:
    """Build a RunConfig from plain data and dotted overrides (``key=value`` strings or parsed pairs).

    Data without a ``method`` section gets ``DEFAULT_METHOD``, whose fields the overrides then change one
    by one; a default hyper-parameter that no longer applies to the components an override chose (beta1
    once ``method.weighting=uniform``) is left out, while one given explicitly is checked as usual. A
    ``method`` section of the data replaces the default as a whole.
    """
    data = dict(data)
    default_method = "method" not in data
    if default_method:
        data["method"] = {k: v for k, v in to_dict(DEFAULT_METHOD).items() if v is not None}
    parsed = [parse_override(o) if isinstance(o, str) else o for o in overrides]
    data = apply_overrides(data, parsed)
    if default_method and isinstance(data.get("method"), dict):
        explicit = {path[1] for path, _ in parsed if len(path) == 2 and path[0] == "method"}
        data["method"] = _without_inapplicable_defaults(data["method"], explicit)
    return from_dict(RunConfig, data)


def _without_inapplicable_defaults(method: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """``method`` without the default hyper-parameters (not in ``explicit``) that its components do not take."""
    components = {k: v for k, v in method.items() if k not in PARAM_NAMES}
    try:
        applicable = {p for ps in from_dict(MethodConfig, components).applicable().values() for p in ps}
    except ConfigError:
        return method  # the components themselves are wrong: building the config says how
    return {k: v for k, v in method.items() if k not in PARAM_NAMES or k in explicit or k in applicable}


def run_config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    return to_dict(cfg)
