"""Every lesson runs top to bottom on a fresh kernel (short mode), and was committed from one clean run in order."""

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_notebook_has_a_plain_text_twin_in_sync(path):
    """lessons/NN_*.py is the notebook without its outputs (jupytext's percent format): a lesson's change is a
    readable diff. Compared cell by cell, so the twin's header may come from another jupytext version."""
    import jupytext

    twin = path.with_suffix(".py")
    fix = f"run `jupytext --sync {path.relative_to(LESSONS.parent)}` (the newer of the two files wins)"
    assert twin.exists(), f"no {twin.name}: {fix}"
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(jupytext.reads(twin.read_text(), fmt="py:percent")) == cells(nbformat.read(path, as_version=4)), \
        f"{twin.name} and {path.name} differ: {fix}"


def test_there_are_lessons():
    assert NOTEBOOKS, "no lessons/NN_*.ipynb found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_was_run_once_in_order(path):
    """Its code cells carry execution counts 1, 2, 3, ... (one clean top-to-bottom run), and no errors."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), "rerun it top to bottom"
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"the committed run has an error: {errors[0].get('ename')}"
    assert nb.cells[0].cell_type == "markdown" and re.search(r"\b(seconds?|minutes?)\b", nb.cells[0].source), \
        "the first cell says what the lesson teaches and how long it takes"


def printed_text(cells) -> str:
    """Everything the code cells among `cells` printed or displayed, as one string."""
    parts = []
    for cell in cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.output_type == "stream":
                parts.append(out.text)
            elif out.output_type in ("execute_result", "display_data"):
                parts += [out.data.get("text/plain", ""), out.data.get("text/markdown", "")]
    return "\n".join(parts)


def results_prose(nb) -> str:
    """The markdown that reports results: every markdown cell before "Try it yourself" (what follows asks,
    it does not report)."""
    out = []
    for c in nb.cells:
        if c.cell_type == "markdown":
            if re.search(r"^#+ Try it yourself", c.source, re.M):
                break
            out.append(c.source)
    return "\n".join(out)


QUOTED = {"percentage": r"(?<![\w.,])(\d+(?:\.\d+)?) ?%",  # 97.5 %
          "count": r"(?<![\w.,])(\d{1,3}(?:,\d{3})+)(?![\d,]\d)",  # 1,600 steps, 10,240 numbers
          "rate": r"(?<![\w.,])(0\.\d*[1-9]\d*|\de-\d+)(?![\d%])(?! ?%)"}  # learning rates: 0.03, 3e-4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_percentage_count_and_rate_the_prose_states_is_one_a_cell_printed(path):
    """The markdown says what the printed numbers mean and quotes them: a rerun that moves a number
    and leaves the prose behind fails here (a number from elsewhere must be printed where it is quoted)."""
    nb = nbformat.read(path, as_version=4)
    printed, prose = printed_text(nb.cells), results_prose(nb)
    for kind, pattern in QUOTED.items():
        quoted = {m.group(1) for m in re.finditer(pattern, prose)}
        missing = sorted(q for q in quoted if not re.search(rf"(?<![\d.]){re.escape(q)}(?![\d])", printed))
        assert not missing, f"{path.name} quotes the {kind}(s) {', '.join(missing)}, which no cell printed: rerun " \
                            "it and rewrite the prose from its outputs"


def before_exercises(nb) -> list:
    """The cells before the lesson's "## Exercises" heading (all of them if it has none)."""
    heading = [i for i, c in enumerate(nb.cells)
               if c.cell_type == "markdown" and re.search(r"^#+ Exercises", c.source, re.M)]
    return nb.cells[: heading[0]] if heading else nb.cells


def lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def test_every_exercise_has_its_solution_to_show():
    """solution(n) knows every exercise the checks know (tests/exercise_checks.py's REFERENCE), and only those."""
    from exercise_checks import REFERENCE
    from minprefix.lab.lesson import SOLUTIONS, source

    assert sorted(SOLUTIONS) == sorted(name[2:].replace("_", ".") for name in REFERENCE)
    assert all(source(name) for names in SOLUTIONS.values() for name in names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_reference_solution_is_printed_before_the_exercises(path):
    """A learner reading top to bottom meets no exercise's answer before being asked to write it: no output
    before the Exercises heading holds three consecutive lines of any reference solution (`solution(n)` in
    minprefix.lab.lesson prints one on demand)."""
    from minprefix.lab.lesson import SOLUTIONS, source

    printed = lines(printed_text(before_exercises(nbformat.read(path, as_version=4))))
    for exercise, names in SOLUTIONS.items():
        for name in names:
            code = lines(source(name)).split("\n")
            shown = [code[i : i + 3] for i in range(len(code) - 2) if "\n".join(code[i : i + 3]) in printed]
            assert not shown, f"{path.name} prints the solution of exercise {exercise} ({name}) before its " \
                              f"Exercises section, e.g. {shown[0]}: point to it, or leave it to solution({exercise!r})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    """A fresh kernel, the short mode (MINPREFIX_QUICK=1: less training, every cell runs), a per-cell timeout."""
    monkeypatch.setenv("MINPREFIX_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(LESSONS)}}).execute()
