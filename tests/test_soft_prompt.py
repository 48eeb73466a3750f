"""Soft prompts (minprefix/soft_prompt.py): rows in front of the tokens are a block-input prefix."""

import torch

from minprefix.prefix import BlockInputPrefixGPT
from minprefix.soft_prompt import SoftPromptGPT


def hidden_rows_of(soft: SoftPromptGPT) -> torch.Tensor:
    """The input of every block for the soft prompt's rows run alone: (n_layer, P, d)."""
    base = soft.base
    x = base.embed(soft.prompt()[None])  # positions 0..P-1, as the soft prompt gets them
    rows = []
    for block in base.blocks:
        rows.append(x[0])
        x, _ = block(x)
    return torch.stack(rows)


def test_soft_prompt_is_a_block_input_prefix(base, idx):
    """DESIGN: a soft prompt equals a block-input prefix whose rows are the hidden states it produces."""
    soft = SoftPromptGPT(base, 4, init="random")
    block = BlockInputPrefixGPT.from_hidden(base, hidden_rows_of(soft).detach())
    torch.testing.assert_close(block(idx)[0], soft(idx)[0], rtol=0, atol=1e-10)
    # and it really depends on the rows: the rows of layer 0 alone are not enough
    rows = hidden_rows_of(soft).detach()
    rows[1] = rows[0]
    assert not torch.allclose(BlockInputPrefixGPT.from_hidden(base, rows)(idx)[0], soft(idx)[0], atol=1e-6)
