"""Lesson 1 exercises: a GPT from scratch. Check them with `pytest -m "ex1_1 or ex1_2" --learner`."""

import torch

from minprefix.model import GPTConfig


def causal_mask(n_query: int, n_key: int) -> torch.Tensor:
    """Exercise 1.1: the boolean (n_query, n_key) attention mask, True where a query may look.

    The last n_query keys are the queries' own tokens; the n_key - n_query keys before them (a KV
    cache, or a prefix) are visible to every query. Query i sees keys 0 .. n_key - n_query + i.
    With n_query == n_key this is the plain causal triangle. Reread: "The attention mask" in lesson 1.
    """
    raise NotImplementedError("Need to implement for exercise 1.1")


def count_gpt_params(config: GPTConfig) -> int:
    """Exercise 1.2: the number of parameters of GPT(config), counted once (the output head is tied).

    Token table V*d, position table block_size*d, per block two LayerNorms, q/k/v and output
    projections, the 4x MLP; a final LayerNorm. config.bias says whether Linear layers and
    LayerNorms have biases. Reread: "Counting the parameters" in lesson 1.
    """
    raise NotImplementedError("Need to implement for exercise 1.2")
