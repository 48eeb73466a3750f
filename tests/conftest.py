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


def pytest_addoption(parser):
    parser.addoption("--learner", action="store_true",
                     help="check your solutions in lessons/exercises/ instead of the library's reference solutions")


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
