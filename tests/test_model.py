"""The GPT (minprefix/model.py) on the tiny base of helpers.py: 104 ids, a context of 32 (each test under a second)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import TOK, tiny_base, tiny_config

from minprefix.base import load_base, load_model, save_base
from minprefix.methods import METHODS
from minprefix.generate import KVCache, Reserved
from minprefix.model import CausalSelfAttention, attention_mask, pick_device


def reference_attention(attn: CausalSelfAttention, x, past_kv=None, top_left=False):
    """Explicit-softmax attention; query i sees keys 0 .. S-T+i (or 0 .. i if top_left)."""
    B, T, C = x.shape
    nh = attn.n_head
    hs = C // nh
    q, k, v = attn.c_attn(x).split(C, dim=2)
    q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
    if past_kv is not None:
        k = torch.cat([past_kv[0], k], dim=2)
        v = torch.cat([past_kv[1], v], dim=2)
    S = k.size(2)
    i = torch.arange(T)[:, None]
    j = torch.arange(S)[None, :]
    visible = j <= i if top_left else j <= S - T + i
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    scores = scores.masked_fill(~visible, float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v
    return attn.c_proj(y.transpose(1, 2).reshape(B, T, C)), (k, v)


def random_attention(seed=0):
    torch.manual_seed(seed)
    attn = CausalSelfAttention(tiny_config()).double().eval()
    with torch.no_grad():  # larger weights than the default init, so the masks matter visibly
        for p in attn.parameters():
            p.normal_(0, 0.5)
    return attn


@torch.no_grad()
def test_attention_with_past_matches_explicit_softmax_reference():
    """Query length T=3 against S=3+4 keys (4 past rows), float64."""
    attn = random_attention()
    B, nh, hs, T, P = 2, 2, 8, 3, 4
    x = torch.randn(B, T, 16, dtype=torch.float64)
    past = (torch.randn(B, nh, P, hs, dtype=torch.float64), torch.randn(B, nh, P, hs, dtype=torch.float64))
    y, (k, v) = attn(x, past)
    y_ref, (k_ref, v_ref) = reference_attention(attn, x, past)
    assert k.shape == (B, nh, P + T, hs)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(k, k_ref)
    torch.testing.assert_close(v, v_ref)


@torch.no_grad()
def test_reference_tells_bottom_right_from_top_left_mask():
    """The reference with a top-left causal mask gives different output, so the test above can fail."""
    attn = random_attention()
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    past = (torch.randn(2, 2, 4, 8, dtype=torch.float64), torch.randn(2, 2, 4, 8, dtype=torch.float64))
    y_br, _ = reference_attention(attn, x, past)
    y_tl, _ = reference_attention(attn, x, past, top_left=True)
    assert (y_br - y_tl).abs().max() > 1e-2
    y, _ = attn(x, past)
    assert not torch.allclose(y, y_tl, atol=1e-6)


@torch.no_grad()
def test_attention_without_past_matches_reference():
    """S == T: the plain causal triangle (the is_causal path)."""
    attn = random_attention(seed=1)
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    y, (k, _) = attn(x)
    y_ref, (k_ref, _) = reference_attention(attn, x)
    assert k.size(2) == 5
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(k, k_ref)


def test_attention_mask_3_by_5_is_bottom_right_aligned():
    expected = torch.tensor(
        [
            [True, True, True, False, False],
            [True, True, True, True, False],
            [True, True, True, True, True],
        ]
    )
    mask = attention_mask(3, 5)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)


@torch.no_grad()
def test_changing_a_later_token_never_changes_earlier_logits():
    model = tiny_base()
    idx = torch.randint(0, 104, (2, 10), generator=torch.Generator().manual_seed(0))
    logits, _ = model(idx)
    for t in (0, 4, 9):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 104
        new_logits, _ = model(changed)
        torch.testing.assert_close(new_logits[:, :t], logits[:, :t], atol=1e-6, rtol=0)
        assert not torch.allclose(new_logits[:, t], logits[:, t])  # the change did reach position t


@torch.no_grad()
def test_step_by_step_kv_cache_logits_equal_full_forward():
    model = tiny_base()
    idx = torch.randint(0, 104, (3, 12), generator=torch.Generator().manual_seed(1))
    full, _ = model(idx)
    cache = KVCache(model.config.n_layer)
    first, _ = model(idx[:, :4], cache=cache)  # a 4-token prompt, then one token at a time
    steps = [first] + [model(idx[:, t : t + 1], cache=cache)[0] for t in range(4, 12)]
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@torch.no_grad()
def test_greedy_generate_equals_loop_of_full_forwards():
    """generate(top_k=1) with the KV cache == argmax of a fresh full forward at each step (float64)."""
    model = tiny_base(seed=2).double()
    with torch.no_grad():  # spread the logits out so argmax is not decided by rounding
        model.wte.weight.mul_(20)
    prompt = torch.randint(0, 104, (2, 5), generator=torch.Generator().manual_seed(2))
    out = model.generate(prompt, max_new_tokens=10, top_k=1)
    expected = prompt
    for _ in range(10):
        logits, _ = model(expected)
        expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert out.shape == (2, 15)
    assert torch.equal(out, expected)


@pytest.mark.parametrize(
    "idx, needle",
    [
        (torch.tensor([[1, 2, 104]]), "104"),  # id == vocab_size
        (torch.tensor([[1, -3, 2]]), "-3"),  # negative id
        (torch.zeros(1, 33, dtype=torch.long), "block_size=32"),  # 33 > block_size
        (torch.tensor([1, 2, 3]), "2-D"),  # 1-D
        (torch.zeros(1, 2, 3, dtype=torch.long), "2-D"),  # 3-D
        (torch.zeros(1, 3), "float32"),  # float ids
    ],
    ids=["id>=vocab", "negative-id", "too-long", "1-D", "3-D", "float"],
)
def test_bad_input_raises_value_error_naming_the_problem(idx, needle):
    model = tiny_base()
    with pytest.raises(ValueError, match=needle):
        model(idx)


def test_too_long_input_message_names_length():
    with pytest.raises(ValueError, match=r"sequence of 33 positions"):
        tiny_base()(torch.zeros(1, 33, dtype=torch.long))


def test_out_of_vocab_message_names_vocab_size():
    with pytest.raises(ValueError, match=r"\[0, 104\)"):
        tiny_base()(torch.tensor([[200]]))


def test_generate_past_block_size_raises():
    model = tiny_base()
    prompt = torch.full((1, 20), 5)
    model.generate(prompt, max_new_tokens=12, top_k=1)  # exactly 32 fits
    with pytest.raises(ValueError, match=r"33 positions.*block_size=32"):
        model.generate(prompt, max_new_tokens=13, top_k=1)


def test_loss_falls_on_one_fixed_batch():
    """AdamW lr 1e-2, 30 steps on a fixed tiny batch: final loss < half the initial."""
    model = tiny_base().requires_grad_(True).train()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 104, (2, 8), generator=g)
    targets = torch.randint(0, 104, (2, 8), generator=g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(104), abs=0.1)  # small init: near-uniform predictions
    assert losses[-1] < losses[0] / 2


def test_loss_ignores_minus_one_targets():
    """lm_loss is the mean cross-entropy over positions whose target is not -1."""
    model = tiny_base()
    idx = torch.randint(0, 104, (2, 6), generator=torch.Generator().manual_seed(3))
    targets = idx.roll(-1, dims=1)
    targets[0, :3] = -1
    logits, loss = model(idx, targets)
    keep = targets != -1
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)


def test_lm_head_is_tied_to_token_embedding():
    model = tiny_base()
    assert model.lm_head.weight is model.wte.weight
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head.weight" not in names  # counted once, under wte
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_freeze_disables_grads_and_sets_eval_mode():
    model = tiny_base().requires_grad_(True).train()
    assert all(p.requires_grad for p in model.parameters()) and model.training
    assert model.freeze() is model
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training
    assert not any(m.training for m in model.modules())


def test_pick_device_defaults_to_cpu_without_gpu():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("a GPU is available here")
    assert pick_device() == "cpu"
    assert pick_device("cpu") == "cpu"


def test_pick_device_cuda_without_cuda_raises():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="'cuda:1'"):
        pick_device("cuda:1")


# ---------------------------------------------------------------------------- batches that cannot be silently wrong


def test_generate_refuses_a_negative_count_and_returns_the_input_for_zero():
    model, idx = tiny_base(), torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="max_new_tokens must be a non-negative integer.*got -1"):
        model.generate(idx, -1)
    assert torch.equal(model.generate(idx, 0), idx)


def test_generate_refuses_padded_rows():
    base, tok = load_base()
    assert base.config.pad_id == tok.pad_id == 0  # the shipped base carries its tokenizer's pad id
    for model in (base, tiny_base()):
        for idx in ([[5, 6, 7], [5, 6, 0]], [[5, 6, 7], [0, 5, 6]]):  # right-padded, left-padded
            with pytest.raises(ValueError, match="row 1 of idx holds the pad id 0 at position [02]: generate takes no "
                                                 "padding .*generate rows of different lengths"):
                model.generate(torch.tensor(idx), 2, top_k=1)


def test_generate_takes_every_id_of_a_model_without_a_pad_id():
    model = tiny_base(pad_id=None)
    assert model.generate(torch.tensor([[5, 0, 7]]), 3, top_k=1).shape == (1, 6)


def test_pad_id_must_be_a_token_id():
    for pad in (-1, TOK.vocab_size):
        with pytest.raises(ValueError, match=f"pad_id {pad} is not a token id"):
            tiny_base(pad_id=pad)


def test_a_base_saved_before_pad_id_loads_with_the_worlds_pad(tmp_path):
    save_base(tiny_base(), tmp_path)
    info = json.loads((tmp_path / "config.json").read_text())
    del info["config"]["pad_id"]  # as written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(info))
    assert load_model(tmp_path).config.pad_id == TOK.pad_id


def test_pick_device_names_the_valid_devices():
    for name in ("gpu", "cuda0", "CPU", "cuda:x"):
        with pytest.raises(ValueError, match=f"unknown device '{name}': use cpu, cuda, cuda:N .* or mps"):
            pick_device(name)


@torch.no_grad()
def test_a_reserved_cache_writes_new_rows_in_place_and_reads_like_concatenation():
    """KVCache.reserve: later rows go into one buffer (no copy of the past), read as torch.cat would give them."""
    from minprefix.model import extend

    g = torch.Generator().manual_seed(0)
    k, v = torch.randn(2, 2, 3, 4, generator=g), torch.randn(2, 2, 3, 4, generator=g)
    cache = KVCache(2)
    cache.layers[0] = (k, v)
    cache.reserve(6)
    assert cache.layers[1] is None and isinstance(cache.layers[0], Reserved) and cache.length == 3
    past, buffer = cache.layers[0], cache.layers[0].buffers[0].data_ptr()
    for n in (1, 2):  # two rows, then a step of two more (room for 6: 3 + 1 + 2)
        new_k, new_v = torch.randn(2, 2, n, 4, generator=g), torch.randn(2, 2, n, 4, generator=g)
        got = extend(past, new_k, new_v)
        assert isinstance(got, Reserved) and got[0].data_ptr() == buffer  # the same buffer: nothing copied
        assert torch.equal(got[0], torch.cat([past[0], new_k], 2))
        assert torch.equal(got[1], torch.cat([past[1], new_v], 2))
        past = got
    full = extend(past, new_k, new_v)  # no room left: concatenated, not written past the buffer
    assert not isinstance(full, Reserved) and full[0].size(2) == 8
    assert torch.equal(k, cache.layers[0][0])  # the rows reserved first are untouched


@pytest.mark.parametrize("method", list(METHODS))
@torch.no_grad()
def test_every_method_generates_with_the_reserved_cache_what_full_forwards_give(method):
    """Token for token: generate (a reserved cache, in place) against a fresh full forward per token, float64."""
    base = tiny_base(seed=3).double()
    with torch.no_grad():  # spread the logits out so argmax is not decided by rounding
        base.wte.weight.mul_(20)
    model = METHODS[method].build(base, 4, seed=0).double().eval()
    prompt = torch.randint(2, 104, (2, 5), generator=torch.Generator().manual_seed(4))
    out, expected = model.generate(prompt, 12, top_k=1), prompt
    for _ in range(12):
        logits, _ = model(expected)
        expected = torch.cat([expected, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, expected)


@torch.no_grad()
def test_generate_appends_each_new_token_into_the_reserved_buffers(monkeypatch):
    """After the prompt, every layer's keys and values of every new token go into a Reserved pair, never torch.cat."""
    import minprefix.model as model_module

    seen, extend = [], model_module.extend
    monkeypatch.setattr(model_module, "extend", lambda past, k, v: seen.append(type(past)) or extend(past, k, v))
    model = METHODS["prefix-mlp"].build(tiny_base(), 4, seed=0).eval()
    model.generate(torch.randint(2, 104, (1, 5), generator=torch.Generator().manual_seed(0)), 6, top_k=1)
    n_layer = model.config.n_layer
    assert seen[:n_layer] == [tuple] * n_layer  # the prompt: the prefix rows, concatenated once
    assert seen[n_layer:] == [Reserved] * (5 * n_layer)  # 5 more forwards for 6 tokens
