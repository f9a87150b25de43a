"""A comparison spec: the YAML schema, parsed and validated into a frozen ``CompareSpec`` whose methods are
ordinary, fully validated ``SearchSpace`` objects (resolved once, here).

::

    name: demo
    description: ...
    base: {...}                    # a partial RunConfig shared by every method (benchmark, model, optim...)
    objectives: [{metric: forget_w1, direction: minimize}]   # one objective, shared
    constraints: [...]             # shared
    budget: {num_samples: 6, max_concurrent: 2, seed: 0, replicates: 1, confirm: {top: 2, runs: 6},
             methods_at_once: 2}   # optional: methods' sweeps side by side (default: as many as the CPUs hold)
    methods:
      satimp:                      # a method block: base.method merged with `method`, its own parameters
        method: {weighting: satimp, objective: gd}
        parameters: {method.beta1: {distribution: uniform, low: 1, high: 10}}
        default: {method.beta1: 5.0}   # its usual (untuned) setting: evaluated first, the leaderboard's untuned row
      baselines:
        space: baselines           # or a search space (file or shipped name): its base under the spec's base,
                                   # its parameters and initial points; the spec's objective, constraints and
                                   # budget replace its own

Every method gets the same budget (``budget``: search trials, replicates and the confirmation stage), so the
same number of runs; a method block that names a budget of its own is refused unless it is the shared one.
The confirmation seeds are a function of ``budget.seed`` and the run's index only (``confirm_seed``), so
every method's confirmed best runs on the same fresh seeds: the leaderboard's differences are paired.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sweeps.space import SearchSpace, load_space, space_from_dict
from sweeps.space.parse import _absolute_data_paths, resolve_space_path
from unlearn.config import load_yaml
from unlearn.errors import ConfigError, unknown_name

TOP_KEYS = ("name", "description", "base", "objectives", "constraints", "budget", "methods", "hypotheses")
METHOD_KEYS = ("method", "parameters", "default", "space", "base", "budget")
MAX_METHODS = 16


@dataclass(frozen=True)
class MethodEntry:
    """One compared method: its name, its validated search space and its untuned setting (None: none)."""

    name: str
    space: SearchSpace
    default: dict[str, Any] | None = None


@dataclass(frozen=True)
class Hypothesis:
    """A claim the comparison tests. ``kind``: ``better`` (method ``a`` beats ``b`` on the objective at the
    confirmed optima, paired over the common confirmation seeds) or ``weights`` (method ``a``'s token weights
    rise with the token's likelihood, ``order: increasing``, or fall, ``decreasing``)."""

    kind: str
    a: str
    b: str | None = None
    order: str | None = None

    def describe(self) -> str:
        if self.kind == "better":
            return f"{self.a} beats {self.b}"
        return f"{self.a}'s weights {'rise' if self.order == 'increasing' else 'fall'} with the token's likelihood"


@dataclass(frozen=True)
class CompareSpec:
    """A validated comparison: every method's space shares the objective, constraints and budget."""

    name: str
    description: str
    methods: tuple[MethodEntry, ...]
    hypotheses: tuple[Hypothesis, ...] = ()
    methods_at_once: int | None = None  # budget.methods_at_once; None: as many as the cluster's CPUs hold
    raw: dict[str, Any] = field(repr=False, default_factory=dict)  # the spec's plain data (written to DIR)
    source: str = ""

    @property
    def metric(self) -> str:
        return self.methods[0].space.metric_names[0]

    @property
    def direction(self) -> str:
        return self.methods[0].space.directions[0]

    def method(self, name: str) -> MethodEntry:
        for m in self.methods:
            if m.name == name:
                return m
        raise unknown_name("method", name, [m.name for m in self.methods], f"comparison {self.name!r}")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.raw, sort_keys=False)


def load_compare(path: str | Path) -> CompareSpec:
    """Read and validate a comparison spec (a file, or the name of one in ``search_spaces/compare/``)."""
    p = Path(path)
    if not p.is_file():
        shipped = Path(resolve_space_path("satimp")).parent / "compare" / f"{p.stem}.yaml"
        if not shipped.is_file():
            raise ConfigError(f"comparison spec {str(path)!r} not found; valid: a YAML file, or a shipped spec: "
                              f"{', '.join(sorted(q.stem for q in shipped.parent.glob('*.yaml')))}")
        p = shipped
    return compare_from_dict(load_yaml(p), source=str(p))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def compare_from_dict(data: Mapping[str, Any], *, source: str = "") -> CompareSpec:
    """Validate a spec's plain data; every error names the file, the method and the bad value."""
    where = f"{source}: " if source else ""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}top level must be a mapping of {', '.join(TOP_KEYS)}")
    for k in data:
        if k not in TOP_KEYS:
            raise unknown_name("key", k, TOP_KEYS, f"{where}the comparison spec's top level")
    for k in ("name", "objectives", "methods"):
        if data.get(k) is None:
            raise ConfigError(f"{where}{k}: missing; required keys: name, objectives, methods")
    methods = data["methods"]
    if not isinstance(methods, Mapping) or not 2 <= len(methods) <= MAX_METHODS:
        raise ConfigError(f"{where}methods: got {methods!r}; valid: a mapping of 2 to {MAX_METHODS} method names to "
                          "method blocks (method, parameters, default) or {space: FILE}")
    objectives = data["objectives"]
    if not isinstance(objectives, list) or len(objectives) != 1:
        raise ConfigError(f"{where}objectives: got {objectives!r}; valid: exactly one objective (a leaderboard "
                          "ranks by one number), e.g. [{metric: forget_w1, direction: minimize}]")
    budget, at_once = _split_budget(data.get("budget") or {}, where)
    shared = {"objectives": objectives, "constraints": data.get("constraints") or [], "budget": budget}
    entries = tuple(_method(str(name), block, data, shared, where) for name, block in methods.items())
    _check_comparable(entries, where)
    hypotheses = _hypotheses(data.get("hypotheses") or [], [e.name for e in entries], where)
    return CompareSpec(str(data["name"]), str(data.get("description") or ""), entries, hypotheses, at_once,
                       raw=copy.deepcopy(dict(data)), source=source)


