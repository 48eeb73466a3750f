"""Every exercise check rejects the untouched stub and at least one plausible wrong answer."""

import math

import pytest
import torch
from exercise_checks import CHECKS, REFERENCE, learner

from minprefix.prompted import DirectPrefix, MLPPrefix


def stub(*args, **kwargs):
    raise NotImplementedError("Need to implement for this exercise")


class StubClass:
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("Need to implement for this exercise")


def top_left_mask(n_query, n_key):
    return torch.ones(n_query, n_key, dtype=torch.bool).tril()


def square_mask(n_query, n_key):
    return torch.ones(n_query, n_query, dtype=torch.bool).tril()


def params_head_counted_twice(config):
    return REFERENCE["ex1_2"](config) + config.vocab_size * config.d_model


def exact_match_scoring_the_prompt(logits, targets):
    return (logits.argmax(-1) == targets).all(dim=1)


def candidates_with_the_sign_flipped(grad, table, allowed, k):
    return allowed[(table[allowed] @ grad).topk(min(k, len(allowed))).indices]


def soft_prompt_positions_not_shifted(base, rows, idx):
    x = torch.cat([rows[None].expand(idx.size(0), -1, -1), base.embed(base.wte(idx))], dim=1)  # tokens at 0..T-1
    for block in base.blocks:
        x, _ = block(x)
    return base.head(x)[:, rows.size(0):]


def soft_prompt_without_a_length_check(base, rows, idx):
    """Right inside the context; past it, the position table's IndexError from inside torch."""
    x = torch.cat([rows[None].expand(idx.size(0), -1, -1), base.wte(idx)], dim=1)
    x = x + base.wpe(torch.arange(x.size(1)))
    for block in base.blocks:
        x, _ = block(x)
    return base.head(x)[:, rows.size(0):]


def every_row_wears_the_first_prompt(base, prompts, idx, tasks):
    first = next(iter(prompts))
    return REFERENCE["ex3_1"](base, prompts[first], idx)


def soft_prompt_tokens_from_position_0(base, rows, idx):
    P, T = rows.size(0), idx.size(1)
    x = torch.cat([rows[None].expand(idx.size(0), -1, -1) + base.wpe(torch.arange(P)),
                   base.wte(idx) + base.wpe(torch.arange(T))], dim=1)  # the prompt's positions right, the tokens' not
    for block in base.blocks:
        x, _ = block(x)
    return base.head(x)[:, P:]


def soft_prompt_without_the_final_layernorm(base, rows, idx):
    x = base.embed(torch.cat([rows[None].expand(idx.size(0), -1, -1), base.wte(idx)], dim=1))
    for block in base.blocks:
        x, _ = block(x)
    return base.lm_head(x)[:, rows.size(0):]


@pytest.mark.parametrize("wrong, hint", [(soft_prompt_positions_not_shifted, "position 0, prompt row 0"),
                                         (soft_prompt_tokens_from_position_0, "the tokens took positions 0..T-1"),
                                         (soft_prompt_without_the_final_layernorm, "first block's input is right")])
def test_a_wrong_soft_prompt_forward_gets_the_hint_for_the_step_that_went_wrong(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        CHECKS["ex3_1"](wrong)


def mixed_batch_without_checks(base, prompts, idx, tasks):
    """Right for good input; for bad input, whatever torch or the dict raises (or a silent answer)."""
    rows = torch.stack([prompts[t] for t in tasks])
    return base.run(torch.cat([rows, base.wte(idx)], dim=1))[:, rows.size(1):]


def soft_steps(model, batches, lr, betas=(0.9, 0.95), clear=True, loss_of=lambda m, idx, targets: m(idx, targets)[1]):
    """Exercise 3.3 by hand (correct with the defaults); the wrong answers below change one thing."""
    opt, losses = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=betas,
                                    weight_decay=0.0), []
    for idx, targets in batches:
        loss = loss_of(model, idx, targets)
        if clear:
            opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def steps_without_clearing_gradients(model, batches, lr):
    return soft_steps(model, batches, lr, clear=False)  # gradients pile up from step to step


