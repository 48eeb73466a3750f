"""The course website builds from the repository's own files, offline, and every page it links exists.

Needs the site extra (`pip install -e ".[site]"`, which the README's test command installs); without it these
tests skip. `pytest -m site` runs only the website's tests."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.site


@pytest.fixture
def site(built_site):  # built once for this file and the browser's (conftest.py)
    return built_site


def test_every_lesson_has_a_page_with_its_outputs_and_typeset_math(site):
    out, _ = site
    assert (out / "README.html").exists()
    for notebook in sorted((ROOT / "lessons").glob("[0-9][0-9]_*.ipynb")):
        page = (out / "lessons" / f"{notebook.stem}.html").read_text()
        assert "cell_output" in page, f"{notebook.name}: no outputs on its page"
        assert "update jupyter and ipywidgets" not in page, f"{notebook.name}: tqdm's IProgress warning on its page"
    math = "".join(p.read_text() for p in (out / "lessons").glob("*.html"))
    assert 'class="math' in math, "no formula reached MathJax"


def test_every_internal_link_and_image_resolves(site):
    out, warnings = site
    broken = []
    for page in out.rglob("*.html"):
        for target in re.findall(r'(?:href|src)="([^"#?]+)', page.read_text()):
            if not re.match(r"[a-z]+:|//", target) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(out)} -> {target}")
    assert not broken, "\n".join(broken[:20])
