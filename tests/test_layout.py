"""The package's shape: the teaching core below the lab, imports one way, small functions, one home for methods."""

import ast
from pathlib import Path

import pytest

from minprefix.methods import METHODS

PACKAGE = Path(__file__).resolve().parent.parent / "minprefix"
LAYERS = [  # lowest first: a module imports only from its own layer or those below it (and never in a cycle)
    {"config", "distributed", "lexicon", "files"},
    {"model", "world"},
    {"scoring", "params", "prompted"},
    {"soft_prompt", "prefix"},
    {"methods"},
    {"artifacts", "bank"},
    {"checkpoint"},
    {"train"},
    {"base", "pretrain", "hard_prompt"},
    {"lab.grid", "lab.figures", "lab.bench", "lab.sweep"},
    {"lab.compare", "lab.demo", "lab.reparam"},
    {"lab.report"},
    {"lab", "cli", "__main__", "__init__"},
]


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    return name.removesuffix(".__init__") if name != "__init__" else name


def imports(path: Path) -> set[str]:
    """The package modules a file imports (relative imports resolved)."""
    here = list(path.relative_to(PACKAGE).parent.parts)  # the package the file is in: [] or ["lab"]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - node.level + 1]
            mod = ".".join(base + ([node.module] if node.module else []))
            names = [mod] if node.module else [".".join(base + [a.name]) for a in node.names]
            out.update(n for n in names if n)
    return out


GRAPH = {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def layer(name: str) -> int:
    found = [i for i, members in enumerate(LAYERS) if name in members]
    assert found, f"minprefix.{name} is in no layer of this test: put it in one"
    return found[0]


def test_every_import_points_down_or_sideways():
    for module, deps in GRAPH.items():
        for dep in deps:
            assert layer(dep) <= layer(module), f"minprefix.{module} imports minprefix.{dep}, a higher layer"


def test_no_import_cycle():
    done, path = set(), []

    def visit(m):
        assert m not in path, "import cycle: " + " -> ".join(path[path.index(m):] + [m])
        if m in done:
            return
        path.append(m)
        for dep in GRAPH.get(m, ()):
            visit(dep)
        path.pop()
        done.add(m)
    for m in GRAPH:
        visit(m)


def test_the_core_never_imports_the_lab():
    core = [m for m in GRAPH if not m.startswith("lab") and m not in ("cli", "__main__", "__init__")]
    assert core, "no core modules found"
    for m in core:
        assert not [d for d in GRAPH[m] if d.startswith("lab") or d == "cli"], m


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_no_function_longer_than_50_lines(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            assert n <= 50, f"{module_name(path)}.{node.name} is {n} lines"


def test_method_names_and_labels_live_in_the_methods_table_only():
    """Other modules reach a method through METHODS or its named handles, never by spelling it."""
    spelled = {m.name for m in METHODS.values()} | {m.label for m in METHODS.values()}
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("methods.py", "lexicon.py"):  # the table itself; the lexicon's English words ("soft", "full")
            continue
        strings = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
        assert not strings & spelled, f"{module_name(path)} spells {sorted(strings & spelled)}"
