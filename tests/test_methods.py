"""Soft prompts and prefixes: the equalities between the three views, and the conventions."""

import pytest
import torch

from minprefix.model import GPT, GPTConfig
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT, base_kv, block_inputs
from minprefix.soft_prompt import SoftPromptGPT


@pytest.fixture
def base():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=104, block_size=32, n_layer=2, n_head=2, d_model=16)).double().freeze()


@pytest.fixture
def idx():
    return torch.randint(2, 104, (3, 7), generator=torch.Generator().manual_seed(1))


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


def test_block_input_prefix_is_a_key_value_prefix(base, idx):
    """DESIGN: K = W_k LN(p) + b_k and V = W_v LN(p) + b_v turn a block-input prefix into a key/value one."""
    block = BlockInputPrefixGPT(base, 3, init="random", seed=2)
    kv = PrefixGPT.from_kv(base, block.to_kv().detach())
    torch.testing.assert_close(kv(idx)[0], block(idx)[0], rtol=0, atol=1e-10)
    swapped = block.to_kv().detach().flip(1)  # keys and values exchanged: must differ
    assert not torch.allclose(PrefixGPT.from_kv(base, swapped)(idx)[0], block(idx)[0], atol=1e-6)


def test_zero_length_prefix_is_the_base(base, idx):
    for model in (PrefixGPT(base, 0, init="zero"), BlockInputPrefixGPT(base, 0, init="zero")):
        torch.testing.assert_close(model(idx)[0], base(idx)[0], rtol=0, atol=1e-12)


def test_prefix_of_a_texts_keys_and_values_equals_prepending_the_text(base, idx):
    text = [5, 9, 30, 77, 12]
    prefix = PrefixGPT.from_kv(base, base_kv(base, text))
    full, _ = base(torch.cat([torch.tensor([text] * idx.size(0)), idx], dim=1))
    torch.testing.assert_close(prefix(idx)[0], full[:, len(text):], rtol=0, atol=1e-10)
    # the same through the block-input view and the text init
    block = BlockInputPrefixGPT.from_hidden(base, block_inputs(base, text))
    torch.testing.assert_close(block(idx)[0], full[:, len(text):], rtol=0, atol=1e-10)


def test_text_init_of_a_prefix_is_the_texts_keys_and_values(base):
    ids = [40, 70, 52, 69, 76, 2]
    prefix = PrefixGPT(base, 6, init="text", init_ids=ids)
    torch.testing.assert_close(prefix.prefix_kv(), base_kv(base, ids))
    block = BlockInputPrefixGPT(base, 6, init="text", init_ids=ids)
    torch.testing.assert_close(block.block_rows(), block_inputs(base, ids))
    soft = SoftPromptGPT(base, 6, init="text", init_ids=ids)
    torch.testing.assert_close(soft.prompt(), base.wte.weight[ids])


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


def test_logits_have_the_length_of_the_input(base, idx):
    for model in (SoftPromptGPT(base, 5), PrefixGPT(base, 5), BlockInputPrefixGPT(base, 5)):
        assert model(idx)[0].shape == (idx.size(0), idx.size(1), base.config.vocab_size)


@pytest.mark.parametrize("make", [
    lambda b: PrefixGPT(b, 3, reparam_dim=8, hidden=12),
    lambda b: BlockInputPrefixGPT(b, 3, reparam_dim=8, hidden=12),
    lambda b: SoftPromptGPT(b, 3, reparam_dim=8, hidden=12),
])
def test_merge_drops_the_mlp_and_keeps_the_logits(base, idx, make):
    from minprefix.prompted import DirectPrefix, MLPPrefix

    model = make(base)
    merged = model.merge()
    assert isinstance(model.rows, MLPPrefix) and isinstance(merged.rows, DirectPrefix)
    assert [n for n, _ in merged.named_parameters() if not n.startswith("base.")] == ["rows.rows"]
    torch.testing.assert_close(merged(idx)[0], model(idx)[0], rtol=0, atol=1e-6)


def test_key_value_layout_is_layer_kv_head_position_dim(base):
    c = base.config
    prefix = PrefixGPT(base, 4, reparam_dim=8, hidden=12)
    assert prefix.prefix_kv().shape == (c.n_layer, 2, c.n_head, 4, c.head_dim)
    kv = torch.randn(c.n_layer, 2, c.n_head, 4, c.head_dim, dtype=torch.float64)
    torch.testing.assert_close(PrefixGPT.from_kv(base, kv).prefix_kv(), kv)