def _split_budget(budget: Any, where: str) -> tuple[Any, int | None]:
    """The methods' shared sweep budget, and ``methods_at_once`` (the comparison's own: how many methods'
    sweeps run side by side; None: as many as the cluster holds, ``sweeps.compare.pool.methods_at_once``)."""
    if not isinstance(budget, Mapping) or "methods_at_once" not in budget:
        return budget, None
    at_once = budget["methods_at_once"]
    if isinstance(at_once, bool) or not isinstance(at_once, int) or at_once < 1:
        raise ConfigError(f"{where}budget.methods_at_once: got {at_once!r}; valid: a whole number >= 1 (how many "
                          "methods' sweeps run side by side, each with budget.max_concurrent trials), or leave it "
                          "out: as many as the cluster's CPUs hold")
    return {k: v for k, v in budget.items() if k != "methods_at_once"}, at_once


def _method(name: str, block: Any, data: Mapping[str, Any], shared: Mapping[str, Any], where: str) -> MethodEntry:
    at = f"{where}methods.{name}"
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"{at}: a method's name becomes a directory; valid: letters, digits, '-' and '_'")
    if not isinstance(block, Mapping):
        raise ConfigError(f"{at}: got {block!r}; valid: a mapping of {', '.join(METHOD_KEYS)}")
    for k in block:
        if k not in METHOD_KEYS:
            raise unknown_name("key", k, METHOD_KEYS, at)
    if block.get("budget") is not None and block["budget"] != shared["budget"]:
        raise ConfigError(f"{at}.budget: {block['budget']!r} differs from the shared budget {shared['budget']!r}; "
                          "every method of a comparison gets the same budget (the same number of runs, replicates "
                          "included); valid: remove it, or set it in the top-level budget")
    if block.get("space") is not None:
        if any(k in block for k in ("method", "parameters")):
            raise ConfigError(f"{at}: names both a space and method / parameters; valid: one or the other")
        own = load_space(block["space"]).to_dict()
        base = _merge(_merge(data.get("base") or {}, own["base"]), block.get("base") or {})
        params, points = own["parameters"], own["initial_points"]
    else:
        if block.get("parameters") is None:
            raise ConfigError(f"{at}.parameters: missing; valid: the method's tunable parameters, e.g. "
                              "{method.beta1: {distribution: uniform, low: 1.0, high: 10.0}}")
        base = _merge(data.get("base") or {}, {"method": block.get("method") or {}, **(block.get("base") or {})})
        params, points = block["parameters"], []
    default = block.get("default")
    if default is not None:
        points = [dict(default), *[p for p in points if p != default]]
    space_data = {"name": f"{data['name']}-{name}", "description": f"{name} in comparison {data['name']}",
                  "base": base, "parameters": params, "initial_points": points, **copy.deepcopy(dict(shared))}
    try:
        space = space_from_dict(_absolute_data_paths(space_data), source=at)
    except ConfigError as e:
        raise type(e)(str(e) if str(e).startswith(at) else f"{at}: {e}") from None
    return MethodEntry(name, space, dict(default) if default is not None else None)


def _check_comparable(entries: tuple[MethodEntry, ...], where: str) -> None:
    """Methods share an objective only on one benchmark and one setup of it (data, model)."""
    first = entries[0]
    for e in entries[1:]:
        for section in ("data", "model", "prepare"):  # one benchmark, one target model (prepare), one utility
            a, b = getattr(first.space.base_config, section), getattr(e.space.base_config, section)
            if a != b:
                raise ConfigError(f"{where}methods.{e.name}: its {section} ({b}) differs from methods.{first.name}'s "
                                  f"({a}); methods can share an objective only on the same benchmark and model; "
                                  f"valid: give {section} in the spec's base only")
        if e.space.budget != first.space.budget:  # a referenced space cannot change it, but say so if it did
            raise ConfigError(f"{where}methods.{e.name}: budget {e.space.budget} differs from methods.{first.name}'s "
                              f"{first.space.budget}; valid: one budget for every method")


def _hypotheses(raw: Any, names: list[str], where: str) -> tuple[Hypothesis, ...]:
    """``- {better: A, than: B}`` or ``- {weights: A, order: increasing | decreasing}``, methods by name."""
    valid = "a list of {better: METHOD, than: METHOD} or {weights: METHOD, order: increasing | decreasing}"
    if not isinstance(raw, list):
        raise ConfigError(f"{where}hypotheses: got {raw!r}; valid: {valid}")
    out = []
    for i, h in enumerate(raw):
        at = f"{where}hypotheses[{i}]"
        if isinstance(h, Mapping) and set(h) == {"better", "than"}:
            out.append(Hypothesis("better", str(h["better"]), str(h["than"])))
        elif isinstance(h, Mapping) and set(h) == {"weights", "order"} and h["order"] in ("increasing", "decreasing"):
            out.append(Hypothesis("weights", str(h["weights"]), order=str(h["order"])))
        else:
            raise ConfigError(f"{at}: got {h!r}; valid: {valid}")
        for name in (out[-1].a, out[-1].b):
            if name is not None and name not in names:
                raise unknown_name("method", name, names, at)
    return tuple(out)
