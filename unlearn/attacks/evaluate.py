"""The attacks' evaluations of an unlearned model: the benchmark's own evaluation of each attacked copy,
its metric names prefixed (``q4_forget_quality``, ``relearn_forget_prob``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from unlearn.attacks import attack_tables
from unlearn.attacks.config import QuantConfig, RelearnConfig
from unlearn.attacks.quantize import quantized_copy
from unlearn.attacks.relearn import RelearnSplit, relearn_split, relearned_copy
from unlearn.benchmarks.base import Benchmark, EvalOutput
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.errors import ConfigError, NonFiniteScoresError
from unlearn.metrics.generation import pad_id


@dataclass(frozen=True)
class AttackOutput:
    """The attacks' metrics (prefixed), the relearning split (its record), and each attack's seconds."""

    metrics: dict[str, float]
    relearn_split: RelearnSplit | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def check_attacks(bench: Benchmark, data: Any, eval_cfg: EvalConfig) -> RelearnSplit | None:
    """What the attacks need of the loaded data, checked before any model loads: the relearning split, with
    the rows each evaluation set is scored on where the benchmark restricts them (``RelearnSplit.scored``)."""
    if eval_cfg.relearn is None:
        return None
    split = relearn_split(bench.forget_count(data), eval_cfg.relearn, bench.relearn_min_heldout, bench.relearn_unit)
    return replace(split, scored=bench.relearn_scored(data, split, eval_cfg.relearn))


def quantized(model: nn.Module, bits: int, cfg: QuantConfig) -> nn.Module:
    """``model`` with its Linear weights quantized to ``bits`` by ``cfg.backend``."""
    if cfg.backend == "bitsandbytes":
        from unlearn.attacks.bnb import bnb_quantized

        return bnb_quantized(model, bits, cfg.code)
    return quantized_copy(model, bits, cfg.code, cfg.blocksize)


def evaluate_attacks(model: nn.Module, tokenizer, bench: Benchmark, data: Any, data_cfg: DataConfig,
                     eval_cfg: EvalConfig, reference: Mapping[str, Any] | None, split: RelearnSplit | None
                     ) -> AttackOutput:
    """Every configured attack on ``model`` (left unchanged), evaluated by ``bench``; ``split``: the
    relearning split ``check_attacks`` gave for ``data``."""
    tables = attack_tables(bench.metrics, eval_cfg.quant, eval_cfg.relearn)
    metrics: dict[str, float] = {}
    seconds: dict[str, float] = {}
    q = eval_cfg.quant
    for bits in q.bits if q is not None else ():
        t0 = time.perf_counter()
        out = bench.evaluate(quantized(model, bits, q), tokenizer, data, data_cfg, eval_cfg, reference,
                             utility=q.utility)
        metrics.update(tables[q.prefix(bits)].order({q.prefix(bits) + k: v for k, v in out.metrics.items()}))
        seconds[q.prefix(bits).rstrip("_")] = time.perf_counter() - t0
    r = eval_cfg.relearn
    if r is not None and split is not None:
        t0 = time.perf_counter()
        out = _relearned_eval(model, tokenizer, bench, data, data_cfg, eval_cfg, reference, r, split)
        metrics.update(tables[r.prefix].order({r.prefix + k: v for k, v in out.metrics.items()}))
        seconds["relearn"] = time.perf_counter() - t0
    return AttackOutput(metrics, split, seconds)


def _relearned_eval(model, tokenizer, bench: Benchmark, data: Any, data_cfg: DataConfig, eval_cfg: EvalConfig,
                    reference: Mapping[str, Any] | None, cfg: RelearnConfig, split: RelearnSplit) -> EvalOutput:
    examples, heldout, heldout_ref = bench.relearn_sets(tokenizer, data, data_cfg, split, reference)
    relearned = relearned_copy(model, examples, cfg, pad_id(tokenizer))
    try:
        return bench.evaluate(relearned, tokenizer, heldout, data_cfg, eval_cfg, heldout_ref, utility=cfg.utility)
    except NonFiniteScoresError as e:  # the attack's own divergence, not the unlearning run's
        raise ConfigError(f"eval.relearn.lr={cfg.lr}: the relearned model's scores are not finite ({e}); valid: a "
                          "lower eval.relearn.lr") from e


def attack_record(out: AttackOutput) -> dict[str, Any]:
    """What ``results.json`` keeps of the attacks besides their metrics: the relearning split (indices of the
    benchmark's forget units, what they are, and the rows each evaluation set was scored on where the
    benchmark restricts them) and each attack's seconds."""
    doc: dict[str, Any] = {"seconds": dict(out.seconds)}
    s = out.relearn_split
    if s is not None:
        doc["relearn_split"] = {"unit": s.unit, "relearn": list(s.relearn), "heldout": list(s.heldout),
                                **({"scored": {k: list(v) for k, v in s.scored.items()}} if s.scored else {})}
    return doc
