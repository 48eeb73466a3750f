"""Lesson 3 exercises: soft prompts. Check them with `pytest -m "ex3_1 or ex3_2 or ex3_3" --learner`."""

import torch

from minprefix.model import GPT


def soft_prompt_logits(base: GPT, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Exercise 3.1: the logits of the real tokens when a soft prompt is put before them.

    rows (P, C) soft-prompt rows; idx (B, T) token ids. The rows take positions 0..P-1 and the
    tokens P..P+T-1. Use base.wte, base.wpe, base.blocks and base.head (or base.embed and
    base.run). Returns (B, T, V): one row of logits per real token, none for the prompt.
    Reread: "The input layer" in lesson 3.
    """
    raise NotImplementedError("Need to implement for exercise 3.1")


def mixed_batch_logits(base: GPT, prompts: dict[str, torch.Tensor], idx: torch.Tensor,
                       tasks: list[str]) -> torch.Tensor:
    """Exercise 3.2: one forward pass where row b wears the soft prompt of tasks[b].

    prompts maps a task name to its (P, C) rows (every prompt the same length); idx (B, T).
    Returns (B, T, V), the same as running each row alone with its own prompt, in one batch.
    Reread: "Many tasks, one batch" in lesson 3.
    """
    raise NotImplementedError("Need to implement for exercise 3.2")


def params_to_train(model: torch.nn.Module, base: GPT) -> list[torch.nn.Parameter]:
    """Exercise 3.3: freeze the base and return the parameters an optimizer should get.

    model wears base (model.base is base). Afterwards no base parameter has requires_grad, and
    the list holds exactly the method's own parameters (those outside base).
    Reread: "A frozen base" in lesson 3.
    """
    raise NotImplementedError("Need to implement for exercise 3.3")
