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
    lines = ["A method = weighting x granularity x sampling x objective (method.<field> in a run config).", ""]
    current = None
    for row in describe_components():
        if row["kind"] != current:
            current = row["kind"]
            lines.append(f"{current}:")
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items()) or "-"
        lines.append(f"  {row['name']:<10} {params:<38} {row['doc']}")
    lines += ["", "e.g. SatImp-GD: method.weighting=satimp method.objective=gd method.beta1=5 method.beta2=0.1 method.alpha=1"]
    return "\n".join(lines)
