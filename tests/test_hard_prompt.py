"""Hard prompts (minprefix/hard_prompt.py): why they need a search, and the search."""

import pytest
import torch
from helpers import TOK, tiny_base

from minprefix.hard_prompt import score_templates, search_prompt
from minprefix.world import examples


def test_token_ids_have_no_gradient():
    """Why hard prompts need search: ids are integers, and autograd refuses integer leaves."""
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(RuntimeError, match="floating point"):
        ids.requires_grad_(True)
    base = tiny_base()
    emb = base.wte(ids).detach().requires_grad_(True)  # the embeddings do have one
    base.run(emb).sum().backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_search_only_keeps_improvements():
    base = tiny_base()
    exs = examples("bare-reverse", "train", 32)
    start = "****'{x}': "
    found, history = search_prompt(base, TOK, exs, start, steps=6, top_k=4, batch_size=32, progress=False)
    before, after = score_templates(base, TOK, exs, [start])[0], score_templates(base, TOK, exs, [found])[0]
    assert history, "with a random base some swap should help"
    assert after["loss"] < before["loss"]
    assert found.count("{x}") == 1 and len(found) == len(start)  # only characters were swapped
