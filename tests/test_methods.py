"""The methods table (minprefix/methods.py): each method's closed-form counts against the model it builds."""

from pathlib import Path

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
    mlp = dict(reparam="mlp", reparam_dim=k, hidden=h)
    assert count_trainable(PrefixGPT(base, P, **mlp)) == reparam_params(P, k, h, 2 * L * d)
    assert count_trainable(BlockInputPrefixGPT(base, P, **mlp)) == reparam_params(P, k, h, L * d)
    assert count_stored(PrefixGPT(base, P, **mlp)) == kv_prefix_params(L, P, d)
    for m in METHODS.values():  # the table's closed forms against the modules each method builds
        model = m.build(base, P, reparam_dim=k if m.reparam == "mlp" else None, hidden=h if m.reparam else None)
        assert count_trainable(model) == m.trainable(base.config, P, k, h if m.reparam else MLP_HIDDEN), m.name
        assert count_stored(model) == m.stored(base.config, P), m.name


def test_names_follow_one_scheme():
    """A method made by a network while training is its direct method's name plus -mlp, stored as that method."""
    for m in METHODS.values():
        assert (m.name.endswith("-mlp")) == bool(m.reparam), m.name
        assert m.direct.reparam is None and m.direct.model is m.model, m.name


def test_an_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method 'prefix-direct'"):  # the old name of prefix: no alias
        method_named("prefix-direct")
    with pytest.raises(ValueError, match="unknown method 'lora'"):
        method_named("lora")


def refusal(make) -> tuple[str, str, str]:
    """The message of the ValueError make() raises, and the file and function that raised it."""
    with pytest.raises(ValueError) as caught:
        make()
    where = caught.traceback[-1]
    return str(caught.value), Path(where.path).name, where.name


@pytest.mark.parametrize("method, options, needle", [
    ("soft", dict(layers="top"), "`layers` 'top': SoftPromptGPT has no rows at every block"),
    ("prefix", dict(hidden=8), "`hidden` shapes the network that makes the rows; PrefixGPT without one has none"),
    ("soft-mlp", dict(reparam_dim=8), "`reparam_dim`: the P-tuning encoder has no P' width k"),
    ("block-prefix-mlp", dict(mlp_form="separate"), "`mlp_form` 'separate' makes keys and values with separate MLPs; "
                                                    "BlockInputPrefixGPT has no keys"),
    ("prefix-mlp", dict(init="vocab"), "`init` 'vocab' is not one of PrefixGPT's with a network: random, zero"),
])
def test_a_bad_option_is_refused_once_in_one_place_whichever_way_it_comes(method, options, needle):
    """TuneConfig, Method.build and the wearer's class all ask the class (`check_options`): one message, one place,
    naming the field (the command line says it as a flag)."""
    m, base = METHODS[method], tiny_base()
    fields = {"prefix_layers" if k == "layers" else k: v for k, v in options.items()}
    wearer_options = {k: v for k, v in options.items() if k != "layers" or m.is_prefix}
    ways = [lambda: TuneConfig(method=method, **fields), lambda: m.build(base, 4, **options)]
    if "layers" not in options:  # only a prefix's class takes `layers`; the table refuses it for the others
        ways.append(lambda: m.model(base, 4, reparam=m.reparam, **wearer_options))
    said = {refusal(make) for make in ways}
    assert len(said) == 1, said
    message, file, function = said.pop()
    assert needle in message and (file, function) == ("prompted.py", "check_options"), (message, file, function)


def test_a_prompt_too_long_for_the_context_is_refused_in_one_place():
    base = tiny_base()
    n = base.config.block_size
    said = {refusal(lambda: METHODS["soft"].build(base, n)), refusal(lambda: METHODS["prefix-mlp"].build(base, n))}
    said |= {refusal(lambda: SoftPromptGPT(base, n)), refusal(lambda: PrefixGPT(base, n, reparam="mlp"))}
    assert said == {(f"`prompt_len` {n} leaves no room for tokens in the base's context of {n} positions: at most "
                     f"{n - 1}", "prompted.py", "check_prompt_len")}
