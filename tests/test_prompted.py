"""PromptedGPT's encoders: P-tuning's prompt encoder beside Li & Liang's MLP (PEFT cross-check: test_crosscheck_hf)."""

import pytest
import torch

from minprefix.model import GPT, GPTConfig
from minprefix.params import count_trainable
from minprefix.prefix import PrefixGPT
from minprefix.prompted import DirectPrefix, MLPPrefix, PTuningEncoder
from minprefix.soft_prompt import SoftPromptGPT

D, L = 16, 2


@pytest.fixture
def base():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=104, block_size=32, n_layer=L, n_head=2, d_model=D)).double().freeze()


@pytest.fixture
def idx():
    return torch.randint(2, 104, (3, 7), generator=torch.Generator().manual_seed(1))


def test_ptuning_encoder_is_a_table_and_a_three_layer_relu_mlp():
    enc = PTuningEncoder(prompt_len=4, hidden=12, width=D)
    assert enc.embedding.shape == (4, D)
    assert [type(m) for m in enc.mlp] == [torch.nn.Linear, torch.nn.ReLU] * 2 + [torch.nn.Linear]
    assert [tuple(m.weight.shape) for m in enc.mlp[::2]] == [(12, D), (12, 12), (D, 12)]
    assert enc().shape == (4, D)
    torch.testing.assert_close(enc(), enc.mlp(enc.embedding))  # row by row, no mixing across rows


def test_encoder_mlp_is_still_li_and_liang(base):
    assert isinstance(SoftPromptGPT(base, 4, reparam_dim=8, hidden=12).rows, MLPPrefix)
    assert isinstance(SoftPromptGPT(base, 4, reparam_dim=8, hidden=12, encoder="mlp").rows, MLPPrefix)
    assert isinstance(SoftPromptGPT(base, 4, encoder="mlp").rows, DirectPrefix)


def test_ptuning_counts_and_merge(base, idx):
    P, h = 4, 12
    model = SoftPromptGPT(base, P, reparam_dim=D, hidden=h, encoder="ptuning")
    assert isinstance(model.rows, PTuningEncoder)
    assert count_trainable(model) == P * D + D * h + h + h * h + h + h * D + D
    merged = model.merge()
    assert isinstance(merged.rows, DirectPrefix)
    assert [n for n, _ in merged.named_parameters() if not n.startswith("base.")] == ["rows.rows"]
    torch.testing.assert_close(merged(idx)[0], model(idx)[0], rtol=0, atol=1e-10)


def test_ptuning_on_a_prefix_takes_the_prefix_width(base, idx):
    """The encoder's table is as wide as the rows: 2*L*d for a key/value prefix."""
    model = PrefixGPT(base, 3, reparam_dim=2 * L * D, hidden=8, encoder="ptuning")
    assert model.rows().shape == (3, 2 * L * D)
    torch.testing.assert_close(model.merge()(idx)[0], model(idx)[0], rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=f"reparam_dim must be {2 * L * D}"):
        PrefixGPT(base, 3, reparam_dim=D, encoder="ptuning")


def test_ptuning_is_seeded_and_leaves_the_global_rng_alone(base):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = SoftPromptGPT(base, 4, reparam_dim=D, hidden=12, encoder="ptuning", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    b = SoftPromptGPT(base, 4, reparam_dim=D, hidden=12, encoder="ptuning", seed=3)
    c = SoftPromptGPT(base, 4, reparam_dim=D, hidden=12, encoder="ptuning", seed=4)
    torch.testing.assert_close(a.rows(), b.rows(), rtol=0, atol=0)
    assert not torch.allclose(a.rows(), c.rows())


def test_ptuning_zero_init_starts_at_zero_and_trains(base, idx):
    model = SoftPromptGPT(base, 4, reparam_dim=D, hidden=12, init="zero", encoder="ptuning")
    assert torch.count_nonzero(model.rows()) == 0
    model(idx, targets=idx)[1].backward()
    assert model.rows.mlp[4].weight.grad.abs().sum() > 0  # the zeroed layer still gets a gradient


def test_ptuning_errors_are_clear(base):
    with pytest.raises(ValueError, match=r"reparam_dim must be 16 .* got None"):
        SoftPromptGPT(base, 4, encoder="ptuning")  # None would be a direct prompt: say so, don't guess
    with pytest.raises(ValueError, match=r"reparam_dim must be 16 .* got 8"):
        SoftPromptGPT(base, 4, reparam_dim=8, encoder="ptuning")
    with pytest.raises(ValueError, match="unknown encoder 'lstm'; choose from mlp, ptuning"):
        SoftPromptGPT(base, 4, reparam_dim=D, encoder="lstm")
    with pytest.raises(ValueError, match="with the P-tuning encoder they are its output"):
        SoftPromptGPT(base, 4, reparam_dim=D, encoder="ptuning", init="vocab")
