"""What every prompted model shares (minprefix/prompted.py): inits, merge, generation, its state, clear errors;
and the encoders, P-tuning's beside Li & Liang's MLP (the PEFT cross-check is in test_crosscheck_hf).

`base` and `idx` are conftest's fixtures: the tiny base in float64, and a batch of token ids.
"""

import pytest
import torch

from minprefix.methods import METHODS
from minprefix.params import count_trainable
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.prompted import DirectPrefix, MLPPrefix, PTuningEncoder
from minprefix.soft_prompt import SoftPromptGPT
from minprefix.tune import TuneConfig

D, L = 16, 2  # the tiny base's width and depth (helpers.tiny_config)


# ---------------------------------------------------------------------------- inits


def test_text_init_repeats_or_cuts_the_text_to_the_prompt_length(base):
    soft = SoftPromptGPT(base, 5, init="text", init_ids=[7, 8])
    torch.testing.assert_close(soft.prompt(), base.wte.weight[[7, 8, 7, 8, 7]])


def test_vocab_init_is_rows_of_real_tokens(base):
    soft = SoftPromptGPT(base, 6, init="vocab", seed=3)
    table = base.wte.weight
    for row in soft.prompt():
        assert (table - row).abs().sum(1).min() == 0  # each row is some token's embedding


def test_text_init_refuses_ids_outside_the_vocabulary(base):
    with pytest.raises(ValueError, match="outside the base's vocabulary"):
        SoftPromptGPT(base, 4, init="text", init_ids=[3, 104])
    with pytest.raises(ValueError, match="non-empty text"):
        PrefixGPT(base, 4, init="text", init_ids=[])


# ---------------------------------------------------------------------------- what every method shares


def test_logits_have_the_length_of_the_input(base, idx):
    for model in (SoftPromptGPT(base, 5), PrefixGPT(base, 5), BlockInputPrefixGPT(base, 5)):
        assert model(idx)[0].shape == (idx.size(0), idx.size(1), base.config.vocab_size)