def steps_with_adams_default_betas(model, batches, lr):
    return soft_steps(model, batches, lr, betas=(0.9, 0.999))


def steps_with_the_loss_on_every_position(model, batches, lr):
    return soft_steps(model, batches, lr, loss_of=lambda m, idx, targets: torch.nn.functional.cross_entropy(
        m(idx)[0].flatten(0, 1), targets.clamp(min=0).flatten()))


def steps_with_adamws_default_weight_decay(model, batches, lr):
    """AdamW built without weight_decay=0.0: its default 0.01 shrinks the rows a little every step."""
    opt, losses = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.95)), []
    for idx, targets in batches:
        loss = model(idx, targets)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_a_training_loop_written_by_hand_passes_exercise_3_3():
    CHECKS["ex3_3"](soft_steps)


def soft_prompt_under_no_grad(base, rows, idx):
    """The right logits, computed where autograd records nothing: the rows would never train."""
    with torch.no_grad():
        return REFERENCE["ex3_1"](base, rows, idx)


def mixed_batch_through_data(base, prompts, idx, tasks):
    """Every row's prompt read through .data: the values are the same, the graph is cut."""
    return REFERENCE["ex3_2"](base, {name: rows.data for name, rows in prompts.items()}, idx, tasks)


def prefix_block_with_the_prefix_detached(block, x, kv):
    return REFERENCE["ex4_1"](block, x, kv.detach())


def prefix_block_that_unfreezes_the_block(block, x, kv):
    """A learner who turns requires_grad back on for the block "to be safe": an optimizer would train it too."""
    block.requires_grad_(True)
    return REFERENCE["ex4_1"](block, x, kv)


def prefix_block_with_the_input_detached(block, x, kv):
    """The prefix trains here, but no gradient goes down to the layers below (and their prefixes)."""
    return REFERENCE["ex4_1"](block, x.detach(), kv)


class Detached(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, t):
        return self.module(t).detach()


def prefix_block_with_ln_1_detached(block, x, kv):
    """The attention's input cut from the graph: x gets a gradient through the residual only, a wrong one."""
    original, block.ln_1 = block.ln_1, Detached(block.ln_1)
    try:
        return REFERENCE["ex4_1"](block, x, kv)
    finally:
        block.ln_1 = original


def prefix_block_keys_values_swapped(block, x, kv):
    return REFERENCE["ex4_1"](block, x, kv.flip(1))


def prefix_block_top_left(block, x, kv):
    """The library's block with SDPA's top-left triangle swapped in for the right mask."""
    import minprefix.model as model_module

    original = model_module.attention_mask
    model_module.attention_mask = lambda n_query, n_key, device=None: top_left_mask(n_query, n_key).to(device)
    try:
        return REFERENCE["ex4_1"](block, x, kv)
    finally:
        model_module.attention_mask = original


def prefix_block_layernorms_swapped(block, x, kv):
    """ln_1 and ln_2 exchanged: invisible on a fresh base, whose LayerNorms are all identities."""
    block.ln_1, block.ln_2 = block.ln_2, block.ln_1
    try:
        return REFERENCE["ex4_1"](block, x, kv)
    finally:
        block.ln_1, block.ln_2 = block.ln_2, block.ln_1


