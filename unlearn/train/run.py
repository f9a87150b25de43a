"""One unlearning run: load the prepared target, unlearn with the configured method, evaluate.

``unlearn_worker`` is the plain function every worker runs (one process or a Ray Train worker): it
takes a typed config, the prepared paths, where it sits in the worker group and a ``Reporter``; it
has no globals. ``run_local`` calls it in this process (tests, debugging); ``sweeps.ray_run.run_unlearning``
runs it through Ray Train (on its workers, or in the calling process with ``scaling.launcher: local``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from unlearn.attacks.evaluate import attack_record, check_attacks, evaluate_attacks
from unlearn.attacks.relearn import RelearnSplit
from unlearn.config import to_dict
from unlearn.errors import NonFiniteScoresError
from unlearn.losses import Method, resolve_loss_path
from unlearn.models import load_model, load_tokenizer
from unlearn.models.lora import ADAPTER_DIR, apply_lora, base_state_key, save_lora_export
from unlearn.train.config import RunConfig
from unlearn.train.loop import DivergedError, Dist, UnlearnData, make_optimizer, steps_per_epoch, train_epoch
from unlearn.train.module import AdaptersOff, CausalLMWithLoss, restrict_trainable
from unlearn.train.prepare import Prepared
from unlearn.train.strategy import Strategy, local_parameter_count

RESULTS_FILE = "results.json"
MODEL_DIR = "model"


class Reporter(Protocol):
    """Receives each epoch's metrics, with ``save_state(dir)`` on the epochs due for a checkpoint
    (``checkpoint_every``; ``None`` on the others)."""

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state: Callable[[Path], None] | None) -> None: ...

    def resume_dir(self) -> Path | None: ...


@dataclass
class CallbackReporter:
    """Calls ``report(metrics, epoch)``; checkpoints to ``checkpoint_root/epoch_N`` when given one."""

    report: Callable[[dict[str, float], int], None] | None = None
    checkpoint_root: Path | None = None
    resume_from: Path | None = None

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state: Callable[[Path], None] | None) -> None:
        if self.checkpoint_root is not None and save_state is not None:
            path = self.checkpoint_root / f"epoch_{epoch}"
            path.mkdir(parents=True, exist_ok=True)
            save_state(path)
        if self.report is not None:
            self.report(metrics, epoch)

    def resume_dir(self) -> Path | None:
        return self.resume_from


@dataclass
class WorkerResult:
    """What rank 0 returns: final metrics, per-epoch history, the best epoch kept (if any)."""

    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    reference_max_change: float | None = None  # NPO / KL: the frozen reference must not move
    # The final (or kept) evaluation's per-question forget statistics (``EvalOutput.per_item``)
    per_item: dict[str, list[float]] = field(default_factory=dict)
    # Wall-clock timestamps (time.time()) of the run's phases, and seconds spent in checkpoints and
    # reports: where a run's time goes besides training and evaluation (``bench.sweep_overhead``).
    timeline: dict[str, float] = field(default_factory=dict)
    # The attacks' record (``eval.quant`` / ``eval.relearn``): the relearning split, each attack's seconds
    attacks: dict[str, Any] = field(default_factory=dict)


def _evaluate_module(policy, strategy: Strategy, eval_lm, tokenizer, data, cfg: RunConfig,
                     prepared: Prepared, dist: Dist, split: RelearnSplit | None
                     ) -> tuple[dict[str, float], dict[str, list[float]], dict[str, Any]]:
    """Evaluate on rank 0 with the full state dict (unsharded); every rank takes part in the gather.
    Returns the metrics (the attacks' too, prefixed), the per-question statistics and the attacks' record
    (all empty on the other ranks)."""
    if strategy.name == "single":
        lm = policy.lm
    else:
        sd = strategy.full_state_dict(policy)
        if dist.rank != 0:
            strategy.barrier()
            return {}, {}, {}
        eval_lm.load_state_dict({k.removeprefix("lm."): v for k, v in sd.items()})
        lm = eval_lm
    out = cfg.benchmark.evaluate(lm, tokenizer, data, cfg.data, cfg.eval, prepared.reference)
    attacked = evaluate_attacks(lm, tokenizer, cfg.benchmark, data, cfg.data, cfg.eval, prepared.reference, split) \
        if cfg.eval.quant is not None or cfg.eval.relearn is not None else None
    if strategy.name != "single":
        strategy.barrier()
    if attacked is None:
        return out.metrics, out.per_item, {}
    return {**out.metrics, **attacked.metrics}, out.per_item, attack_record(attacked)


def unlearn_worker(cfg: RunConfig, prepared: Prepared, *, strategy: Strategy, dist: Dist, reporter: Reporter,
                   out_dir: Path | None, log: Callable[[str], None] = print) -> WorkerResult:
    """Unlearn ``prepared.target_dir`` with ``cfg.method``; rank 0 writes the model to ``out_dir/model``."""
    timeline = {"setup_start": time.time(), "checkpoint_report_s": 0.0}
    resolve_loss_path(cfg.optim.loss_path, dist.device, cfg.model.torch_dtype)  # a kernel that cannot run here: now
    data = cfg.benchmark.load(cfg.data)
    split = check_attacks(cfg.benchmark, data, cfg.eval)  # a relearning fraction that cannot split: now
    tokenizer = load_tokenizer(prepared.target_dir)
    method = Method(cfg.method)
    dtype = cfg.model.torch_dtype
    lora = cfg.model.lora
    lm = load_model(prepared.target_dir, dtype)
    # RMU: its layer exists; only its pattern trains (with LoRA the adapters train instead: README, fidelity)
    restrict_trainable(lm, None if lora else method.trainable, method.layer)
    policy = strategy.wrap(CausalLMWithLoss(_adapted(lm, cfg)), trainable=True)
    ref = None
    if method.needs_reference:  # LoRA: the policy with its adapters off is the base model, exactly
        ref = AdaptersOff(getattr(policy, "module", policy)) if lora else \
            strategy.wrap(CausalLMWithLoss(load_model(prepared.target_dir, dtype)), trainable=False)
    eval_lm = _adapted(load_model(prepared.target_dir, dtype), cfg).to(dist.device).eval() \
        if strategy.name != "single" and dist.rank == 0 else None
    forget, retain = cfg.benchmark.unlearn_examples(tokenizer, data, cfg.data, key_texts=cfg.method.importance)
    examples = UnlearnData(tuple(forget), tuple(retain), tokenizer.pad_token_id)
    sizes = _parameter_sizes(policy, dist)
    per_epoch = steps_per_epoch(len(examples.forget), cfg.optim.batch_size)
    optimizer, scheduler = make_optimizer(policy, cfg.optim.with_warmup_steps(per_epoch), cfg.optim.epochs * per_epoch)
    start, resumed = 0, {}
    if (resume := reporter.resume_dir()) is not None:
        start = strategy.load(resume, policy, optimizer, scheduler)
        resumed = {"train/resumed_from_epoch": float(start)}  # on record: this run restarted here
        log(f"resumed from {resume} after epoch {start}")
    history: list[dict[str, float]] = []
    per_item: dict[int, dict[str, list[float]]] = {}  # epoch -> its evaluation's per-question statistics
    attacks: dict[int, dict[str, Any]] = {}  # epoch -> its attacks' record
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    timeline["loop_start"] = time.time()
    for epoch in range(start, cfg.optim.epochs):
        t0 = time.perf_counter()
        stats = train_epoch(policy, ref, method, examples, optimizer, scheduler, cfg.optim, seed=cfg.seed,
                            epoch=epoch, dist=dist)
        metrics: dict[str, float] = {f"train/{k}": v for k, v in stats.items()}
        metrics["train/seconds"] = time.perf_counter() - t0
        metrics["epoch"] = epoch + 1
        metrics.update(sizes)
        metrics.update(resumed if epoch == start else {})
        last = epoch == cfg.optim.epochs - 1
        if cfg.epoch_eval or last:
            t1 = time.perf_counter()
            try:
                evaluated, per_item[epoch + 1], attacks[epoch + 1] = _evaluate_module(
                    policy, strategy, eval_lm, tokenizer, data, cfg, prepared, dist, split)
            except NonFiniteScoresError as e:  # finite weights whose outputs overflow: the update diverged
                raise DivergedError(f"loss is {stats.get('loss')} (mean) at epoch {epoch + 1}, but the updated "
                                    f"model's scores are not finite ({e}; optim.lr={cfg.optim.lr}); lower the "
                                    "learning rate or clip gradients (optim.grad_clip)") from e
            metrics.update(evaluated)
            metrics["eval/seconds"] = time.perf_counter() - t1
        if cfg.keep_best_by and dist.rank == 0:
            sign = 1.0 if cfg.metrics.higher_is_better(cfg.keep_best_by) else -1.0
            score = sign * metrics.get(cfg.keep_best_by, -sign * math.inf)
            if best is None or score > best[0]:
                best = (score, epoch + 1, {k: v.clone() for k, v in strategy.full_state_dict(policy).items()})
        elif cfg.keep_best_by:
            strategy.full_state_dict(policy)  # collective under FSDP: every rank takes part
        history.append(metrics)
        t2 = time.perf_counter()
        # None after the last epoch: the run's model and results are written next, and a run interrupted
        # there redoes its last epochs from the checkpoint before (resuming into no epoch would leave no metrics)
        due = not last and cfg.checkpoint_every > 0 and (epoch + 1) % cfg.checkpoint_every == 0
        reporter.epoch_end(metrics, epoch, (lambda path, e=epoch: strategy.save(path, policy, optimizer, scheduler, e + 1))
                           if due else None)
        timeline["checkpoint_report_s"] += time.perf_counter() - t2
    timeline["loop_end"] = time.time()
    result = _finish(cfg, policy, strategy, tokenizer, history, best, out_dir, dist, prepared.target_dir)
    result.per_item = per_item.get(result.best_epoch or cfg.optim.epochs, {})
    result.attacks = attacks.get(result.best_epoch or cfg.optim.epochs, {})
    result.timeline = {**timeline, "finish_end": time.time()}
    if ref is not None:
        frozen = ref.module if isinstance(ref, AdaptersOff) else ref  # LoRA: the policy's base weights
        result.reference_max_change = _max_change(strategy.full_state_dict(frozen), prepared.target_dir, dtype, dist)
    return result


def _adapted(lm, cfg: RunConfig):
    """``lm`` with ``cfg.model.lora``'s adapters (seeded by the run's seed: every worker builds the same), or as is."""
    return lm if cfg.model.lora is None else apply_lora(lm, cfg.model.lora, seed=cfg.seed)


def _parameter_sizes(policy, dist: Dist) -> dict[str, float]:
    """Parameters held by each worker (its FSDP shard), reported as the largest and rank 0's share."""
    counts = torch.zeros(dist.world_size, dtype=torch.float64, device=dist.device)
    counts[dist.rank] = local_parameter_count(policy)
    counts = dist.all_reduce_sum(counts)
    total = sum(p.numel() for p in policy.parameters()) if dist.world_size == 1 else None
    out = {"params/local_rank0": float(counts[0]), "params/local_max": float(counts.max())}
    if total is not None:
        out["params/total"] = float(total)
        out["params/trainable"] = float(sum(p.numel() for p in policy.parameters() if p.requires_grad))
    return out


