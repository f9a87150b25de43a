"""A printable catalogue of every registered loss component with its parameters and defaults."""

from __future__ import annotations

import dataclasses

from unlearn.losses.method import COMPONENTS


def describe_components() -> list[dict]:
    """One dict per registered component: kind, name, description, {param: default}."""
    rows = []
    for kind, registry in COMPONENTS.items():
        for entry in registry:
            params = {f.name: f.default for f in dataclasses.fields(entry.params)} if entry.params else {}
            rows.append({"kind": kind, "name": entry.name, "doc": entry.doc, "params": params})
    return rows


def format_catalog() -> str:
    """Human-readable listing, grouped by component kind."""
    lines = ["A method = weighting x granularity x sampling x objective x retain (method.<field> in a run config):",
             "loss = gamma * forget objective + alpha * retain term.", ""]
    current = None
    for row in describe_components():
        if row["kind"] != current:
            current = row["kind"]
            lines.append(f"{current}:")
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "-"
        lines.append(f"  {row['name']:<10} {params:<38} {row['doc']}")
    lines += [
        "",
        "retain: left unset, the objective's own (ga: none; gd, npo, simnpo: nll; kl: kl); gd and kl are the names",
        "  of ga + nll and ga + kl. NPO + KL (the reference's npo_KL): method.objective=npo method.retain=kl.",
        "importance=true: key-phrase answer tokens weighted s, the others 1 - s (s=1.0: only key tokens, the",
        "  reference's att_ variants); combines with any weighting, granularity, sampling and objective.",
        "reduction: mean (over answer tokens; over sequences for instance / batch granularity and npo / simnpo;",
        "  over attended positions for the kl retain term) or sum (no division: the reference's hard sampling).",
        "simnpo: margin delta = npo_beta * open-unlearning's / the SatImp reference's margin (their gamma / delta).",
        "bottomk: keeps CE below the k-quantile; the reference's bottom-k parameter h is 1 - k.",
        "",
        "e.g. SatImp-GD: method.weighting=satimp method.objective=gd method.beta1=5 method.beta2=0.1 method.alpha=1",
    ]
    return "\n".join(lines)
