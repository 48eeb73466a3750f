import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TOK, tiny_base  # tests/ is on sys.path: see helpers.py


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread is faster, and far faster on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def base():
    """The tiny base in float64, so that two views of one computation can be held to 1e-10."""
    return tiny_base().double()


@pytest.fixture
def idx():
    """Three rows of seven token ids (the special ids 0 and 1 left out), the same every time."""
    return torch.randint(2, TOK.vocab_size, (3, 7), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def built_site(tmp_path_factory):
    """The course website, built once with the README's command: (folder, what Sphinx warned)."""
    pytest.importorskip("myst_nb", reason="the website tests need the site extra: pip install -e .[site]")
    out = tmp_path_factory.mktemp("site") / "_site"
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-c", "docs", "-q", ".", str(out)],
                         cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"site built in {time.perf_counter() - start:.0f} s")
    return out, run.stderr


def pytest_addoption(parser):
    parser.addoption("--learner", action="store_true",
                     help="check your solutions in lessons/exercises/ instead of the library's reference solutions")


LEARNER_FILE = "test_exercises.py"


def pytest_ignore_collect(collection_path, config):
    """With --learner only the exercise checks are collected: checking one exercise takes a second or two."""
    if config.getoption("--learner"):
        name = collection_path.name
        return (collection_path.is_dir() and name != "tests") or (name.startswith("test_") and name != LEARNER_FILE)
    return None


def pytest_configure(config):
    if config.getoption("--learner"):
        config.option.reportchars = ""  # no summary that repeats the messages


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """With --learner a failing check reports its one-line message (where the error came from), no traceback."""
    report = yield
    if item.config.getoption("--learner") and report.failed and call.excinfo is not None:
        e, name = call.excinfo, item.callspec.params.get("name", item.name)
        if e.errisinstance(NotImplementedError):
            message = "not done yet (the stub still raises NotImplementedError)"
        elif e.errisinstance(AssertionError):
            message = str(e.value)
        else:  # a bug in the learner's code: name the line of theirs it came from
            mine = [t for t in e.traceback if "lessons/exercises" in str(t.path).replace("\\", "/")]
            where = f" at {mine[-1].path.name} line {mine[-1].lineno + 1}" if mine else ""
            message = f"{e.typename}: {e.value}{where}"
        report.longrepr = f"{name}: {message}"
    return report


def pytest_unconfigure(config):
    """With --learner, the run ends with how many exercises pass."""
    terminalreporter = config.pluginmanager.get_plugin("terminalreporter")
    if not config.getoption("--learner") or terminalreporter is None:
        return
    reports = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])
               if r.when == "call" and "test_exercises.py::test_exercise[" in r.nodeid]
    if reports:
        done = sum(r.passed for r in reports)
        terminalreporter.write_line(f"exercises done: {done}/{len(reports)}")
