"""The lesson exercises: `pytest -m ex3_1` checks one; `--learner` checks lessons/exercises/ instead of the library.

By default the checks run on the reference solutions (the library's own code), so CI keeps them green.
"""

import pytest
from exercise_checks import CHECKS, REFERENCE, learner


@pytest.mark.parametrize("name", [pytest.param(n, marks=getattr(pytest.mark, n)) for n in sorted(CHECKS)])
def test_exercise(name, request):
    impl = learner(name) if request.config.getoption("--learner") else REFERENCE[name]
    CHECKS[name](impl)
