"""The course website, opened page by page in a real headless browser (Debian's Chromium, driven by Selenium).

`check_site` is a plain function: it serves a built site from localhost, opens every page with the network
cut off (only 127.0.0.1 answers, so anything fetched from a CDN fails), and returns the problems it saw:
a console error, a local link to a page or anchor that does not exist, an image that did not load, a
formula MathJax did not typeset, a lesson without its page. The last test proves it finds each of those
on a broken copy of the site.

Needs the site extra (`pip install -e ".[site]"`, in the README's test command) and Debian's chromium and
chromium-driver, which the test installs itself when run as root with apt-get (a clean CI machine); elsewhere
it skips, saying what to install. Alone: `pytest -m site tests/test_site_browser.py`. With
MINPREFIX_SITE_SCREENSHOT=figures/site.png it also saves the README's screenshot of a lesson page.
"""
import functools
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]  # offline: only 127.0.0.1 answers
pytestmark = pytest.mark.site

# Waits (at most 10 s) for MathJax to finish typesetting, on pages that have a formula.
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1], start = Date.now();
if (!document.querySelector('.math')) return done();
(function poll() {
  const p = window.MathJax && MathJax.startup && MathJax.startup.promise;
  if (p) p.then(() => done(), () => done());
  else if (Date.now() - start > 10000) done();
  else setTimeout(poll, 50);
})();"""
# Loads every image (lazy ones too) and reports those that did not arrive.
BROKEN_IMAGES = """
const done = arguments[arguments.length - 1], images = [...document.images];
images.forEach(img => { img.loading = 'eager'; });
Promise.all(images.map(img => img.decode().catch(() => null))).then(() =>
  done(images.filter(img => img.naturalWidth === 0).map(img => img.getAttribute('src'))));"""
# Text a reader sees outside code, outputs and typeset math: TeX there was never typeset.
RAW_TEX = r"""
const skip = 'pre, code, script, style, textarea, mjx-container, .highlight, .output';
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT), found = [];
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.parentElement.closest(skip) && /\\[a-zA-Z]+|\\\(|\\\[|\$\$/.test(node.textContent))
    found.push(node.textContent.trim().slice(0, 60));
}
return found;"""
# A TeX error box, or an unknown macro shown in red (MathJax's noundefined extension).
MATH_ERROR = "return document.querySelector('mjx-merror, mjx-container [style*=\"color: red\"]') !== null;"
UNTYPESET = "return [...document.querySelectorAll('.math')].filter(m => !m.querySelector('mjx-container')).length;"


@contextmanager
def serve(folder):
    """A static HTTP server for `folder` on a free localhost port, in a thread; yields its base URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def start_browser(profile):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}", "--window-size=1280,900"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_script_timeout(30)
    return driver


def anchors(page):
    """The ids and names a page's links can point at."""
    return set(re.findall(r'\b(?:id|name)="([^"]+)"', page.read_text(errors="replace")))


