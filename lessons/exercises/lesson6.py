"""Lesson 6 exercises: side by side. Check them with `pytest -m "ex6_1 or ex6_2" --learner`."""

import torch


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Exercise 6.1: the Wilson score interval of a proportion p measured on n examples.

    The interval holds every true proportion q for which |p - q| <= z * sqrt(q (1 - q) / n).
    Return (low, high); for n == 0, (0.0, 1.0). Reread: "How sure is a score?" in lesson 6.
    """
    raise NotImplementedError("Need to implement for exercise 6.1")


def trainable_share(model: torch.nn.Module, base: torch.nn.Module) -> float:
    """Exercise 6.2: the numbers that train in model, as a fraction of the base's parameters.

    Count each parameter once, only those with requires_grad. Reread: "Quality against size" in lesson 6.
    """
    raise NotImplementedError("Need to implement for exercise 6.2")
