"""Many tasks at once (minprefix/bank.py): a prompt bank's mixed batches, its ensembles, its errors."""

import pytest
import torch
from helpers import TOK, tiny_base

from minprefix.bank import PromptBank, ensemble_generate
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.soft_prompt import SoftPromptGPT


@pytest.mark.parametrize("make", [
    lambda b, s: SoftPromptGPT(b, 4, init="random", seed=s),
    lambda b, s: PrefixGPT(b, 4, seed=s),
    lambda b, s: BlockInputPrefixGPT(b, 4, seed=s),
])
def test_mixed_batch_equals_each_row_alone(make):
    base = tiny_base()
    bank = PromptBank({"a": make(base, 1), "b": make(base, 2), "c": make(base, 3)})
    idx = torch.randint(2, TOK.vocab_size, (4, 6), generator=torch.Generator().manual_seed(0))
    tasks = ["b", "a", "c", "b"]
    mixed, _ = bank(idx, tasks=tasks)
    for row, task in enumerate(tasks):
        alone, _ = bank.members[task](idx[row : row + 1])
        torch.testing.assert_close(mixed[row : row + 1], alone)
    out = bank.generate(idx[:, :3], 4, top_k=1, tasks=tasks)
    for row, task in enumerate(tasks):
        assert torch.equal(out[row : row + 1], bank.members[task].generate(idx[row : row + 1, :3], 4, top_k=1))


def test_ensemble_of_one_repeated_prompt_is_that_prompt():
    base = tiny_base()
    bank = PromptBank({"a": PrefixGPT(base, 4, seed=1), "b": PrefixGPT(base, 4, seed=2)})
    idx = torch.randint(2, TOK.vocab_size, (3, 5), generator=torch.Generator().manual_seed(0))
    alone = bank.members["a"].generate(idx, 5, top_k=1)
    for combine in ("mean", "vote"):
        assert torch.equal(ensemble_generate(bank, ["a", "a", "a"], idx, 5, stop_id=-1, combine=combine), alone)
    # two different prompts averaged: each step's token is the argmax of the mean log-probs
    mixed = ensemble_generate(bank, ["a", "b"], idx, 1, stop_id=-1)
    la = torch.log_softmax(bank.members["a"](idx)[0][:, -1], -1)
    lb = torch.log_softmax(bank.members["b"](idx)[0][:, -1], -1)
    assert torch.equal(mixed[:, -1], ((la + lb) / 2).argmax(-1))


def test_bank_rejects_mixed_lengths_and_unknown_tasks():
    base = tiny_base()
    with pytest.raises(ValueError, match="prompt shape"):
        PromptBank({"a": PrefixGPT(base, 4), "b": PrefixGPT(base, 5)})
    bank = PromptBank({"a": PrefixGPT(base, 4)})
    with pytest.raises(ValueError, match="unknown tasks"):
        bank(torch.zeros(1, 3, dtype=torch.long), tasks=["z"])


def test_a_bank_of_two_kinds_of_rows_says_so():
    from helpers import tiny_base

    from minprefix.prefix import PrefixGPT
    from minprefix.soft_prompt import SoftPromptGPT
    base = tiny_base()
    with pytest.raises(ValueError, match="member 'b' is a PrefixGPT, the first a SoftPromptGPT"):
        PromptBank({"a": SoftPromptGPT(base, 4), "b": PrefixGPT(base, 4)})
