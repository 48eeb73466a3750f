"""The CUDA path, against the CPU: skipped where no GPU is (CI has none; run on a machine with one).

SDPA on a GPU picks other kernels than on the CPU (flash or memory-efficient attention), so the
prefix mask, the KV cache and bf16 autocast are checked there against the CPU's float64 answers.
"""

import math

import pytest
import torch
from helpers import TOK, quick, tiny_base
from test_model import random_attention, reference_attention

from minprefix.model import autocast
from minprefix.prefix import PrefixGPT
from minprefix.tune import tune

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@torch.no_grad()
def test_attention_with_a_prefix_on_cuda_matches_the_explicit_softmax_reference():
    attn = random_attention()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    past = tuple(torch.randn(2, 2, 4, 8, dtype=torch.float64) for _ in range(2))  # 4 prefix rows before 5 tokens
    want, _ = reference_attention(attn, x, past)
    got, _ = attn.float().cuda()(x.float().cuda(), tuple(t.float().cuda() for t in past))
    torch.testing.assert_close(got.double().cpu(), want, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_prefix_logits_and_greedy_decoding_on_cuda_match_the_cpu():
    model = PrefixGPT(tiny_base(), 4, init="random", seed=3).eval()
    idx = torch.randint(2, TOK.vocab_size, (3, 7), generator=torch.Generator().manual_seed(0))
    want, _ = model(idx)
    got, _ = model.cuda()(idx.cuda())
    torch.testing.assert_close(got.cpu(), want, atol=1e-4, rtol=1e-4)
    with autocast("cuda", True):  # bf16: about 3 significant digits
        low, _ = model(idx.cuda())
    assert low.dtype == torch.bfloat16 and (low.float().cpu() - want).abs().max() < 0.1
    assert torch.equal(model.generate(idx.cuda(), 6, top_k=1).cpu(), model.cpu().generate(idx, 6, top_k=1))


def test_tuning_on_cuda_leaves_the_base_bit_identical():
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model, history = tune(base, TOK, quick("prefix-mlp"), device="cuda", progress=False)
    assert next(model.parameters()).is_cuda and all(math.isfinite(h["dev_loss"]) for h in history)
    assert all(torch.equal(v.cpu(), before[k]) for k, v in base.state_dict().items())
