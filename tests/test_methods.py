"""The methods table (minprefix/methods.py): each method's closed-form counts against the model it builds."""

import pytest
from helpers import tiny_base

from minprefix.methods import METHODS, method_named
from minprefix.params import (block_prefix_params, count_stored, count_trainable, kv_prefix_params, reparam_params,
                              soft_prompt_params)
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.prompted import MLP_HIDDEN
from minprefix.soft_prompt import SoftPromptGPT
from minprefix.tune import TuneConfig


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


def test_names_follow_one_scheme():
    """A method made by a network while training is its direct method's name plus -mlp, stored as that method."""
    for m in METHODS.values():
        assert (m.name.endswith("-mlp")) == bool(m.reparam), m.name
        assert m.direct.reparam is None and m.direct.model is m.model, m.name


def test_old_names_are_read_as_new_ones_and_refused_on_the_command_line():
    assert method_named("prefix-direct") is METHODS["prefix"]
    with pytest.raises(ValueError, match="--method prefix-direct is now called prefix"):
        TuneConfig(method="prefix-direct")
    with pytest.raises(ValueError, match="unknown method 'lora'"):
        method_named("lora")


@pytest.mark.parametrize("method, options, needle", [
    ("soft", dict(layers="top"), "--prefix-layers top: soft has no rows at every block"),
    ("prefix", dict(hidden=8), "--hidden sets the network of soft-mlp, block-prefix-mlp, prefix-mlp; prefix has none"),
    ("soft-mlp", dict(reparam_dim=8), "--reparam-dim: soft-mlp's P-tuning encoder has no P' width k"),
])
def test_options_a_method_does_not_have_are_refused_once_for_config_and_build(method, options, needle):
    with pytest.raises(ValueError, match=needle):
        METHODS[method].build(tiny_base(), 4, **options)
    flags = {"prefix_layers" if k == "layers" else k: v for k, v in options.items()}
    with pytest.raises(ValueError, match=needle):
        TuneConfig(method=method, **flags)
