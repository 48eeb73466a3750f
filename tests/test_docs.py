"""The README and docs/ as a reader meets them: the commands CI runs, links that resolve, every lesson
listed, and the methods table's numbers as the library computes them."""
import re
from pathlib import Path

import pytest

from minprefix.base import load_base
from minprefix.methods import METHODS, count_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", ROOT / "lessons" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # markdown links and images: [text](target)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in README


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text()) if not re.match(r"[a-z]+:", t)]
    assert targets, f"{page.name} links nothing"
    missing = [t for t in targets if t and not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links files that do not exist: {missing}"


def test_readme_lists_every_lesson_before_the_reference_material():
    lessons = sorted(p.name for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
    assert lessons
    for name in lessons:
        assert f"(lessons/{name})" in README, f"the README's lesson table misses {name}"
    assert README.index("lessons/01_") < README.index("## The methods at a glance") < README.index("## Read further")


def test_readme_methods_table_is_what_the_library_counts():
    """The table quotes `minprefix info` (trainable, stored) and `minprefix tune --help` (lr, steps)."""
    config = load_base()[0].config
    for row in count_table(config, P=10):
        m = METHODS[row["method"]]
        line = next((ln for ln in README.splitlines() if ln.startswith(f"| `{m.name}` ")), None)
        assert line, f"the README's methods table misses {m.name}"
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2:] == [f"{row['trainable']:,}", f"{row['stored']:,}", f"{m.lr:g}, {m.steps}"], line


def test_reparameterization_and_claims_are_pointers_to_their_figures():
    results = (ROOT / "docs" / "results.md").read_text()
    section = results.split("## The reparameterization\n", 1)[1].split("\n## ", 1)[0]
    assert "figures/reparam.md" in section and "lessons/05_" in section
    assert "figures/compare.md" in results.split("## The papers' claims, measured\n", 1)[1]
