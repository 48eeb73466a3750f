"""Cross-checks against Hugging Face: transformers' GPT-2 and PEFT as independent oracles.

minprefix writes GPT-2, soft prompts and prefix tuning from scratch. Here each piece is held
against the reference implementation on a tiny random model built from a config (no hub):

- GPT.from_hf: same logits and same greedy tokens as GPT2LMHeadModel.
- PEFT prefix tuning (direct and with the MLP reparameterization): PEFT's per-layer prefix
  keys/values, moved into minprefix's (n_layer, 2, n_head, P, head_dim) layout, give the same
  logits and the same greedy generation.
- PEFT prompt tuning: PEFT's prompt rows give the same logits as SoftPromptGPT.
- PEFT P-tuning (PromptEncoder, MLP variant): its weights copied into our `PTuningEncoder` give
  the same prompt rows, logits and greedy tokens, and the same number of trainable parameters.

Every check also has a "this test can fail" assert: a deliberately wrong input must not match.
"""

import inspect

import pytest
import torch

NEEDS_DEV = "cross-checks need the dev extra: pip install -e .[dev]"
transformers = pytest.importorskip("transformers", reason=NEEDS_DEV)
peft = pytest.importorskip("peft", reason=NEEDS_DEV)

from minprefix.model import GPT  # noqa: E402
from minprefix.params import count_trainable  # noqa: E402
from minprefix.prefix import PrefixGPT  # noqa: E402
from minprefix.soft_prompt import SoftPromptGPT  # noqa: E402

# transformers 5 warns that GPT-2's `past_key_values` argument is being renamed; PEFT still uses it.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

VOCAB, BLOCK, D, LAYERS, HEADS = 50, 32, 32, 2, 4
P = 4  # virtual tokens (prefix or prompt rows)
ATOL = 1e-5


def tiny_gpt2(seed: int = 0):
    """A random GPT2LMHeadModel small enough for CPU tests, in eval mode, without dropout.

    initializer_range=0.2 (GPT-2 uses 0.02) gives O(1) logits, so that an atol of 1e-5 is a
    strict comparison and not one between numbers that are all near zero anyway.
    eos/pad/bos are ids inside the tiny vocabulary; eos is left out of generate() below so that
    HF never stops early.
    """
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=BLOCK, n_embd=D, n_layer=LAYERS, n_head=HEADS,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=0.2,
        bos_token_id=0, eos_token_id=None, pad_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).float().eval()


def batch(seed: int = 1, B: int = 2, T: int = 6):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (B, T), generator=g)


def hf_greedy(model, idx, n, **kw):
    """HF greedy decoding of exactly n new tokens: no sampling, no early stop on eos."""
    return model.generate(
        input_ids=idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, min_new_tokens=n,
        do_sample=False, num_beams=1, pad_token_id=0, eos_token_id=None, **kw,
    )


