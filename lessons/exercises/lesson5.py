"""Lesson 5 exercises: the reparameterization. Check them with `pytest -m "ex5_1 or ex5_2" --learner`."""

import torch
import torch.nn as nn


class MLPPrefix(nn.Module):
    """Exercise 5.1: P rows made by an MLP from a smaller P' (Li & Liang 2021, §4.3).

    Holds `input`, an nn.Parameter P' of shape (prompt_len, k) drawn from a standard normal, and
    `mlp`, an nn.Sequential Linear(k, hidden) -> Tanh -> Linear(hidden, width). forward() takes
    no argument and returns the (prompt_len, width) rows. Reread: "P' through an MLP" in lesson 5.
    """

    def __init__(self, prompt_len: int, k: int, hidden: int, width: int):
        super().__init__()
        raise NotImplementedError("Need to implement for exercise 5.1")

    def forward(self) -> torch.Tensor:
        raise NotImplementedError("Need to implement for exercise 5.1")


def merge(model):
    """Exercise 5.2: the stored form of a prefix model trained through an MLP.

    model is a minprefix PromptedGPT (e.g. PrefixGPT) whose `row_maker` is an MLPPrefix (model.rows()
    is its output). Return a new model of the same class on the same base whose row_maker is a
    DirectPrefix holding the MLP's current output: the same logits, and no MLP weights left; a prefix
    worn on some layers only (model.layers) stays on those layers. Reread: "Merge" in lesson 5.
    """
    raise NotImplementedError("Need to implement for exercise 5.2")