def _max_change(ref_state: dict[str, torch.Tensor], target_dir: Path, dtype, dist: Dist) -> float | None:
    """Largest absolute difference between the frozen reference and the target it was loaded from (LoRA:
    the policy's base weights, its adapters left out)."""
    if dist.rank != 0:
        return None
    target = load_model(target_dir, dtype).state_dict()
    base = {b: v for k, v in ref_state.items() if (b := base_state_key(k.removeprefix("lm."))) is not None}
    return max(float((v.float() - target[k].float()).abs().max()) for k, v in base.items())


def _finish(cfg: RunConfig, policy, strategy: Strategy, tokenizer, history, best, out_dir: Path | None,
            dist: Dist, target_dir: Path) -> WorkerResult:
    final = dict(history[-1]) if history else {}
    best_epoch = None
    # With keep_best_by the kept epoch's state was gathered already; gather the last one only otherwise
    # (the same decision on every rank, so the collective gather stays matched).
    sd = strategy.full_state_dict(policy) if out_dir is not None and not cfg.keep_best_by else None
    if best is not None:
        best_epoch = best[1]
        final = dict(next(h for h in history if h["epoch"] == best_epoch))
        sd = best[2]
    if dist.rank == 0 and out_dir is not None and sd is not None and cfg.model.lora is not None:
        # merged from the gathered full state dict, in a copy (peft cannot merge a sharded model)
        export = _adapted(load_model(target_dir, cfg.model.torch_dtype), cfg)
        export.load_state_dict({k.removeprefix("lm."): v for k, v in sd.items()})
        save_lora_export(export, tokenizer, out_dir / MODEL_DIR, out_dir / ADAPTER_DIR)
    elif dist.rank == 0 and out_dir is not None and sd is not None:
        lm = policy.module.lm if hasattr(policy, "module") else policy.lm
        lm.save_pretrained(out_dir / MODEL_DIR, state_dict={k.removeprefix("lm."): v for k, v in sd.items()})
        tokenizer.save_pretrained(out_dir / MODEL_DIR)
    return WorkerResult(final, history, best_epoch)