def randomize_(module, seed: int, std: float = 0.5):
    """Overwrite every parameter of a PEFT prompt encoder with noise: PEFT may start at zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)


# --- 1. the base model ------------------------------------------------------------------------


def test_from_hf_logits_match_gpt2():
    hf = tiny_gpt2()
    ours = GPT.from_hf(hf).eval()
    idx = batch()
    with torch.no_grad():
        want = hf(input_ids=idx).logits
        got, _ = ours(idx)
    assert got.shape == want.shape == (*idx.shape, VOCAB)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    # can fail: another random GPT-2 of the same shape gives other logits
    with torch.no_grad():
        other, _ = GPT.from_hf(tiny_gpt2(seed=7)).eval()(idx)
    assert not torch.allclose(other, want, atol=1e-2)


def test_from_hf_greedy_generation_matches_gpt2():
    hf = tiny_gpt2()
    ours = GPT.from_hf(hf).eval()
    idx, n = batch(T=5), 10
    want = hf_greedy(hf, idx, n)
    got = ours.generate(idx, n, top_k=1)
    assert want.shape == (idx.size(0), idx.size(1) + n)  # HF returns the prompt plus n new ids
    assert torch.equal(got, want)


def test_from_hf_decodes_a_prompt_holding_id_0_as_gpt2_does():
    """GPT-2 has no pad token (id 0 is "!"): a converted GPT generates from any id, token for token as HF does."""
    hf = tiny_gpt2()
    ours = GPT.from_hf(hf).eval()
    assert ours.config.pad_id is None
    idx = torch.tensor([[5, 0, 7], [0, 0, 3]])
    assert torch.equal(ours.generate(idx, 6, top_k=1), hf_greedy(hf, idx, 6))


def test_from_hf_rejects_mismatched_weights():
    # A state dict that does not fit the config: the position table has 32 rows, the config says 16.
    hf = tiny_gpt2()
    hf.config.n_positions = 16
    with pytest.raises(ValueError, match="wpe"):
        GPT.from_hf(hf)
    # An activation this GPT does not implement.
    hf = tiny_gpt2()
    hf.config.activation_function = "relu"
    with pytest.raises(ValueError, match="activation"):
        GPT.from_hf(hf)


# --- 2. prefix tuning -------------------------------------------------------------------------


def peft_prefix_model(projection: bool, seed: int = 3):
    """A PEFT prefix-tuning model on a tiny GPT-2, its prefix encoder randomized."""
    hf = tiny_gpt2()
    config = peft.PrefixTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P, prefix_projection=projection,
        encoder_hidden_size=16,
    )
    model = peft.get_peft_model(hf, config).eval()
    randomize_(model.prompt_encoder["default"], seed)
    return model


def peft_prefix_kv(model) -> torch.Tensor:
    """PEFT's prefix as minprefix's (n_layer, 2, n_head, P, head_dim) tensor.

    peft 0.21 `get_prompt(batch_size)` returns a transformers DynamicCache (transformers >= 4.56)
    whose `layers[i].keys` / `.values` are (batch, n_head, P, head_dim): the prefix is the
    cache's content before any real token.
    """
    with torch.no_grad():
        cache = model.get_prompt(batch_size=1)
    assert isinstance(cache, transformers.DynamicCache)
    assert cache.get_seq_length() == P
    return torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers])


@pytest.mark.parametrize("projection", [False, True], ids=["direct", "mlp"])
def test_prefix_logits_match_peft(projection):
    peft_model = peft_prefix_model(projection)
    kv = peft_prefix_kv(peft_model)
    assert kv.shape == (LAYERS, 2, HEADS, P, D // HEADS)
    assert kv.abs().mean() > 0.1  # randomized, not PEFT's near-zero start
    ours = PrefixGPT.from_kv(GPT.from_hf(peft_model.get_base_model()), kv).eval()
    idx = batch()
    with torch.no_grad():
        want = peft_model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits
        got, _ = ours(idx)
    # PEFT's prefix-tuning logits cover the real tokens only (the prefix lives in the cache),
    # the same convention as ours: logits are as long as the input ids.
    assert want.shape == got.shape == (*idx.shape, VOCAB)
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)

    # can fail: keys and values swapped give other logits
    with torch.no_grad():
        swapped, _ = PrefixGPT.from_kv(ours.base, kv.flip(1)).eval()(idx)
    assert not torch.allclose(swapped, want, atol=1e-3)
    # ...but reversing the P rows changes nothing, so it is no sanity check: prefix rows get no
    # position embedding, and attention treats its (key, value) pairs as a set.
    with torch.no_grad():
        reversed_rows, _ = PrefixGPT.from_kv(ours.base, kv.flip(3)).eval()(idx)
    torch.testing.assert_close(reversed_rows, want, atol=ATOL, rtol=0)


def test_prefix_flat_layout_matches_peft():
    """PEFT's direct prefix parameter, (P, n_layer * 2 * d_model), is our direct rows, row for row."""
    peft_model = peft_prefix_model(projection=False)
    ours = PrefixGPT.from_kv(GPT.from_hf(peft_model.get_base_model()), peft_prefix_kv(peft_model))
    flat = peft_model.prompt_encoder["default"].embedding.weight  # (P, n_layer * 2 * d_model)
    torch.testing.assert_close(ours.row_maker.rows, flat, atol=0, rtol=0)


def test_reparameterized_prefix_matches_peft_projection():
    """PEFT's prefix_projection is Li & Liang's MLP, as is ours: copy its weights, same prefix."""
    peft_model = peft_prefix_model(projection=True)
    encoder = peft_model.prompt_encoder["default"]
    base = GPT.from_hf(peft_model.get_base_model())
    ours = PrefixGPT(base, P, reparam="mlp", reparam_dim=D, hidden=16).eval()  # its weights are overwritten just below
    with torch.no_grad():
        ours.row_maker.input.copy_(encoder.embedding.weight)  # P' (P, token_dim)
        ours.row_maker.mlp.load_state_dict(encoder.transform.state_dict())  # Linear, Tanh, Linear
    torch.testing.assert_close(ours.prefix_kv(), peft_prefix_kv(peft_model), atol=ATOL, rtol=0)
    idx = batch()
    with torch.no_grad():
        want = peft_model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits
        got, _ = ours(idx)
        merged, _ = ours.merge().eval()(idx)  # the stored form keeps the logits
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    torch.testing.assert_close(merged, want, atol=ATOL, rtol=0)


