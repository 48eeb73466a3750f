"""Prefixes (minprefix/prefix.py): key/value and block-input, their equalities and conventions, some layers only.

`base` and `idx` are conftest's fixtures: the tiny base in float64, and a batch of token ids.
"""

import pytest
import torch
from helpers import TOK, tiny_base

from minprefix.artifacts import load_prompt, save_prompt
from minprefix.prefix import BlockInputPrefixGPT, PrefixBlock, PrefixGPT, base_kv, block_inputs, prefix_attention_share
from minprefix.soft_prompt import SoftPromptGPT
from minprefix.tune import TuneConfig


# ---------------------------------------------------------------------------- the views are equal


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


def test_prefix_blocks_match_explicit_attention_over_prefix_and_tokens(base):
    """One block by hand: the key/value prefix block's output equals attention over [prefix keys; token keys]."""
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


# ---------------------------------------------------------------------------- conventions


def test_key_value_layout_is_layer_kv_head_position_dim(base):
    c = base.config
    prefix = PrefixGPT(base, 4, reparam="mlp", reparam_dim=8, hidden=12)
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


def test_context_counts_the_prefix(base):
    model = PrefixGPT(base, 10)
    with pytest.raises(ValueError, match="block_size=32"):
        model(torch.zeros(1, 23, dtype=torch.long))  # 10 + 23 > 32
    model(torch.zeros(1, 22, dtype=torch.long))  # 10 + 22 fits
    with pytest.raises(ValueError, match="block_size"):
        SoftPromptGPT(base, 10)(torch.zeros(1, 23, dtype=torch.long))


# ---------------------------------------------------------------------------- a prefix on some layers


@pytest.mark.parametrize("cls", [PrefixGPT, BlockInputPrefixGPT])
def test_a_top_half_prefix_leaves_the_bottom_half_as_the_base_computes_it(cls):
    base = tiny_base(n_layer=4)
    model = cls(base, 3, init="random", layers="top")
    idx = torch.randint(0, TOK.vocab_size, (2, 7))
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o[0])) for b in base.blocks[:2]]
    model(idx)
    ours = list(captured)
    captured.clear()
    x = base.embed(base.wte(idx), 3)  # the base alone, tokens at positions 3.. as under the prefix
    for block in base.blocks[:2]:
        x, _ = block(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(ours[1], x)  # no prefix below the middle: exactly the plain blocks
    full = cls(base, 3, init="random", layers="all")
    full.row_maker.load_state_dict(model.row_maker.state_dict())
    assert not torch.allclose(full(idx)[0], model(idx)[0])  # and the bottom rows really are unused


def test_a_partial_prefix_generates_with_its_cache_and_survives_saving(tmp_path):
    base = tiny_base(n_layer=4)
    model = PrefixGPT(base, 3, init="random", layers="bottom")
    idx = torch.randint(2, TOK.vocab_size, (1, 5))  # no <pad>: generate refuses it
    out = model.generate(idx, 6, top_k=1)
    ids = idx
    for _ in range(6):  # the same tokens from full forward passes, without the cache
        ids = torch.cat([ids, model(ids)[0][:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, ids)
    save_prompt(model, tmp_path / "p.safetensors", base)
    loaded = load_prompt(tmp_path / "p.safetensors", base)
    assert loaded.layers == "bottom"
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])


def test_prefix_layers_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="`layers` 'top': SoftPromptGPT has no rows at every block"):
        TuneConfig(method="soft", prefix_layers="top")
    with pytest.raises(ValueError, match="a half needs at least 2 layers"):
        PrefixGPT(tiny_base(n_layer=1), 3, layers="bottom")


# ---------------------------------------------------------------------------- how a prefix mixes into attention


def test_prefix_attention_share_by_hand_for_one_position_and_one_token(base):
    """P = 1, T = 1: at layer 0 the share is sigmoid(q.k_prefix - q.k_token) / sqrt(hs), averaged over heads."""
    model = PrefixGPT(base, 1, init="random", seed=3)
    idx = torch.tensor([[5]])
    shares = prefix_attention_share(model, idx)
    x = base.wte(idx) + base.wpe(torch.tensor([1]))  # the token sits at position P = 1
    q, k, _ = base.blocks[0].attn.c_attn(base.blocks[0].ln_1(x)).split(base.config.d_model, dim=-1)
    nh, hs = base.config.n_head, base.config.head_dim
    q, k = q.view(nh, hs), k.view(nh, hs)
    k_prefix = model.prompt()[0, 0, :, 0]  # layer 0, keys: (n_head, head_dim)
    by_hand = torch.sigmoid(((q * k_prefix).sum(-1) - (q * k).sum(-1)) / hs**0.5).mean().item()
    assert len(shares) == base.config.n_layer and shares[0] == pytest.approx(by_hand, abs=1e-6)


def test_prefix_attention_share_is_the_same_in_both_views_and_zero_where_no_prefix_is_worn(base, idx):
    block = BlockInputPrefixGPT(base, 3, init="random", seed=2)
    as_kv = PrefixGPT.from_kv(base, block.to_kv().detach())
    assert prefix_attention_share(block, idx) == pytest.approx(prefix_attention_share(as_kv, idx), abs=1e-9)
    top = prefix_attention_share(PrefixGPT(base, 3, init="random", seed=2, layers="top"), idx)
    assert top[0] == 0 and 0 < top[1] < 1
