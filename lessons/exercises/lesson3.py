"""Lesson 3 exercises: soft prompts. Check them with `pytest -m "ex3_1 or ex3_2 or ex3_3" --learner`."""

import torch

from minprefix.model import GPT


def soft_prompt_logits(base: GPT, rows: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Exercise 3.1: the logits of the real tokens when a soft prompt is put before them.

    rows (P, C) soft-prompt rows; idx (B, T) token ids. The rows take positions 0..P-1 and the
    tokens P..P+T-1. Use base.wte, base.wpe, base.blocks and base.head (or base.embed and
    base.run). Returns (B, T, V): one row of logits per real token, none for the prompt.
    If P + T is more than the base's context (base.config.block_size), raise ValueError: the
    position table has no row for the positions past it. The rows train: keep them in the autograd
    graph (no .detach(), .data or torch.no_grad()); the check backpropagates through your logits.
    Reread: "The input layer" in lesson 3.
    """
    raise NotImplementedError("Need to implement for exercise 3.1")


def mixed_batch_logits(base: GPT, prompts: dict[str, torch.Tensor], idx: torch.Tensor,
                       tasks: list[str]) -> torch.Tensor:
    """Exercise 3.2: one forward pass where row b wears the soft prompt of tasks[b].

    prompts maps a task name to its (P, C) rows (every prompt the same length); idx (B, T).
    Returns (B, T, V), the same as running each row alone with its own prompt, in one batch.
    Raise ValueError if tasks does not name one prompt per row of idx, names a task that prompts
    lacks, or the prompts differ in length. Every prompt's gradient must reach it, as in exercise 3.1.
    Reread: "Many tasks, one batch" in lesson 3.
    """
    raise NotImplementedError("Need to implement for exercise 3.2")


def train_soft_prompt(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]],
                      lr: float) -> list[float]:
    """Exercise 3.3: train a soft prompt by hand, one optimizer step per batch; return each step's loss.

    model is a SoftPromptGPT: its rows train, its base (model.base) is frozen and must not change.
    Build torch.optim.AdamW over exactly the parameters that train (those with requires_grad) with
    lr=lr, betas=(0.9, 0.95) and weight_decay=0.0; no schedule, no gradient clipping. Then for each
    (idx, targets) in batches, in order: the loss is model(idx, targets)[1] (targets are -1 wherever
    no loss is taken, so it scores the answer only); clear the gradients left by the last step,
    backpropagate, step. Return the losses, as Python floats, each taken before its own step.
    Reread: "A frozen base" and "The optimizer and its schedule" in lesson 3.
    """
    raise NotImplementedError("Need to implement for exercise 3.3")