def test_every_real_token_sees_the_whole_prefix(base):
    """Changing any prefix position changes the logits of the first real token (the mask is bottom-right)."""
    kv = base_kv(base, [5, 9, 30, 77])
    idx = torch.tensor([[40, 41, 42]])
    ref = PrefixGPT.from_kv(base, kv)(idx)[0]
    for p in range(4):
        moved = kv.clone()
        moved[:, :, :, p] += 1.0
        assert not torch.allclose(PrefixGPT.from_kv(base, moved)(idx)[0][:, 0], ref[:, 0])


@pytest.mark.parametrize("make", [
    lambda b: SoftPromptGPT(b, 4, init="random"),
    lambda b: PrefixGPT(b, 4, reparam_dim=8, hidden=12),
    lambda b: BlockInputPrefixGPT(b, 4),
])
def test_generate_with_cache_equals_full_forwards(base, idx, make):
    model = make(base)
    out = model.generate(idx[:, :3], 6, top_k=1)
    cur = idx[:, :3]
    for _ in range(6):
        cur = torch.cat([cur, model(cur)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, cur)


def test_context_counts_the_prefix(base):
    model = PrefixGPT(base, 10)
    with pytest.raises(ValueError, match="block_size=32"):
        model(torch.zeros(1, 23, dtype=torch.long))  # 10 + 23 > 32
    model(torch.zeros(1, 22, dtype=torch.long))  # 10 + 22 fits
    with pytest.raises(ValueError, match="block_size"):
        SoftPromptGPT(base, 10)(torch.zeros(1, 23, dtype=torch.long))


def test_bad_shapes_are_clear_errors(base):
    with pytest.raises(ValueError, match="n_layer, 2, n_head"):
        PrefixGPT.from_kv(base, torch.zeros(2, 2, 2, 4))
    with pytest.raises(ValueError, match=r"\(P, 16\)"):
        SoftPromptGPT.from_embeddings(base, torch.zeros(4, 17))
    with pytest.raises(ValueError, match="unknown init"):
        PrefixGPT(base, 4, init="ones")
    with pytest.raises(ValueError, match="with the MLP they are its output"):
        PrefixGPT(base, 4, reparam_dim=8, init="text", init_ids=[5, 6])


def test_only_the_method_trains(base):
    for model in (SoftPromptGPT(base, 4), PrefixGPT(base, 4, reparam_dim=8, hidden=12), BlockInputPrefixGPT(base, 4)):
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and not any(n.startswith("base.") for n in trainable)


@pytest.mark.parametrize("make", [
    lambda b: SoftPromptGPT(b, 4),
    lambda b: PrefixGPT(b, 4),
    lambda b: PrefixGPT(b, 4, reparam_dim=8, hidden=12),
    lambda b: BlockInputPrefixGPT(b, 4),
])
def test_state_dict_holds_the_base_once_and_the_rows_once(base, make):
    """No module registered twice: the base's weights under base.*, the method's under rows.*, nothing else."""
    state = make(base).state_dict()
    assert {k.removeprefix("base.") for k in state if k.startswith("base.")} == set(base.state_dict())
    assert all(k.startswith(("base.", "rows.")) for k in state)


def test_prefix_blocks_match_explicit_attention_over_prefix_and_tokens(base):
    """One block by hand: the key/value prefix block's output equals attention over [prefix keys; token keys]."""
    from minprefix.prefix import PrefixBlock

    torch.manual_seed(0)
    block, c = base.blocks[0], base.config
    x = torch.randn(2, 5, c.d_model, dtype=torch.float64)
    kv = torch.randn(2, 2, c.n_head, 3, c.head_dim, dtype=torch.float64)
    out, _ = PrefixBlock(block)(x, kv)
    h = block.ln_1(x)
    q, k, v = block.attn.c_attn(h).split(c.d_model, dim=2)
    split = lambda t: t.view(2, 5, c.n_head, c.head_dim).transpose(1, 2)  # (B, nh, T, hs)
    k = torch.cat([kv[:, 0], split(k)], dim=2)
    v = torch.cat([kv[:, 1], split(v)], dim=2)
    att = split(q) @ k.transpose(-1, -2) / c.head_dim ** 0.5  # (B, nh, 5, 3 + 5)
    allowed = torch.ones(5, 8, dtype=torch.bool).tril(3)  # every token sees the prefix, tokens causal
    y = (att.masked_fill(~allowed, float("-inf")).softmax(-1) @ v).transpose(1, 2).reshape(2, 5, c.d_model)
    x = x + block.attn.c_proj(y)
    expected = x + block.mlp(block.ln_2(x))
    torch.testing.assert_close(out, expected)
