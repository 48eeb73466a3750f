"""Lesson 4 exercises: prefix tuning. Check them with `pytest -m "ex4_1 or ex4_2 or ex4_3" --learner`."""

import torch

from minprefix.generate import KVCache
from minprefix.model import Block


def prefix_block(block: Block, x: torch.Tensor, prefix_kv: torch.Tensor) -> torch.Tensor:
    """Exercise 4.1: one regular block whose attention also sees P prefix keys and values.

    x (B, T, C); prefix_kv (B, 2, n_head, P, head_dim), index 0 keys and 1 values. Every token sees
    every prefix position; tokens are causal among themselves. Use the block's own weights
    (block.ln_1, block.attn.c_attn, block.attn.c_proj, block.ln_2, block.mlp). You need not write the
    attention by hand: block.attn(h, past_kv) takes earlier keys and values, and the prefix can be
    handed over as them (lesson 4 says why that is the same thing). Writing it yourself (split heads,
    prefix keys and values before the tokens', the bottom-right causal mask) is a good second try;
    the check accepts both. Returns (B, T, C). prefix_kv trains and x carries gradients to the blocks
    below: keep both in the autograd graph (the check backpropagates through your output).
    Reread: "The prefix-augmented block" in lesson 4.
    """
    raise NotImplementedError("Need to implement for exercise 4.1")


def rows_to_kv(block: Block, rows: torch.Tensor) -> torch.Tensor:
    """Exercise 4.2: the keys and values a block makes of P block-input prefix rows.

    rows (P, C). Returns (2, n_head, P, head_dim): K = W_k LN(p) + b_k and V = W_v LN(p) + b_v,
    with the block's ln_1 and the key and value parts of attn.c_attn; gradients must reach rows.
    Reread: "Three views" in lesson 4.
    """
    raise NotImplementedError("Need to implement for exercise 4.2")


def prefix_cache(model, batch_size: int) -> KVCache:
    """Exercise 4.3: a trained key/value prefix turned into a KV cache the bare base can continue from.

    model is a PrefixGPT (its keys and values: model.prefix_kv(), (n_layer, 2, n_head, P, head_dim),
    index 0 keys, 1 values; the layers that wear it: model.wearing). Return a KVCache of
    model.config.n_layer layers in which each wearing layer holds (keys, values), each
    (batch_size, n_head, P, head_dim), and every other layer None, so that
    model.base(idx, cache=cache) gives the same logits as model(idx) for any idx of batch_size rows.
    Reread: "The prefix-augmented block" in lesson 4 (a prefix is the "past" of the attention).
    """
    raise NotImplementedError("Need to implement for exercise 4.3")
