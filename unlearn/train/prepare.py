"""Prepare: a target model fine-tuned on forget + retain data, a retain (oracle) model on the retain data
only (the TOFU and MUSE protocols), and the retain model's reference statistics, which the benchmark's
relative metrics need (TOFU: forget truth ratios for forget quality; MUSE: the privleak AUC).

Results are cached on disk under a hash of everything that defines them, so a sweep prepares once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearn.config import to_dict
from unlearn.data.batching import lm_batches
from unlearn.data.formatting import EncodedQA
from unlearn.errors import ConfigError
from unlearn.models import build_tiny, check_model_source, load_model, load_tokenizer, save_model, train_tokenizer
from unlearn.models.lora import check_lora_model
from unlearn.train.config import RunConfig
from unlearn.train.loop import finetune_epoch, make_optimizer
from unlearn.train.module import CausalLMWithLoss

PREPARE_VERSION = 2  # bump when the preparation procedure changes: old caches are then not reused
Log = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """Paths of a prepared setup."""

    root: Path
    target_dir: Path
    reference: dict[str, Any]  # the retain model's statistics (the benchmark's ``reference``)
    trained: bool  # False when everything came from the cache


def prepare_key(cfg: RunConfig) -> str:
    """Hash of what defines the prepared models (not the unlearning method or optimiser)."""
    # the key-token annotations only concern unlearning
    data = {k: v for k, v in to_dict(cfg.data).items() if k != "importance_path"}
    # LoRA concerns unlearning only; left out (not None-valued), keys of setups prepared before it stay valid
    model = {k: v for k, v in to_dict(cfg.model).items() if k != "lora"}
    what = {"data": data, "model": model, "prepare": to_dict(cfg.prepare),
            "version": PREPARE_VERSION}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def check_prepare_inputs(cfg: RunConfig, data: Any) -> None:
    """Everything that can be checked before training: model source, retain statistics, the attacks' needs of
    the data (a relearning fraction that leaves a side empty) (``data``: the benchmark's loaded rows)."""
    from unlearn.attacks.evaluate import check_attacks

    check_attacks(cfg.benchmark, data, cfg.eval)
    check_model_source(cfg.model)
    if cfg.model.lora is not None:  # a target module that matches nothing: now, not after preparing
        check_lora_model(cfg.model.lora, cfg.model.name, vocab_size=cfg.model.vocab_size,
                         trust_remote_code=cfg.model.trust_remote_code)
    if cfg.model.is_preset or cfg.prepare.finetune or not cfg.benchmark.needs_reference:
        if cfg.prepare.retain_stats and not cfg.benchmark.needs_reference:
            cfg.benchmark.reference_from_file(cfg.prepare.retain_stats)  # the benchmark says why it does not apply
        return
    if cfg.prepare.retain_stats:
        cfg.benchmark.check_reference(cfg.benchmark.reference_from_file(cfg.prepare.retain_stats), data)
    elif cfg.prepare.retain_model:
        check_model_source(type(cfg.model)(name=cfg.prepare.retain_model))
    else:
        raise ConfigError(
            f"model {cfg.model.name!r} is used as the target as it is (prepare.finetune=false); the benchmark's "
            f"metrics need the retain model's statistics: set prepare.retain_stats ({cfg.benchmark.reference_doc}) "
            "or prepare.retain_model, or set prepare.finetune=true"
        )


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # concurrent trials prepare once
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepare(cfg: RunConfig, *, log: Log = print, data: Any = None, announce_cached: bool = True) -> Prepared:
    """Prepare (or reuse from the cache) the target model and the retain statistics.

    ``announce_cached=False``: no log line when the cache has it (a sweep's trials, whose driver prepared
    and announced it once).
    """
    data = data if data is not None else cfg.benchmark.load(cfg.data)
    check_prepare_inputs(cfg, data)
    if announce_cached:  # what the run trains on and measures (a sweep's driver says it once, not each trial)
        for line in cfg.benchmark.data_notes(data):
            log(f"data: {line}")
    root = cfg.cache_root / "prepared" / prepare_key(cfg)
    with _locked(root.parent / f"{root.name}.lock"):
        done = root / "prepared.json"
        if done.is_file():
            info = json.loads(done.read_text())
            if announce_cached:
                log(f"prepare: cached at {root}")
            return Prepared(root, Path(info["target_dir"]), info["reference"], trained=False)
        t0 = time.perf_counter()
        target_dir, reference, metrics = _prepare_fresh(cfg, data, root, log)
        info = {"target_dir": str(target_dir), "reference": reference, "metrics": metrics,
                "seconds": time.perf_counter() - t0, "config": to_dict(cfg)}
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(done)  # the marker appears only once everything is written
        log(f"prepare: done in {info['seconds']:.0f} s -> {root}")
        return Prepared(root, target_dir, reference, trained=True)


def target_metrics(cfg: RunConfig, prepared: Prepared, needed: Sequence[str] = ()) -> dict[str, float]:
    """The prepared target model's evaluation, from the cache; evaluated again with ``cfg.eval`` when it
    lacks a ``needed`` metric (the cache is keyed without the evaluation settings: a setup prepared
    without ROUGE has no model utility)."""
    info = json.loads((prepared.root / "prepared.json").read_text())
    metrics = dict(info.get("metrics", {}).get("target", {}))
    if all(m in metrics for m in needed):
        return metrics
    bench = cfg.benchmark
    tokenizer = load_tokenizer(prepared.target_dir, trust_remote_code=cfg.model.trust_remote_code)
    model = load_model(prepared.target_dir, cfg.model.torch_dtype, trust_remote_code=cfg.model.trust_remote_code)
    model.to(_device()).eval()
    return bench.evaluate(model, tokenizer, bench.load(cfg.data), cfg.data, cfg.eval, prepared.reference).metrics


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def preset_model(cfg: RunConfig, tokenizer):
    """A tiny preset's freshly initialised model for ``tokenizer`` (seeded by ``prepare.seed``): what the target
    and the retain model are fine-tuned from."""
    return build_tiny(cfg.model, len(tokenizer), seed=cfg.prepare.seed, pad_id=tokenizer.pad_token_id,
                      bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id)


def _prepare_fresh(cfg: RunConfig, data: Any, root: Path, log: Log):
    device = _device()
    bench = cfg.benchmark
    if cfg.model.is_preset:
        tokenizer = train_tokenizer(bench.tokenizer_corpus(data, cfg.data), cfg.model.vocab_size)
        make = lambda: preset_model(cfg, tokenizer)
    else:
        tokenizer = load_tokenizer(cfg.model.name, trust_remote_code=cfg.model.trust_remote_code)
        make = lambda: load_model(cfg.model.name, cfg.model.torch_dtype, trust_remote_code=cfg.model.trust_remote_code)
    metrics: dict[str, dict[str, float]] = {}
    if cfg.model.is_preset or cfg.prepare.finetune:
        examples = bench.finetune_examples(tokenizer, data, cfg.data, "target")
        target = finetune(make(), examples, cfg, "target", log, tokenizer.pad_token_id, device)
        target_dir = save_model(target, tokenizer, root / "target")
        examples = bench.finetune_examples(tokenizer, data, cfg.data, "retain")
        retain = finetune(make(), examples, cfg, "retain", log, tokenizer.pad_token_id, device)
        save_model(retain, tokenizer, root / "retain")
    else:
        target_dir = Path(cfg.model.name)
        retain = load_model(cfg.prepare.retain_model, cfg.model.torch_dtype).to(device) if cfg.prepare.retain_model else None
        target = None
    if retain is not None:
        # The retain model against its own statistics: one evaluation gives both.
        out = bench.evaluate(retain, tokenizer, data, cfg.data, cfg.eval, "self")
        reference = out.reference
        metrics["retain"] = out.metrics
    elif cfg.prepare.retain_stats:
        reference = bench.reference_from_file(cfg.prepare.retain_stats)
    else:  # a benchmark of absolute metrics (needs_reference False): nothing to compare with
        reference = {}
    bench.check_reference(reference, data)
    bench.save_reference(root / "retain_stats.json", reference)
    if target is not None:
        metrics["target"] = bench.evaluate(target, tokenizer, data, cfg.data, cfg.eval, reference).metrics
        log("prepare: target " + _summary(bench, metrics["target"]) + "; retain " + _summary(bench, metrics.get("retain", {})))
    return target_dir, reference, metrics


def _summary(bench, metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={metrics[k]:.3g}" for k in bench.metrics.shown[:3] if k in metrics)


def finetune(model, examples: Sequence[EncodedQA], cfg: RunConfig, name: str, log: Log, pad_id: int,
             device: torch.device | None = None):
    """``model`` fine-tuned on ``examples`` with prepare's schedule (``cfg.prepare``: epochs, batch, lr with a
    10 % warm-up, seeded order), in eval mode, on ``device`` (None: prepare's, a GPU when there is one); how
    the target and the retain model are made."""
    device = device if device is not None else _device()
    model.to(device)
    wrapped = CausalLMWithLoss(model)
    p = cfg.prepare
    steps = p.epochs * len(lm_batches(len(examples), p.batch_size, seed=p.seed, epoch=0))
    from unlearn.train.config import OptimConfig

    opt, sched = make_optimizer(wrapped, OptimConfig(lr=p.lr, weight_decay=p.weight_decay, warmup_steps=steps // 10),
                                max(1, steps))
    t0 = time.perf_counter()
    for epoch in range(p.epochs):
        order = lm_batches(len(examples), p.batch_size, seed=p.seed, epoch=epoch)
        loss = finetune_epoch(wrapped, examples, order, opt, sched, pad_id, device)
        if epoch == p.epochs - 1 or (epoch + 1) % 10 == 0:
            log(f"prepare[{name}]: epoch {epoch + 1}/{p.epochs} loss {loss:.4f} ({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return model
