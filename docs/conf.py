"""Sphinx configuration of the course website: the README as the landing page, the six lessons as
committed (their outputs shown, never re-executed), the exercises, docs/ and the measured figures.

Build from the repository root, offline (`pip install -e ".[site]"` first):
    sphinx-build -b html -c docs . _site
then open _site/README.html. The source folder is the repository root, so every link the README
and the docs make on a code host works here too.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))

project = "minprefix"
author = "the minprefix authors"
root_doc = "README"
extensions = ["myst_nb",  # MyST Markdown and notebooks (myst-nb includes myst-parser)
              "sphinx-mathjax-offline"]  # MathJax 3.2.2 copied into _static: formulas typeset with no network
include_patterns = ["README.md", "docs/*.md", "lessons/README.md", "lessons/*.ipynb", "figures/*.md"]
exclude_patterns = ["_site", ".venv", "runs", "jupyter_execute"]
nb_execution_mode = "off"  # the committed outputs are the lesson; building never runs a cell
nb_output_stderr = "remove"  # progress-bar residue (tqdm writes to stderr)
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]  # formulas in the lessons' markdown, typeset by MathJax
myst_heading_anchors = 3  # links to a section (page.md#a-heading) resolve
html_theme = "furo"
html_title = "minprefix: prompt tuning from scratch"
suppress_warnings = ["myst.xref_missing", "toc.not_included"]  # plain links to code; untitled figure pages

# The README reads well on a code host, where a toctree directive would show as raw text; the site's
# table of contents is added to it at build time instead.
# figures/reparam.md, sweep.md and bench_compile.md are command output without a title: linked, not listed.
TOC = ["lessons/README", *(f"lessons/{name}" for name in LESSONS), "docs/using", "docs/world", "docs/results",
       "figures/compare", "docs/performance", "docs/numbers", "docs/instructors", "docs/references"]


def add_toc(app, docname, source):
    if docname == root_doc:
        source[0] += "\n\n```{toctree}\n:hidden:\n:maxdepth: 2\n\n" + "\n".join(TOC) + "\n```\n"


def setup(app):
    app.connect("source-read", add_toc)