@pytest.mark.parametrize("make", [
    lambda b: PrefixGPT(b, 3, reparam="mlp", reparam_dim=8, hidden=12),
    lambda b: BlockInputPrefixGPT(b, 3, reparam="mlp", reparam_dim=8, hidden=12),
    lambda b: SoftPromptGPT(b, 3, reparam="mlp", reparam_dim=8, hidden=12),
])
def test_merge_drops_the_mlp_and_keeps_the_logits(base, idx, make):
    model = make(base)
    merged = model.merge()
    assert isinstance(model.row_maker, MLPPrefix) and isinstance(merged.row_maker, DirectPrefix)
    assert [n for n, _ in merged.named_parameters() if not n.startswith("base.")] == ["row_maker.rows"]
    torch.testing.assert_close(merged(idx)[0], model(idx)[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda b: SoftPromptGPT(b, 4, init="random"),
    lambda b: PrefixGPT(b, 4, reparam="mlp", reparam_dim=8, hidden=12),
    lambda b: BlockInputPrefixGPT(b, 4),
])
def test_generate_with_cache_equals_full_forwards(base, idx, make):
    model = make(base)
    out = model.generate(idx[:, :3], 6, top_k=1)
    cur = idx[:, :3]
    for _ in range(6):
        cur = torch.cat([cur, model(cur)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, cur)


def test_bad_shapes_are_clear_errors(base):
    with pytest.raises(ValueError, match="n_layer, 2, n_head"):
        PrefixGPT.from_kv(base, torch.zeros(2, 2, 2, 4))
    with pytest.raises(ValueError, match=r"\(P, 16\)"):
        SoftPromptGPT.from_embeddings(base, torch.zeros(4, 17))
    with pytest.raises(ValueError, match="`init` 'ones' is not one of PrefixGPT's: random, zero, normal"):
        PrefixGPT(base, 4, init="ones")
    with pytest.raises(ValueError, match="`init` 'text' is not one of PrefixGPT's with a network: random, zero"):
        PrefixGPT(base, 4, reparam="mlp", reparam_dim=8, init="text", init_ids=[5, 6])


def test_only_the_method_trains(base):
    for model in (SoftPromptGPT(base, 4), PrefixGPT(base, 4, reparam="mlp", reparam_dim=8, hidden=12),
                  BlockInputPrefixGPT(base, 4)):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and not any(n.startswith("base.") for n in trainable)


@pytest.mark.parametrize("make", [
    lambda b: SoftPromptGPT(b, 4),
    lambda b: PrefixGPT(b, 4),
    lambda b: PrefixGPT(b, 4, reparam="mlp", reparam_dim=8, hidden=12),
    lambda b: BlockInputPrefixGPT(b, 4),
])
def test_state_dict_holds_the_base_once_and_the_rows_once(base, make):
    """No module registered twice: the base's weights under base.*, the method's under row_maker.*, nothing else."""
    state = make(base).state_dict()
    assert {k.removeprefix("base.") for k in state if k.startswith("base.")} == set(base.state_dict())
    assert all(k.startswith(("base.", "row_maker.")) for k in state)


# ---------------------------------------------------------------------------- the encoders


def test_ptuning_encoder_is_a_table_and_a_three_layer_relu_mlp():
    enc = PTuningEncoder(prompt_len=4, hidden=12, width=D)
    assert enc.embedding.shape == (4, D)
    assert [type(m) for m in enc.mlp] == [torch.nn.Linear, torch.nn.ReLU] * 2 + [torch.nn.Linear]
    assert [tuple(m.weight.shape) for m in enc.mlp[::2]] == [(12, D), (12, 12), (D, 12)]
    assert enc().shape == (4, D)
    torch.testing.assert_close(enc(), enc.mlp(enc.embedding))  # row by row, no mixing across rows


def test_reparam_says_which_network_makes_the_rows(base):
    assert isinstance(SoftPromptGPT(base, 4, reparam="mlp", reparam_dim=8, hidden=12).row_maker, MLPPrefix)
    assert isinstance(SoftPromptGPT(base, 4, reparam="mlp").row_maker, MLPPrefix)  # k = d_model, h = 512
    assert isinstance(SoftPromptGPT(base, 4).row_maker, DirectPrefix)
    with pytest.raises(ValueError, match="`reparam_dim` shapes the network that makes the rows; SoftPromptGPT"):
        SoftPromptGPT(base, 4, reparam_dim=8)  # no network named: say so, don't guess


def test_ptuning_counts_and_merge(base, idx):
    P, h = 4, 12
    model = SoftPromptGPT(base, P, hidden=h, reparam="ptuning")
    assert isinstance(model.row_maker, PTuningEncoder)
    assert count_trainable(model) == P * D + D * h + h + h * h + h + h * D + D
    merged = model.merge()
    assert isinstance(merged.row_maker, DirectPrefix)
    assert [n for n, _ in merged.named_parameters() if not n.startswith("base.")] == ["row_maker.rows"]
    torch.testing.assert_close(merged(idx)[0], model(idx)[0], rtol=0, atol=1e-10)


def test_ptuning_on_a_prefix_takes_the_prefix_width(base, idx):
    """The encoder's table is as wide as the rows: 2*L*d for a key/value prefix."""
    model = PrefixGPT(base, 3, hidden=8, reparam="ptuning")
    assert model.rows().shape == (3, 2 * L * D)
    torch.testing.assert_close(model.merge()(idx)[0], model(idx)[0], rtol=0, atol=1e-10)


def test_ptuning_is_seeded_and_leaves_the_global_rng_alone(base):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = SoftPromptGPT(base, 4, hidden=12, reparam="ptuning", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = SoftPromptGPT(base, 4, hidden=12, reparam="ptuning", seed=3)
    c = SoftPromptGPT(base, 4, hidden=12, reparam="ptuning", seed=4)
    torch.testing.assert_close(a.rows(), b.rows(), rtol=0, atol=0)
    assert not torch.allclose(a.rows(), c.rows())


def test_ptuning_zero_init_starts_at_zero_and_trains(base, idx):
    model = SoftPromptGPT(base, 4, hidden=12, init="zero", reparam="ptuning")
    assert torch.count_nonzero(model.rows()) == 0
    model(idx, targets=idx)[1].backward()
    assert model.row_maker.mlp[4].weight.grad.abs().sum() > 0  # the zeroed layer still gets a gradient


def test_ptuning_errors_are_clear(base):
    with pytest.raises(ValueError, match="`reparam_dim`: the P-tuning encoder has no P' width k"):
        SoftPromptGPT(base, 4, reparam="ptuning", reparam_dim=8)
    with pytest.raises(ValueError, match="`reparam` 'lstm' is none of: None .*, mlp, ptuning"):
        SoftPromptGPT(base, 4, reparam="lstm")
    with pytest.raises(ValueError, match="`init` 'vocab' is not one of SoftPromptGPT's with a network: random, zero"):
        SoftPromptGPT(base, 4, reparam="ptuning", init="vocab")


def test_separate_mlp_form_makes_keys_and_values_from_two_nets_that_share_nothing(base, idx):
    model = PrefixGPT(base, 3, reparam="mlp", reparam_dim=4, hidden=8, mlp_form="separate")
    kv = model.prompt()  # (L, 2, nh, P, hs)
    L, d = base.config.n_layer, base.config.d_model
    keys = kv[:, 0].permute(2, 0, 1, 3).reshape(3, L, d)
    assert torch.allclose(keys, model.row_maker.mlp(model.row_maker.input).view(3, L, d))  # keys: the first net alone
    keys.sum().backward()
    untouched = [model.row_maker.input_2, *model.row_maker.mlp_2.parameters()]  # the values' net
    assert all(p.grad is None or not p.grad.any() for p in untouched)
    assert model.row_maker.input.grad.abs().sum() > 0
    assert count_trainable(model) == METHODS["prefix-mlp"].trainable(base.config, 3, 4, 8, "separate")
    with torch.no_grad():
        assert torch.allclose(model(idx)[0], model.merge()(idx)[0], atol=1e-5)


def test_linear_mlp_form_has_no_nonlinearity(base):
    rows = PrefixGPT(base, 3, reparam="mlp", reparam_dim=4, hidden=8, mlp_form="linear").row_maker
    assert isinstance(rows.mlp[1], torch.nn.Identity)
    def g(x):  # W2 W1 x: the MLP without its constant W2 b1 + b2
        return rows.mlp(x) - rows.mlp[2](rows.mlp[0].bias)
    assert torch.allclose(g(2 * rows.input), 2 * g(rows.input), atol=1e-5)


def test_separate_linear_form_removes_both_the_sharing_and_the_tanh(base, idx):
    rows = PrefixGPT(base, 3, reparam="mlp", reparam_dim=4, hidden=8, mlp_form="separate-linear").row_maker
    assert rows.chunk == base.config.d_model  # keys and values from two nets
    for mlp, x in ((rows.mlp, rows.input), (rows.mlp_2, rows.input_2)):
        assert isinstance(mlp[1], torch.nn.Identity)  # each linear
        g = lambda x, mlp=mlp: mlp(x) - mlp[2](mlp[0].bias)  # noqa: E731
        assert torch.allclose(g(2 * x), 2 * g(x), atol=1e-5)
    built = PrefixGPT(base, 3, reparam="mlp", reparam_dim=4, hidden=8, mlp_form="separate-linear")
    assert METHODS["prefix-mlp"].trainable(base.config, 3, 4, 8, "separate-linear") == count_trainable(
        built) == METHODS["prefix-mlp"].trainable(base.config, 3, 4, 8, "separate")
    with pytest.raises(ValueError, match="'separate-linear' makes keys and values"):
        BlockInputPrefixGPT(base, 3, reparam="mlp", reparam_dim=4, hidden=8, mlp_form="separate-linear")


def test_normal_init_is_standard_normal_whatever_the_rows_scale(base):
    rows = PrefixGPT(base, 8, init="normal", seed=2).row_maker.rows  # 8 x (2 * 2 * 16) numbers
    assert abs(rows.mean().item()) < 0.15 and 0.85 < rows.std().item() < 1.15
    assert not torch.equal(rows, PrefixGPT(base, 8, init="normal", seed=3).row_maker.rows)
    scaled = PrefixGPT(base, 8, init="random", seed=2).row_maker.rows  # at the scale of real tokens' keys and values
    assert abs(scaled.std().item() - rows.std().item()) > 0.1


def test_mlp_forms_are_refused_where_they_mean_nothing(base):
    with pytest.raises(ValueError, match="only a key/value prefix"):
        BlockInputPrefixGPT(base, 3, reparam="mlp", reparam_dim=4, hidden=8, mlp_form="separate")
    with pytest.raises(ValueError, match="PrefixGPT without a network has none"):
        PrefixGPT(base, 3, mlp_form="linear")
    with pytest.raises(ValueError, match="`mlp_form` 'wide' is not one of: shared"):
        MLPPrefix(3, 4, 8, 16, form="wide")
    with pytest.raises(ValueError, match="`mlp_form` 'separate' .* BlockInputPrefixGPT has no keys"):
        TuneConfig(method="block-prefix-mlp", mlp_form="separate")
    with pytest.raises(ValueError, match="`mlp_form` 'linear' .* PrefixGPT without a network has none"):
        TuneConfig(method="prefix", mlp_form="linear")
