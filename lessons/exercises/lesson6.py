"""Lesson 6 exercises: side by side. Check them with `pytest -m "ex6_1 or ex6_2" --learner`."""


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Exercise 6.1: the Wilson score interval of a proportion p measured on n examples.

    The interval holds every true proportion q for which |p - q| <= z * sqrt(q (1 - q) / n).
    Return (low, high); for n == 0, (0.0, 1.0). Reread: "How sure is a score?" in lesson 6.
    """
    raise NotImplementedError("Need to implement for exercise 6.1")


def pick_learning_rate(dev_by_lr: dict[float, list[float | None]]) -> float:
    """Exercise 6.2: the learning rate a sweep settles on, or the news that it must be widened.

    dev_by_lr maps each learning rate tried (in any order) to the best dev exact match of each seed's
    run at it; None marks a run that diverged, and it counts as 0. A rate's score is the mean over
    its seeds. Return the rate with the highest score (on a tie, the smaller rate). If that rate is
    the smallest or the largest one tried, the sweep has not bracketed its best: raise ValueError
    with "widen below" or "widen above" in its message. Reread: "Every method, two tasks" in lesson 6.
    """
    raise NotImplementedError("Need to implement for exercise 6.2")
