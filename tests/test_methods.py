"""The methods table (minprefix/methods.py): each method's closed-form counts against the model it builds."""

from helpers import tiny_base

from minprefix.methods import METHODS
from minprefix.params import (block_prefix_params, count_stored, count_trainable, kv_prefix_params, reparam_params,
                              soft_prompt_params)
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.prompted import MLP_HIDDEN
from minprefix.soft_prompt import SoftPromptGPT


def test_formulas_equal_the_modules_built():
    base = tiny_base(n_layer=3)
    L, d, P, k, h = 3, 16, 5, 7, 11
    assert count_trainable(SoftPromptGPT(base, P)) == soft_prompt_params(P, d)
    assert count_trainable(BlockInputPrefixGPT(base, P)) == block_prefix_params(L, P, d)
    assert count_trainable(PrefixGPT(base, P)) == kv_prefix_params(L, P, d)
    assert count_trainable(PrefixGPT(base, P, reparam_dim=k, hidden=h)) == reparam_params(P, k, h, 2 * L * d)
    assert count_trainable(BlockInputPrefixGPT(base, P, reparam_dim=k, hidden=h)) == reparam_params(P, k, h, L * d)
    assert count_stored(PrefixGPT(base, P, reparam_dim=k, hidden=h)) == kv_prefix_params(L, P, d)
    for m in METHODS.values():  # the table's closed forms against the modules each method builds
        model = m.build(base, P, reparam_dim=k if m.reparam == "mlp" else None, hidden=h if m.reparam else None)
        assert count_trainable(model) == m.trainable(base.config, P, k, h if m.reparam else MLP_HIDDEN), m.name
        assert count_stored(model) == m.stored(base.config, P), m.name
