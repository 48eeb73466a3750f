"""Mutation scores per exercise: how many mutants of each exercise's reference solution its check kills.

From the repository root (mutmut's configuration is in pyproject.toml):

    pip install mutmut
    mutmut run $(python tests/mutation_scores.py --patterns)   # only the references' mutants
    python tests/mutation_scores.py                            # killed/all per exercise, and the survivors

The references are `SOLUTIONS` in minprefix/lab/lesson.py (what `solution(n)` prints). Exercise 3.3's
(the training loop) is not mutated: its check compares with that same loop, so a mutant changes both sides.
"""

import fnmatch
import importlib
import inspect
import subprocess
import sys

from minprefix.lab.lesson import SOLUTIONS


def patterns(name: str) -> str:
    """mutmut's names for the mutants of "module:Qualified.name": x_f__mutmut_N, or xǁClassǁmethod__mutmut_N."""
    module, qualname = name.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        return f"{obj.__module__}.xǁ{obj.__qualname__}ǁ*__mutmut_*"
    owner, _, function = obj.__qualname__.rpartition(".")  # the class that defines a method, or ""
    return f"{obj.__module__}.xǁ{owner}ǁ{function}__mutmut_*" if owner else f"{obj.__module__}.x_{function}__mutmut_*"


def main():
    if sys.argv[1:] == ["--patterns"]:
        print(" ".join(patterns(name) for names in SOLUTIONS.values() for name in names))
        return
    listing = subprocess.run(["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    status = dict(line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line)
    for exercise, names in SOLUTIONS.items():
        mine = {k: v for k, v in status.items() if any(fnmatch.fnmatch(k, patterns(n)) for n in names)}
        if not mine:
            print(f"{exercise}: no mutants (not mutated, or not run)")
            continue
        survivors = sorted(k.rsplit(".", 1)[-1] for k, v in mine.items() if v != "killed")
        print(f"{exercise}: {len(mine) - len(survivors)}/{len(mine)} killed"
              + (f"; not killed: {', '.join(survivors)}" if survivors else ""))


if __name__ == "__main__":
    main()