def prefix_block_heads_split_with_reshape(block, x, kv):
    """A learner's mistake nobody planted at first: heads split with reshape(B, nh, T, hs), not view + transpose."""
    B, T, C = x.shape
    nh, P = block.attn.n_head, kv.size(3)
    q, k, v = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)
    heads = lambda t: t.reshape(B, nh, T, C // nh)  # noqa: E731  (the bug)
    k, v = torch.cat([kv[:, 0], heads(k)], 2), torch.cat([kv[:, 1], heads(v)], 2)
    att = heads(q) @ k.transpose(-1, -2) / math.sqrt(C // nh)
    att = att.masked_fill(~torch.ones(T, P + T, dtype=torch.bool).tril(P), float("-inf")).softmax(-1)
    x = x + block.attn.c_proj((att @ v).transpose(1, 2).reshape(B, T, C))
    return x + block.mlp(block.ln_2(x))


def prefix_block_written_out(block, x, kv):
    """Exercise 4.1 by hand with SDPA and the right mask: its values and gradients must pass as the library's do."""
    B, T, C = x.shape
    nh, P = block.attn.n_head, kv.size(3)
    q, k, v = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)
    heads = lambda t: t.view(B, T, nh, C // nh).transpose(1, 2)  # (B, nh, T, hs)
    k, v = torch.cat([kv[:, 0], heads(k)], 2), torch.cat([kv[:, 1], heads(v)], 2)  # (B, nh, P + T, hs)
    mask = torch.ones(T, P + T, dtype=torch.bool).tril(P)  # every token sees the whole prefix
    y = torch.nn.functional.scaled_dot_product_attention(heads(q), k, v, attn_mask=mask)
    x = x + block.attn.c_proj(y.transpose(1, 2).reshape(B, T, C))
    return x + block.mlp(block.ln_2(x))


def test_a_prefix_block_written_out_passes_exercise_4_1():
    CHECKS["ex4_1"](prefix_block_written_out)


@pytest.mark.parametrize("wrong, hint", [(prefix_block_heads_split_with_reshape, "split q, k, v into heads"),
                                         (prefix_block_layernorms_swapped, "is the first LayerNorm block.ln_1")])
def test_a_wrong_prefix_block_gets_the_hint_for_the_step_that_went_wrong(wrong, hint):
    with pytest.raises(AssertionError, match=hint):
        CHECKS["ex4_1"](wrong)


def rows_to_kv_with_ln_2(block, rows):
    P, C = rows.shape
    k, v = block.attn.c_attn(block.ln_2(rows)).split(C, dim=1)[1:]
    return torch.stack([k, v]).view(2, P, block.attn.n_head, C // block.attn.n_head).transpose(1, 2)


def rows_to_kv_without_layernorm(block, rows):
    P, C = rows.shape
    k, v = block.attn.c_attn(rows).split(C, dim=1)[1:]
    return torch.stack([k, v]).view(2, P, block.attn.n_head, C // block.attn.n_head).transpose(1, 2)


def rows_to_kv_queries_and_keys(block, rows):
    P, C = rows.shape
    q, k = block.attn.c_attn(block.ln_1(rows)).split(C, dim=1)[:2]
    return torch.stack([q, k]).view(2, P, block.attn.n_head, C // block.attn.n_head).transpose(1, 2)


def rows_to_kv_heads_split_with_reshape(block, rows):
    P, C = rows.shape
    k, v = block.attn.c_attn(block.ln_1(rows)).split(C, dim=1)[1:]
    return torch.stack([k, v]).reshape(2, block.attn.n_head, P, C // block.attn.n_head)  # the bug: no transpose


def rows_to_kv_of_detached_rows(block, rows):
    return REFERENCE["ex4_2"](block, rows.detach())


def prefix_cache_keys_values_swapped(model, batch_size):
    cache = REFERENCE["ex4_3"](model, batch_size)
    cache.layers = [kv and kv[::-1] for kv in cache.layers]
    return cache


def prefix_cache_without_the_batch(model, batch_size):
    """A learner's slip found by hand: the prefix left at batch 1 instead of repeated for every row."""
    cache = REFERENCE["ex4_3"](model, batch_size)
    cache.layers = [kv and tuple(t[:1] for t in kv) for kv in cache.layers]
    return cache


def prefix_cache_on_every_layer(model, batch_size):
    """Every layer gets rows, including those the prefix is not worn on."""
    from minprefix.generate import KVCache

    cache, kv = KVCache(model.config.n_layer), model.prefix_kv().detach()
    cache.layers = [(kv[i, 0].expand(batch_size, -1, -1, -1), kv[i, 1].expand(batch_size, -1, -1, -1))
                    for i in range(model.config.n_layer)]
    return cache


class MLPPrefixWithReLU(MLPPrefix):
    def __init__(self, prompt_len, k, hidden, width):
        super().__init__(prompt_len, k, hidden, width)
        self.mlp[1] = torch.nn.ReLU()


class MLPPrefixDetachedInForward(MLPPrefix):
    def forward(self):
        return self.mlp(self.input.detach())


class MLPPrefixWithAFrozenInput(MLPPrefix):
    def __init__(self, prompt_len, k, hidden, width):
        super().__init__(prompt_len, k, hidden, width)
        self.input = torch.nn.Parameter(self.input.detach(), requires_grad=False)


class MLPPrefixWithAFrozenMLP(MLPPrefix):
    """Only P' trains: the MLP was frozen like the base."""

    def __init__(self, prompt_len, k, hidden, width):
        super().__init__(prompt_len, k, hidden, width)
        self.mlp.requires_grad_(False)


def merge_that_keeps_the_mlp(model):
    return model


class MLPPrefixFromZeros(MLPPrefix):
    def __init__(self, prompt_len, k, hidden, width):
        super().__init__(prompt_len, k, hidden, width)
        torch.nn.init.zeros_(self.input)


def merge_in_place(model):
    """Swaps the rows of the model it is given, and returns that same model."""
    model.row_maker = DirectPrefix(model.rows().detach())
    return model


def merge_onto_every_layer(model):
    """A new model from the rows, but the layers it was worn on forgotten."""
    return type(model).from_rows(model.base, model.rows().detach())


def merge_with_frozen_rows(model):
    """The stored prefix made a constant: the same logits, but it could never be tuned further."""
    merged = REFERENCE["ex5_2"](model)
    merged.row_maker.requires_grad_(False)
    return merged


def normal_interval(p, n, z=1.96):
    half = z * math.sqrt(p * (1 - p) / n) if n else 1.0
    return max(0.0, p - half), min(1.0, p + half)


def _pick(dev_by_lr, score=lambda ds: sum(0.0 if d is None else d for d in ds) / len(ds), edges=True, order=sorted):
    lrs = order(dev_by_lr)
    best = max(lrs, key=lambda lr: score(dev_by_lr[lr]))
    if edges and best in (lrs[0], lrs[-1]):
        raise ValueError(f"widen {'below' if best == lrs[0] else 'above'} {best}")
    return best


def pick_by_the_best_seed(dev_by_lr):
    return _pick(dev_by_lr, score=lambda ds: max(0.0 if d is None else d for d in ds))


def pick_by_the_median_seed(dev_by_lr):
    return _pick(dev_by_lr, score=lambda ds: sorted(0.0 if d is None else d for d in ds)[len(ds) // 2])


def pick_skipping_diverged_runs(dev_by_lr):
    def mean_of_finished(ds):
        finished = [d for d in ds if d is not None]
        return sum(finished) / max(1, len(finished))
    return _pick(dev_by_lr, score=mean_of_finished)


def pick_without_checking_the_ends(dev_by_lr):
    return _pick(dev_by_lr, edges=False)


def pick_with_the_ends_in_the_order_given(dev_by_lr):
    return _pick(dev_by_lr, order=list)


def pick_ties_to_the_larger_rate(dev_by_lr):
    return _pick(dev_by_lr, order=lambda d: sorted(d, reverse=True))


@pytest.mark.parametrize("name, wrong, hint", [
    ("ex3_1", soft_prompt_under_no_grad, "no gradient reaches the soft prompt's rows"),
    ("ex3_2", mixed_batch_through_data, "no gradient reaches prompt 'a'"),
    ("ex3_3", steps_with_adamws_default_weight_decay, "AdamW's default weight_decay=0.01"),
    ("ex4_1", prefix_block_with_the_prefix_detached, r"no gradient reaches the prefix's keys and values \(prefix_kv\)"),
    ("ex4_1", prefix_block_with_the_input_detached, "no gradient reaches the block's input x"),
    ("ex4_1", prefix_block_that_unfreezes_the_block, "a base weight requires grad"),
    ("ex4_1", prefix_block_with_ln_1_detached, "the gradient reaching the block's input x is not the oracle's"),
    ("ex4_2", rows_to_kv_heads_split_with_reshape, "right numbers in the wrong places.*a reshape to"),
    ("ex4_2", rows_to_kv_of_detached_rows, "no gradient reaches the prefix rows"),
    ("ex5_1", MLPPrefixDetachedInForward, "no gradient reaches P'"),
    ("ex5_1", MLPPrefixWithAFrozenInput, "no gradient reaches P'.*created with requires_grad=False"),
    ("ex5_1", MLPPrefixWithAFrozenMLP, r"no gradient reaches mlp\[0\].weight"),
    ("ex5_2", merge_with_frozen_rows, "nothing in the merged model requires grad"),
], ids=lambda v: v.__name__ if callable(v) else None)
def test_a_check_names_the_cause(name, wrong, hint):
    """Right values and nothing trains, or a slip whose old message pointed elsewhere: the message names the cause."""
    with pytest.raises(AssertionError, match=hint):
        CHECKS[name](wrong)


WRONG = {  # exercise: plausible wrong answers its check must reject
    "ex1_1": [top_left_mask, square_mask],
    "ex1_2": [params_head_counted_twice],
    "ex2_1": [exact_match_scoring_the_prompt],
    "ex2_2": [candidates_with_the_sign_flipped],
    "ex3_1": [soft_prompt_positions_not_shifted, soft_prompt_without_a_length_check, soft_prompt_tokens_from_position_0,
              soft_prompt_without_the_final_layernorm, soft_prompt_under_no_grad],
    "ex3_2": [every_row_wears_the_first_prompt, mixed_batch_without_checks, mixed_batch_through_data],
    "ex3_3": [steps_without_clearing_gradients, steps_with_adams_default_betas, steps_with_the_loss_on_every_position,
              steps_with_adamws_default_weight_decay],
    "ex4_1": [prefix_block_keys_values_swapped, prefix_block_top_left, prefix_block_layernorms_swapped,
              prefix_block_heads_split_with_reshape, prefix_block_with_the_prefix_detached,
              prefix_block_with_the_input_detached, prefix_block_with_ln_1_detached,
              prefix_block_that_unfreezes_the_block],
    "ex4_2": [rows_to_kv_without_layernorm, rows_to_kv_queries_and_keys, rows_to_kv_with_ln_2,
              rows_to_kv_heads_split_with_reshape, rows_to_kv_of_detached_rows],
    "ex4_3": [prefix_cache_keys_values_swapped, prefix_cache_on_every_layer, prefix_cache_without_the_batch],
    "ex5_1": [MLPPrefixWithReLU, MLPPrefixFromZeros, MLPPrefixDetachedInForward, MLPPrefixWithAFrozenInput,
              MLPPrefixWithAFrozenMLP],
    "ex5_2": [merge_that_keeps_the_mlp, merge_in_place, merge_onto_every_layer, merge_with_frozen_rows],
    "ex6_1": [normal_interval],
    "ex6_2": [pick_by_the_best_seed, pick_by_the_median_seed, pick_skipping_diverged_runs,
              pick_without_checking_the_ends, pick_with_the_ends_in_the_order_given, pick_ties_to_the_larger_rate],
}


def test_every_exercise_has_a_check_a_reference_a_stub_and_wrong_answers():
    assert set(CHECKS) == set(REFERENCE) == set(WRONG)
    assert len(CHECKS) >= 12 and {name[2] for name in CHECKS} == set("123456")
    assert all(sum(name.startswith(f"ex{n}_") for name in CHECKS) >= 2 for n in "123456")


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_check_rejects_the_untouched_stub(name):
    with pytest.raises(NotImplementedError):
        CHECKS[name](StubClass if name == "ex5_1" else stub)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_shipped_exercise_file_has_the_stub_with_the_reference_signature(name):
    """The learner's file names the function (or class) the check expects, with a docstring stating the spec."""
    impl = learner(name)
    assert impl.__doc__ and "Exercise " + name[2:].replace("_", ".") in impl.__doc__


@pytest.mark.parametrize("name, wrong", [(n, w) for n, ws in sorted(WRONG.items()) for w in ws],
                         ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_check_rejects_a_plausible_wrong_answer(name, wrong):
    with pytest.raises(AssertionError) as info:
        CHECKS[name](wrong)
    message = str(info.value)
    assert message and "\n" not in message  # one line that names the problem