# --- 3. prompt tuning -------------------------------------------------------------------------


def test_soft_prompt_logits_match_peft():
    hf = tiny_gpt2()
    config = peft.PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P,
        prompt_tuning_init=peft.PromptTuningInit.RANDOM,
    )
    peft_model = peft.get_peft_model(hf, config).eval()
    randomize_(peft_model.prompt_encoder["default"], seed=4)
    with torch.no_grad():
        rows = peft_model.get_prompt(batch_size=1)[0]  # (P, d_model): the embedding's rows
    table = peft_model.prompt_encoder["default"].embedding.weight
    torch.testing.assert_close(rows, table, atol=0, rtol=0)
    ours = SoftPromptGPT.from_embeddings(GPT.from_hf(peft_model.get_base_model()), rows).eval()
    idx = batch()
    with torch.no_grad():
        want = peft_model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits
        got, _ = ours(idx)
    # PEFT returns logits for the P prompt positions too; ours are for the real tokens only.
    assert want.shape == (idx.size(0), P + idx.size(1), VOCAB)
    torch.testing.assert_close(got, want[:, P:], atol=ATOL, rtol=0)
    # can fail: prompt rows change place, so they get other position embeddings
    with torch.no_grad():
        shuffled, _ = SoftPromptGPT.from_embeddings(ours.base, rows.flip(0)).eval()(idx)
    assert not torch.allclose(shuffled, want[:, P:], atol=1e-3)


# --- 3b. P-tuning ------------------------------------------------------------------------------


def peft_ptuning_model(hidden: int | None = 16, seed: int | None = 5):
    """A PEFT P-tuning model (MLP prompt encoder) on a tiny GPT-2; seed=None keeps PEFT's own init."""
    config = peft.PromptEncoderConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=P, encoder_reparameterization_type="MLP",
        encoder_hidden_size=hidden,  # None: PEFT takes token_dim
    )
    model = peft.get_peft_model(tiny_gpt2(), config).eval()
    if seed is not None:
        randomize_(model.prompt_encoder["default"], seed)
    return model


def ptuning_from_peft(peft_model, hidden: int = 16) -> SoftPromptGPT:
    """Our P-tuning soft prompt holding a copy of PEFT's encoder: its table E and its MLP head."""
    encoder = peft_model.prompt_encoder["default"]
    # the MLP variant is exactly Linear, ReLU, Linear, ReLU, Linear: no LSTM, no dropout
    assert not hasattr(encoder, "lstm_head")
    assert [type(m) for m in encoder.mlp_head] == [torch.nn.Linear, torch.nn.ReLU] * 2 + [torch.nn.Linear]
    base = GPT.from_hf(peft_model.get_base_model())
    ours = SoftPromptGPT(base, P, hidden=hidden, reparam="ptuning").eval()
    with torch.no_grad():
        ours.row_maker.embedding.copy_(encoder.embedding.weight)  # E (P, d): virtual token ids 0..P-1
        ours.row_maker.mlp.load_state_dict(encoder.mlp_head.state_dict())  # strict: same layers, same shapes
    return ours


def test_ptuning_logits_match_peft():
    peft_model = peft_ptuning_model()
    ours = ptuning_from_peft(peft_model)
    with torch.no_grad():
        want_rows = peft_model.get_prompt(batch_size=1)[0]  # (P, d_model): the encoder's output
    assert want_rows.shape == (P, D)
    torch.testing.assert_close(ours.rows(), want_rows, atol=ATOL, rtol=0)
    idx = batch()
    with torch.no_grad():
        want = peft_model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits
        got, _ = ours(idx)
        merged, _ = ours.merge().eval()(idx)  # the stored form keeps the logits
    # PEFT returns logits for the P prompt positions too; ours are for the real tokens only.
    assert want.shape == (idx.size(0), P + idx.size(1), VOCAB)
    torch.testing.assert_close(got, want[:, P:], atol=ATOL, rtol=0)
    torch.testing.assert_close(merged, want[:, P:], atol=ATOL, rtol=0)
    # can fail: the table E put in directly (the encoder skipped) is another prompt
    table = peft_model.prompt_encoder["default"].embedding.weight.detach()
    with torch.no_grad():
        skipped, _ = SoftPromptGPT.from_embeddings(ours.base, table).eval()(idx)
    assert not torch.allclose(skipped, want[:, P:], atol=1e-3)


