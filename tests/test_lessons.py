"""Every lesson runs top to bottom on a fresh kernel (short mode), and was committed from one clean run in order."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))


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
    assert nb.cells[0].cell_type == "markdown" and "minute" in nb.cells[0].source, \
        "the first cell says what the lesson teaches and how long it takes"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    """A fresh kernel, the short mode (MINPREFIX_QUICK=1: less training, every cell runs), a per-cell timeout."""
    monkeypatch.setenv("MINPREFIX_QUICK", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(LESSONS)}}).execute()
