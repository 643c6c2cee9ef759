"""The library's shape: a one-way stack of layers, no import cycles, no over-long functions.

The layers and the cycle rule are import-linter contracts in ``pyproject.toml`` (``make lint`` runs them);
these tests run them too, and check the cycle rule again with grimp directly, at every depth of the
package tree, so that a cycle shows up in the fast suite with the imports that make it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]

#: Functions longer than this many lines (``def`` to last line, docstring included) are split into steps.
MAX_FUNCTION_LINES = 120

# Exceptions (none now). An entry must name a real offender (`test_allow_lists_name_only_what_still_offends`),
# so a list can only shrink once something is fixed.
#: (path, function name) of functions allowed over `MAX_FUNCTION_LINES`.
LONG_FUNCTIONS_ALLOWED: set[tuple[str, str]] = set()
#: (importer, imported) module pairs left out of the cycle check (the same as the
#: ``ignore_imports`` of the ``no-cycles`` contract in pyproject.toml).
CYCLE_IMPORTS_ALLOWED: set[tuple[str, str]] = set()


def _lint_imports() -> str:
    exe = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    assert exe, "lint-imports is not installed (the dev extra: pip install -e '.[dev]')"
    return exe


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    """The import graph of pipelines/ and flows/, function-level and ``TYPE_CHECKING`` imports included."""
    return grimp.build_graph("pipelines", "flows", include_external_packages=False, cache_dir=None)


def test_import_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([_lint_imports(), "--no-cache", "--no-logo"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 kept, 0 broken" in run.stdout, run.stdout


def test_the_contracts_cover_every_pipelines_module():
    contracts = _contracts()
    assert set(contracts) == {"layers", "no-orchestration-in-pipelines", "no-cycles"}
    layers = contracts["layers"]
    # exhaustive: a new top-level module or subpackage of pipelines/ fails lint until it is given a layer
    assert layers["containers"] == ["pipelines"] and layers["exhaustive"] is True
    named = {name.strip().strip("()") for layer in layers["layers"] for name in layer.replace(":", "|").split("|")}
    on_disk = {p.stem for p in (REPO / "pipelines").glob("*.py") if p.stem != "__init__"}
    on_disk |= {p.parent.name for p in (REPO / "pipelines").glob("*/__init__.py")}
    assert on_disk <= named, f"not in the layers contract: {sorted(on_disk - named)}"
    forbidden = contracts["no-orchestration-in-pipelines"]
    assert forbidden["source_modules"] == ["pipelines"] and set(forbidden["forbidden_modules"]) == {"flows", "prefect"}
    ignored = {tuple(s.strip() for s in line.split("->")) for line in contracts["no-cycles"].get("ignore_imports", [])}
    assert ignored == CYCLE_IMPORTS_ALLOWED


def _unit(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                scc = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    scc.append(member)
                    if member == node:
                        break
                if len(scc) > 1:
                    out.append(sorted(scc))
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_pipelines_units_at_any_depth(graph):
    """Units at depth 2 are the top-level modules and subpackages of pipelines/ (``pipelines.catalog``);
    at depth 3 the modules of those packages (``pipelines.catalog.store``), and so on down."""
    imports = [(m, i) for m in graph.modules if m.startswith("pipelines.")
               for i in graph.find_modules_directly_imported_by(m)
               if i.startswith("pipelines.") and (m, i) not in CYCLE_IMPORTS_ALLOWED]
    deepest = max(len(m.split(".")) for m in graph.modules)
    found = []
    for depth in range(2, deepest + 1):
        edges: dict[str, set[str]] = defaultdict(set)
        why: dict[tuple[str, str], list[str]] = defaultdict(list)
        for m, i in imports:
            a, b = _unit(m, depth), _unit(i, depth)
            if a != b:
                edges[a].add(b)
                for d in graph.get_import_details(importer=m, imported=i):
                    why[a, b].append(f"{m}:{d['line_number']} {d['line_contents']}")
        for scc in _cycles(edges):
            lines = [w for a in scc for b in sorted(edges[a]) if b in scc for w in why[a, b]]
            found.append(f"depth {depth}: {' <-> '.join(scc)}\n    " + "\n    ".join(lines))
    assert not found, "import cycles:\n" + "\n".join(found)


def _long_functions(limit: int) -> dict[tuple[str, str], int]:
    out = {}
    for root in ("pipelines", "flows"):
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        out[str(path.relative_to(REPO)), node.name] = lines
    return out


def test_no_function_over_the_line_limit():
    too_long = {k: n for k, n in _long_functions(MAX_FUNCTION_LINES).items() if k not in LONG_FUNCTIONS_ALLOWED}
    assert not too_long, "split into steps: " + ", ".join(f"{p} {f} ({n} lines)" for (p, f), n in sorted(too_long.items()))


def test_allow_lists_name_only_what_still_offends(graph):
    long_now = set(_long_functions(MAX_FUNCTION_LINES))
    assert LONG_FUNCTIONS_ALLOWED <= long_now, f"no longer too long: {sorted(LONG_FUNCTIONS_ALLOWED - long_now)}"
    stale = {(m, i) for m, i in CYCLE_IMPORTS_ALLOWED if not graph.direct_import_exists(importer=m, imported=i)}
    assert not stale, f"no longer imported: {sorted(stale)}"


def test_code_explains_itself_instead_of_citing_issue_numbers():
    """Comments and docstrings say what the code does; "issue 12" means nothing to the next reader."""
    pattern = re.compile(r"\bissues? #?\d+", re.IGNORECASE)
    hits = [f"{path.relative_to(REPO)}:{n}" for root in ("pipelines", "flows") for path in sorted((REPO / root).rglob("*.py"))
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, "issue-number references: " + ", ".join(hits)