def check_site(site, lessons, driver, screenshot=None):
    """Open every page of the built `site` in `driver`; return one line per problem (empty: all good).

    `lessons` are the notebooks' names (01_gpt_from_scratch, ...): each must have its page, and a link to it
    on some page. `screenshot` (a path) saves the first lesson page's first screen.
    """
    site = Path(site)
    problems, targets = [], {}
    for name in lessons:
        if not (site / "lessons" / f"{name}.html").exists():
            problems.append(f"missing lesson: lessons/{name}.html")
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)
    with serve(site) as base:
        for page in pages:
            driver.get(base + page)
            driver.execute_async_script(WAIT_FOR_MATHJAX)
            for src in driver.execute_async_script(BROKEN_IMAGES):
                problems.append(f"{page}: image did not load: {src}")
            if driver.execute_script(MATH_ERROR):
                problems.append(f"{page}: a formula MathJax could not typeset")
            if untypeset := driver.execute_script(UNTYPESET):
                problems.append(f"{page}: {untypeset} formulas not typeset")
            for text in driver.execute_script(RAW_TEX):
                problems.append(f"{page}: raw TeX: {text!r}")
            for entry in driver.get_log("browser"):
                if entry["level"] == "SEVERE" and "/favicon.ico " not in entry["message"]:  # the browser's own ask
                    problems.append(f"{page}: console error: {entry['message'][:200]}")
            for href in driver.execute_script("return [...document.querySelectorAll('a[href]')].map(a => a.href)"):
                if href.startswith(base):
                    targets.setdefault(href[len(base):], page)
            if screenshot and page == f"lessons/{lessons[0]}.html":
                driver.save_screenshot(str(screenshot))
    for link, page in sorted(targets.items()):
        path, fragment = urlsplit(link).path, unquote(urlsplit(link).fragment)
        target = site / unquote(path)
        if path.endswith("/") or path == "":
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"{page}: broken link: {link}")
        elif fragment and target.suffix == ".html" and fragment not in anchors(target):
            problems.append(f"{page}: broken anchor: {link}")
    for name in lessons:
        if not any(link.split("#")[0] == f"lessons/{name}.html" for link in targets):
            problems.append(f"lesson not linked from the site: lessons/{name}.html")
    return problems


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def install_chromium() -> str:
    """Debian's chromium and chromium-driver, installed by the test itself where it may (root, apt-get): a clean
    CI machine has neither. Returns why not, or ''."""
    if have_chromium():
        return ""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")):
        return "needs Chromium and its driver: apt-get install chromium chromium-driver (as root)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
    for attempt in ([install], [["apt-get", "update", "-q"], install]):  # package lists may be missing at first
        if all(subprocess.run(cmd, env=env, capture_output=True, timeout=900).returncode == 0 for cmd in attempt):
            break
    return "" if have_chromium() else "apt-get could not install chromium and chromium-driver"


@pytest.fixture(scope="module")
def built(built_site):
    """The site (built once, conftest.py), where a browser can open it."""
    pytest.importorskip("selenium", reason="the browser test needs the site extra: pip install -e .[site]")
    why = install_chromium()
    if why:
        pytest.skip(why)
    return built_site[0]


@pytest.fixture(scope="module")
def driver():
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    browser = start_browser(profile)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


def test_every_page_opens_clean_in_a_browser(built, driver):
    screenshot = os.environ.get("MINPREFIX_SITE_SCREENSHOT")
    start = time.perf_counter()
    problems = check_site(built, LESSONS, driver, screenshot=screenshot and ROOT / screenshot)
    pages = len([p for p in built.rglob("*.html") if "_static" not in p.parts])
    print(f"{pages} pages checked in {time.perf_counter() - start:.0f} s")
    assert not problems, "\n".join(problems[:30])


def test_the_check_sees_a_missing_figure_a_broken_formula_and_a_missing_lesson(built, driver, tmp_path):
    broken = tmp_path / "_site"
    shutil.copytree(built, broken)
    lesson_pages = sorted((broken / "lessons").glob("*.html"))
    # a figure file removed: the first image a lesson shows
    figure = next(src for page in lesson_pages for src in re.findall(r'<img[^>]* src="(\.\./_images/[^"]+)"',
                                                                     page.read_text()))
    (broken / "lessons" / figure).unlink()
    # a formula broken, and a page whose formulas MathJax never sees (as with no network)
    page = next(p for p in lesson_pages if 'class="math' in p.read_text())
    html = page.read_text()
    page.write_text(html.replace("\\(", "\\(\\frc{1}{2}", 2)  # two formulas, a misspelt macro in each
                    .replace("\\frc{1}{2}", "\\frac{1}{", 1))  # then the first one's brace left open
    (broken / "lessons" / "zz_no_mathjax.html").write_text(re.sub(r"<script[^>]*mathjax[^>]*></script>", "", html))
    # a lesson without its page
    (broken / "lessons" / f"{LESSONS[-1]}.html").unlink()

    problems = "\n".join(check_site(broken, LESSONS, driver))
    assert f"image did not load: {figure}" in problems
    assert "console error" in problems  # the figure's 404
    assert f"lessons/{page.name}: 1 formulas not typeset" in problems
    assert f"lessons/{page.name}: a formula MathJax could not typeset" in problems
    assert "lessons/zz_no_mathjax.html: raw TeX" in problems
    assert f"missing lesson: lessons/{LESSONS[-1]}.html" in problems
    assert f"broken link: lessons/{LESSONS[-1]}.html" in problems
