"""The shape of the package (docs/ARCHITECTURE.md): imports run one way, no cycles (function-level
imports included), no private name imported across modules, short functions, a thin runner and
command line, and a store that imports no stage. Read from the source with ``ast``: nothing is run."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

import pytest

PKG = Path(__file__).resolve().parents[1] / "batchser"
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def is_package(mods: Dict[str, Path], name: str) -> bool:
    return mods[name].name == "__init__.py"


def imports_of(name: str, mods: Dict[str, Path]) -> List[tuple]:
    """(imported module, imported names) for every import of batchser code in module ``name``,
    wherever it stands (module level or inside a function)."""
    tree = ast.parse(mods[name].read_text(encoding="utf-8"))
    base = name if is_package(mods, name) else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "batchser":
                    out.append((a.name, []))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "batchser":
                continue
            names = [a.name for a in node.names]
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]
            rest = [n for n in names if f"{target}.{n}" not in mods]
            for s in subs:
                out.append((s, []))
            if rest:
                out.append((target, rest))
    return out


def graph() -> Dict[str, Set[str]]:
    mods = modules()
    g: Dict[str, Set[str]] = {m: set() for m in mods}
    for m in mods:
        for target, _ in imports_of(m, mods):
            while target not in mods and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in mods and target != m:
                g[m].add(target)
    return g


def cycles(g: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on: Set[str] = set()
    out: List[List[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle_and_a_package_edge():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    mods = modules()
    assert "batchser.store.layout" in graph()["batchser.store.writer"]  # `from . import layout`


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles (function-level imports included): " + "; ".join(" <-> ".join(c) for c in found)


def test_no_private_name_imported_across_modules():
    mods = modules()
    bad = [f"{m} imports {n} from {t}" for m in mods for t, names in imports_of(m, mods) for n in names
           if n.startswith("_") and not n.startswith("__") and t != m]
    assert not bad, "\n".join(bad)


def test_no_function_over_80_lines():
    long = []
    for m, p in modules().items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{m}.{node.name}: {n} lines")
    assert not long, "\n".join(long)


def test_runner_and_command_line_are_thin():
    lines = lambda p: len(p.read_text(encoding="utf-8").splitlines())  # noqa: E731
    assert lines(PKG / "runner.py") <= 300
    assert not (PKG / "cli.py").exists() or lines(PKG / "cli.py") < 300
    for p in (PKG / "cli").glob("*.py") if (PKG / "cli").is_dir() else []:
        assert lines(p) < 400, f"{p.name}: {lines(p)} lines"


STAGE_MODULES = ("batchser.scoring", "batchser.heads", "batchser.prosody", "batchser.egemaps", "batchser.asr",
                 "batchser.models", "batchser.timeline", "batchser.worker", "batchser.pipeline", "batchser.runner")


@pytest.mark.parametrize("pkg", ["batchser.store"])
def test_the_store_imports_no_stage(pkg):
    g = graph()
    bad = [f"{m} -> {t}" for m, ts in g.items() if m == pkg or m.startswith(pkg + ".")
           for t in ts if t.startswith(STAGE_MODULES)]
    assert not bad, "\n".join(bad)