def test_ptuning_greedy_generation_matches_peft():
    peft_model = peft_ptuning_model()
    ours = ptuning_from_peft(peft_model)
    idx, n = batch(T=5), 10
    want = greedy_by_forward(peft_model, idx, n)
    assert want.shape == (idx.size(0), idx.size(1) + n)
    assert torch.equal(ours.generate(idx, n, top_k=1), want)
    # can fail: the base model alone (no prompt) continues differently
    assert not torch.equal(ours.base.generate(idx, n, top_k=1), want)


@pytest.mark.parametrize("hidden", [16, None], ids=["hidden16", "hidden=d"])
def test_ptuning_trainable_count_matches_peft(hidden):
    """What trains is E and the MLP head, in PEFT as in ours: P*d + d*h + h + h*h + h + h*d + d."""
    peft_model = peft_ptuning_model(hidden, seed=None)
    h = hidden or D
    ours = SoftPromptGPT(GPT.from_hf(peft_model.get_base_model()), P, hidden=h, reparam="ptuning")
    trainable, _ = peft_model.get_nb_trainable_parameters()
    assert trainable == count_trainable(ours) == P * D + D * h + h + h * h + h + h * D + D


# --- 4. greedy generation with a prefix ----------------------------------------------------------


def greedy_by_forward(peft_model, idx, n):
    """Greedy decoding the slow way: PEFT's whole forward (prefix and all) again for every token.

    No KV cache anywhere, so this checks our cached decoding loop against PEFT's prefix semantics.
    """
    with torch.no_grad():
        for _ in range(n):
            logits = peft_model(input_ids=idx, attention_mask=torch.ones_like(idx)).logits
            idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return idx


def greedy_with_prefilled_cache(peft_model, idx, n):
    """transformers' own generate() with PEFT's prefix put in the KV cache before it starts.

    generate() takes a cache of length P to hold the first P input ids, so P placeholder ids go
    in front: it runs only the real ones, at positions P, P+1, ..., which is prefix tuning.
    """
    hf = peft_model.get_base_model()
    cache = peft_model.get_prompt(batch_size=idx.size(0))
    full = torch.cat([torch.zeros(idx.size(0), P, dtype=idx.dtype), idx], dim=1)
    name = "cache" if "cache" in inspect.signature(hf.forward).parameters else "past_key_values"
    with torch.no_grad():
        out = hf_greedy(hf, full, n, **{name: cache})
    return out[:, P:]  # drop the placeholders


@pytest.mark.parametrize("projection", [False, True], ids=["direct", "mlp"])
def test_prefix_greedy_generation_matches_reference(projection):
    peft_model = peft_prefix_model(projection)
    base = GPT.from_hf(peft_model.get_base_model())
    ours = PrefixGPT.from_kv(base, peft_prefix_kv(peft_model)).eval()
    idx, n = batch(T=5), 10
    got = ours.generate(idx, n, top_k=1)
    want = greedy_by_forward(peft_model, idx, n)
    assert want.shape == (idx.size(0), idx.size(1) + n)
    assert torch.equal(got, want)
    assert torch.equal(greedy_with_prefilled_cache(peft_model, idx, n), want)
    # can fail: the base model alone (no prefix) continues differently
    assert not torch.equal(base.generate(idx, n, top_k=1), want)


# transformers 5 renamed the model's `past_key_values` argument to `cache`; peft <= 0.21.2 still
# injects the prefix as `past_key_values` in generate(), where it is dropped: the model then runs
# with an empty cache but positions shifted by P, which is not prefix tuning. (PEFT's forward,
# used in the tests above, passes the prefix explicitly and is fine.)
PEFT_GENERATE_DROPS_PREFIX = (
    "cache" in inspect.signature(transformers.GPT2LMHeadModel.forward).parameters
)


@pytest.mark.xfail(
    PEFT_GENERATE_DROPS_PREFIX, raises=AssertionError, strict=False,
    reason="peft's prefix-tuning generate() loses the prefix with transformers' `cache` argument",
)
def test_prefix_greedy_generation_matches_peft_generate():
    peft_model = peft_prefix_model(projection=False)
    base = GPT.from_hf(peft_model.get_base_model())
    ours = PrefixGPT.from_kv(base, peft_prefix_kv(peft_model)).eval()
    idx, n = batch(T=5), 10
    want = hf_greedy(peft_model, idx, n)
    assert want.shape == (idx.size(0), idx.size(1) + n)
    assert torch.equal(ours.generate(idx, n, top_k=1), want)
