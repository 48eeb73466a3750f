"""The package's shape: the teaching core below the lab, imports one way, small functions, one home for methods."""

import ast
import re
from pathlib import Path

import pytest

from minprefix.methods import METHODS

PACKAGE = Path(__file__).resolve().parent.parent / "minprefix"
LAYERS = [  # the house, lowest floor first: a module imports only from its own floor or those below it (no cycle)
    {"config", "distributed", "lexicon", "files", "generate"},  # settings, io, decoding: nothing of the package below
    {"model", "world", "checkpoint", "prompted", "bank"},  # the regular GPT, the tiny world, a run's checkpoint, the
    # prompted base and the prompt bank (each needs only generate.py: it wears a GPT without importing model.py)
    {"scoring", "params", "train", "base"},  # ... the loop, the shipped base
    {"soft_prompt", "prefix", "pretrain", "hard_prompt"},  # where the rows enter; making the base
    {"methods"},  # the one table
    {"artifacts"},  # the prompt format
    {"tune"},  # one method on one task
    {"lab"},  # the lab: one floor of its own, its rooms ordered by LAB_ROOMS
    {"cli", "__main__", "__init__"},
]
LAB_ROOMS = [  # inside the lab floor, lowest first, the same rule
    {"lab", "lab.grid", "lab.figures", "lab.lesson", "lab.studies"},  # what every experiment reads
    {"lab.bench", "lab.sweep", "lab.compare", "lab.demo", "lab.reparam", "lab.report"},  # the experiments: siblings
]
MOST_FLOORS = 9


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


def floor(name: str) -> int:
    group = "lab" if name.startswith("lab") else name
    found = [i for i, members in enumerate(LAYERS) if group in members]
    assert found, f"minprefix.{name} is on no floor of this test: put it on one"
    return found[0]


def room(name: str) -> int:
    found = [i for i, members in enumerate(LAB_ROOMS) if name in members]
    assert found, f"minprefix.{name} is in no room of the lab in this test: put it in one"
    return found[0]


def test_every_import_points_down_or_sideways():
    for module, deps in GRAPH.items():
        for dep in deps:
            assert floor(dep) <= floor(module), f"minprefix.{module} imports minprefix.{dep}, a higher floor"
            if module.startswith("lab") and dep.startswith("lab"):
                assert room(dep) <= room(module), f"minprefix.{module} imports minprefix.{dep}, a higher room"


def test_the_house_has_at_most_nine_floors():
    """Drawn by its imports, with the lab as one floor: the longest chain of imports from the command down.
    (`__main__` is the door, `python -m minprefix`, not a floor.)"""
    graph = {}
    for module, deps in GRAPH.items():
        here = "lab" if module.startswith("lab") else module
        graph.setdefault(here, set()).update("lab" if d.startswith("lab") else d for d in deps if d != module)
    graph["lab"].discard("lab")

    def height(m, seen=()):
        return 1 + max((height(d, seen + (m,)) for d in graph.get(m, ()) if d not in seen), default=0)
    assert len(LAYERS) <= MOST_FLOORS
    assert height("cli") <= MOST_FLOORS, f"the command stands on {height('cli')} floors"


def test_the_house_drawn_module_by_module_has_at_most_nine_floors():
    """Every module its own floor, the lab's included: the longest chain of imports from the command down is at
    most MOST_FLOORS modules (e.g. config <- model <- prefix <- methods <- artifacts <- tune <- lab.grid <-
    lab.compare <- cli). (`__main__` is the door, not a floor.)"""
    def chain(m, seen=()):
        """The longest import chain that starts at m, m first."""
        below = [chain(d, seen + (m,)) for d in GRAPH.get(m, ()) if d != m and d not in seen]
        return [m] + max(below, key=len, default=[])
    longest = chain("cli")
    assert len(longest) <= MOST_FLOORS, f"the command stands on {len(longest)} floors: " + " <- ".join(longest[::-1])
    assert len(LAB_ROOMS) == 2  # the lab is two floors of the nine: what the experiments read, then the experiments


def test_the_loop_knows_nothing_of_what_it_trains():
    """train.py is the loop alone (minGPT's Trainer): methods, artifacts, scoring and the world are handed in."""
    assert not GRAPH["train"] & {"methods", "artifacts", "scoring", "world", "tune", "prompted", "prefix",
                                 "soft_prompt"}, sorted(GRAPH["train"])


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


def test_no_command_line_flag_is_spelled_in_the_core():
    """The core speaks in fields (`prompt_len`); only cli.py says them as flags (--prompt-len), so a Python call
    never answers with a flag it did not pass."""
    from minprefix.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices.values()
    flags = {o for c in commands for a in c._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
    assert "--prefix-layers" in flags
    for path in PACKAGE.glob("*.py"):  # the lab is not the core; cli.py is where flags live
        if path.name in ("cli.py", "__main__.py"):
            continue
        strings = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str)}
        spelled = {f for s in strings for f in re.findall(r"--[a-z][a-z0-9-]*", s)} & flags
        assert not spelled, f"{module_name(path)} spells {sorted(spelled)}"
