"""Lesson 2 exercises: hard prompts. Check them with `pytest -m "ex2_1 or ex2_2" --learner`."""

import torch


def exact_match(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Exercise 2.1: would greedy decoding reproduce each row's answer? Read off one teacher-forced pass.

    logits (B, T, V); targets (B, T) with -1 where nothing is scored (prompt, padding). Returns a
    (B,) bool tensor: True where, at every scored position, the argmax of the logits is the target.
    Reread: "Exact match without decoding" in lesson 2.
    """
    raise NotImplementedError("Need to implement for exercise 2.1")


def rank_candidates(grad: torch.Tensor, table: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Exercise 2.2: HotFlip's candidates for one position, best first.

    grad (C,): the gradient of the loss w.r.t. the embedding at that position; table (V, C): the
    token embeddings; allowed (A,): the token ids one may swap in. To first order, swapping in
    token w changes the loss by (table[w] - table[current]) . grad. Return the k allowed ids
    (or all of them, if fewer) that lower the loss most, best first.
    Reread: "Search with gradients" in lesson 2.
    """
    raise NotImplementedError("Need to implement for exercise 2.2")