def write_results(out_dir: Path, cfg: RunConfig, prepared: Prepared, result: WorkerResult, extra: dict[str, Any] | None = None) -> Path:
    """``results.json``: the resolved config, per-epoch and final metrics, where the model is."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "config": to_dict(cfg),
        "method": cfg.method.resolved(),
        "method_label": cfg.method.label,
        "final": result.metrics,
        "epochs": result.history,
        "best_epoch": result.best_epoch,
        "model_dir": str(out_dir / MODEL_DIR),
        "adapter_dir": str(out_dir / ADAPTER_DIR) if cfg.model.lora is not None else None,
        "prepared": str(prepared.root),
        "reference_max_change": result.reference_max_change,
        "per_item": result.per_item,
        "timeline": result.timeline,
        "attacks": result.attacks,
        **(extra or {}),
    }
    path = out_dir / RESULTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=float))
    tmp.replace(path)
    return path


def run_local(cfg: RunConfig, out_dir: str | Path, *, report: Callable[[dict[str, float], int], None] | None = None,
              log: Callable[[str], None] = print) -> WorkerResult:
    """prepare (cached) -> unlearn -> evaluate, in this process, writing ``out_dir/results.json``."""
    from unlearn.train.prepare import prepare

    out = Path(out_dir)
    prepared = prepare(cfg, log=log)
    device = torch.device("cuda" if cfg.scaling.use_gpu else "cpu")
    result = unlearn_worker(cfg, prepared, strategy=Strategy(device), dist=Dist(device=device),
                            reporter=CallbackReporter(report), out_dir=out, log=log)
    write_results(out, cfg, prepared, result, {"device": str(device)})
    return result
