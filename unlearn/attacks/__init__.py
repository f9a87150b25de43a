"""Attacks on an unlearned model, evaluated as metrics: is the knowledge forgotten, or only hidden?

- quantization (``eval.quant``; Zhang et al., ICLR 2025, arXiv 2410.16454): the model's Linear weights
  quantized to 4 bits (FP4 by default) and 8 bits (LLM.int8), then evaluated again;
- relearning (``eval.relearn``; Hu et al., ICLR 2025, arXiv 2406.13356): a few fine-tuning steps on part
  of the forget set, then an evaluation on the rest.

Each attack's metrics are the benchmark's own with a prefix (``q4_``, ``q8_``, ``relearn_``): the run's
metric table is the benchmark's followed by prefixed copies (``metric_table``), so objectives,
constraints, records and reports take them like any other metric and no code here names one.
"""

from __future__ import annotations

from unlearn.attacks.config import QuantConfig, RelearnConfig
from unlearn.benchmarks.base import MetricTable


def attack_prefixes(quant: QuantConfig | None, relearn: RelearnConfig | None) -> tuple[str, ...]:
    """The metric prefixes the configured attacks report, in evaluation order."""
    out = tuple(quant.prefix(b) for b in quant.bits) if quant is not None else ()
    return out + ((RelearnConfig.prefix,) if relearn is not None else ())


def attack_tables(table: MetricTable, quant: QuantConfig | None, relearn: RelearnConfig | None
                  ) -> dict[str, MetricTable]:
    """Each configured attack's metric table by prefix: ``table`` prefixed, its utility metrics only
    where the attack's ``utility`` is set."""
    out = {quant.prefix(b): table.prefixed(quant.prefix(b), utility=quant.utility) for b in quant.bits} \
        if quant is not None else {}
    if relearn is not None:
        out[relearn.prefix] = table.prefixed(relearn.prefix, utility=relearn.utility)
    return out


def metric_table(table: MetricTable, quant: QuantConfig | None, relearn: RelearnConfig | None) -> MetricTable:
    """``table`` followed by each configured attack's table (``attack_tables``)."""
    return table.extended(*attack_tables(table, quant, relearn).values())


__all__ = ["QuantConfig", "RelearnConfig", "attack_prefixes", "attack_tables", "metric_table"]
