"""The house's floors: module-level imports form no loop, and every arrow points down (bench -> sweeps -> unlearn)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("unlearn", "sweeps", "bench")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (REPO / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports at its top level (not inside functions, not for type checking)."""
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            targets = [m for m in subs if m in modules] + ([node.module] if any(m not in modules for m in subs) else [])
        else:
            continue
        for m in targets:
            while m and m not in modules:
                m = m.rpartition(".")[0]
            if m and m != name:
                out.add(m)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {n: _imports(n, p, modules) for n, p in modules.items()}


def test_module_imports_form_no_loop():
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                raise AssertionError("import loop: " + " -> ".join(loop))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_every_arrow_points_down():
    """bench -> sweeps -> unlearn: the library never imports the sweep layer, nor the sweep layer bench."""
    above = {"unlearn": ("sweeps", "bench"), "sweeps": ("bench",), "bench": ()}
    graph = _graph()
    bad = {n: sorted(d for d in deps if d.split(".")[0] in above[n.split(".")[0]]) for n, deps in graph.items()}
    assert not {n: d for n, d in bad.items() if d}


def test_the_loop_check_sees_a_loop(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other are reported."""
    graph = {"a": {"b"}, "b": {"a"}}
    monkeypatch.setattr(__import__(__name__, fromlist=["_graph"]), "_graph", lambda: graph)
    try:
        test_module_imports_form_no_loop()
    except AssertionError as e:
        assert "a -> b -> a" in str(e)
    else:
        raise AssertionError("a loop was not found")
