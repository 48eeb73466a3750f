"""The checks of the lesson exercises, each against an independent oracle, and the reference solutions.

A check takes an implementation and raises an AssertionError whose one-line message names the
wrong tensor and the likely bug. The reference solution of every exercise is the library's own
code (REFERENCE); `pytest --learner` points the same checks at lessons/exercises/ instead.
"""

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from minprefix.bank import PromptBank
from minprefix.hard_prompt import rank_candidates
from minprefix.generate import KVCache
from minprefix.model import GPT, GPTConfig, attention_mask
from minprefix.params import base_params, count_trainable
from minprefix.prefix import BlockInputPrefixGPT, PrefixBlock, PrefixGPT, rows_to_kv
from minprefix.prompted import DirectPrefix, MLPPrefix
from minprefix.soft_prompt import SoftPromptGPT
from minprefix.train import LoopConfig, Run, optimize
from minprefix.lab.sweep import pick_learning_rate
from minprefix.scoring import exact_match, wilson_interval

EXERCISES = Path(__file__).resolve().parents[1] / "lessons" / "exercises"


def expect(ok, message: str):
    if not ok:
        raise AssertionError(message)


def close(a, b, atol=1e-5) -> bool:
    return isinstance(a, torch.Tensor) and a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0)


def expect_gradients(got, want, leaves: dict, frozen: torch.nn.Module | None = None):
    """What trains must get the oracle's gradient, and the frozen base none.

    Values alone cannot see a detached tensor: the forward pass is right, but in training nothing
    moves. So one scalar of the learner's output and the same scalar of the oracle's are
    backpropagated; leaves maps a name to (the learner's tensor, the oracle's tensor), and each must
    get the same gradient. Under `frozen`, no parameter may require grad or hold one.
    """
    weights = torch.randn(want.shape, dtype=want.dtype, generator=torch.Generator().manual_seed(11))
    for name, (mine, theirs) in leaves.items():
        (want_grad,) = torch.autograd.grad((want * weights).sum(), theirs, retain_graph=True)
        got_grad = None
        if mine.requires_grad and got.requires_grad:
            (got_grad,) = torch.autograd.grad((got * weights).sum(), mine, retain_graph=True, allow_unused=True)
        expect(got_grad is not None, f"no gradient reaches {name}: is it detached (.detach(), .data, "
               "torch.no_grad()), or created with requires_grad=False? In training it would never move")
        expect(close(got_grad, want_grad, atol=1e-8), f"the values are right but the gradient reaching {name} is "
               "not the oracle's: is part of its path detached (.detach(), .data, torch.no_grad())?")
    if frozen is not None:
        expect(not any(p.requires_grad or p.grad is not None for p in frozen.parameters()),
               "a base weight requires grad or holds one: the base stays frozen, only the prompt's tensors train")


def leaf(t: torch.Tensor) -> torch.Tensor:
    """A copy of t that gradients stop at: one for the learner's code, another for the oracle's."""
    return t.detach().clone().requires_grad_()


V, B, P, T = 23, 3, 6, 7  # the checks' vocabulary, batch, prompt or prefix length, tokens


def tiny_base(seed=0, **kw) -> GPT:
    """A small random GPT in float64 whose LayerNorms and biases are random too.

    A fresh GPT's LayerNorms are identities and its biases zero, so on it ln_1, ln_2 and ln_f are
    interchangeable, and a forgotten bias goes unseen: a whole class of mistakes would pass. And no
    two roles share a size: 3 layers, the 2 of (keys, values), 4 heads of 5 numbers (d_model 20), a
    vocabulary of 23; the checks use batches of 3, prompts and prefixes of 6, 7 tokens. So a swap of
    two axes (layers and heads, keys-and-values and batch, P and head_dim) changes a shape.
    """
    torch.manual_seed(seed)
    config = dict(vocab_size=V, block_size=29, n_layer=3, n_head=4, d_model=20) | kw
    model = GPT(GPTConfig(**config)).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.3)
            elif "ln" in name:  # a LayerNorm's gain
                p.normal_(1.0, 0.5)
    return model.freeze()


# ---------------------------------------------------------------------------- lesson 1


def check_ex1_1(causal_mask):
    for n_query, n_key in [(4, 4), (3, 5), (1, 6), (2, 2)]:
        got = causal_mask(n_query, n_key)
        expect(isinstance(got, torch.Tensor) and got.dtype == torch.bool,
               f"mask must be a bool tensor, got {type(got).__name__} {getattr(got, 'dtype', '')}")
        expect(got.shape == (n_query, n_key), f"mask is {tuple(got.shape)}; with {n_key - n_query} earlier keys "
               f"it must be (T, P + T) = ({n_query}, {n_key})")
        for i in range(n_query):  # the oracle: query i sees keys 0 .. n_key - n_query + i, written as a loop
            want = torch.tensor([j <= n_key - n_query + i for j in range(n_key)])
            if not torch.equal(got[i], want):
                top_left = torch.equal(got, torch.ones(n_query, n_key, dtype=torch.bool).tril())
                expect(False, "the triangle is aligned top-left: the first queries cannot see the earlier keys; "
                       "shift the diagonal by n_key - n_query" if top_left else
                       f"row {i} of the ({n_query}, {n_key}) mask is {got[i].int().tolist()}, "
                       f"expected {want.int().tolist()}")


def check_ex1_2(count_gpt_params):
    for config in (GPTConfig(vocab_size=11, block_size=7, n_layer=1, n_head=1, d_model=4),
                   GPTConfig(vocab_size=50, block_size=16, n_layer=3, n_head=2, d_model=12),
                   GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, d_model=12, bias=False)):
        with torch.device("meta"):
            want = GPT(config).num_params()  # the oracle: numel of the module built
        got = count_gpt_params(config)
        hint = " (the output head is tied to the token table: count it once)" if got == want + \
            config.vocab_size * config.d_model else " (biases: config.bias)" if config.bias is False else ""
        expect(got == want, f"count for {config} is {got}, the module has {want}{hint}")


# ---------------------------------------------------------------------------- lesson 2


def check_ex2_1(exact_match):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 7, generator=g)
    targets = logits.argmax(-1)
    targets[:, :2] = -1  # the prompt: not scored
    targets[1, 3] = (targets[1, 3] + 1) % 7  # row 1: one wrong answer character
    targets[2, 0] = (logits[2, 0].argmax() + 1) % 7  # row 2: a "wrong" character, but unscored: still right
    targets[2, 0] = -1
    targets[3, 4] = -1  # row 3: padding at the end
    want = torch.tensor([all(t == -1 or logits[b, i].argmax() == t for i, t in enumerate(targets[b].tolist()))
                         for b in range(6)])  # the oracle, one position at a time
    got = exact_match(logits, targets)
    expect(isinstance(got, torch.Tensor) and got.shape == (6,), "exact_match must return one bool per row, (B,)")
    expect(torch.equal(got.bool(), want), f"rows right: {got.int().tolist()}, expected {want.int().tolist()} "
           "(unscored positions, target -1, never count against a row)")


def check_ex2_2(rank_candidates):
    g = torch.Generator().manual_seed(1)
    table = torch.randn(9, 4, generator=g)  # a tiny vocabulary of 9 tokens
    w = torch.randn(4, generator=g)
    loss = lambda e: e @ w  # a loss linear in the embedding: first order is exact
    allowed = torch.tensor([1, 2, 4, 5, 7, 8])
    current = table[3]
    grad = w  # d loss / d e
    true_change = {int(t): (loss(table[t]) - loss(current)).item() for t in allowed}  # exhaustive oracle
    want = sorted(true_change, key=true_change.get)[:4]
    got = rank_candidates(grad, table, allowed, 4)
    got = [int(t) for t in got]
    expect(len(got) == 4, f"asked for 4 candidates, got {len(got)}")
    expect(set(got) <= set(allowed.tolist()), f"candidates {got} include ids outside `allowed`")
    expect(got != sorted(true_change, key=true_change.get, reverse=True)[:4],
           "the ranking is reversed: the best swap has the most *negative* table[w] . grad (check the sign)")
    expect(got == want, f"candidates {got}, expected {want} (best first, by the loss decrease)")
    expect(len(rank_candidates(grad, table, allowed, 20)) == len(allowed), "with k > len(allowed), return them all")


# ---------------------------------------------------------------------------- lesson 3


def check_ex3_1(soft_prompt_logits):
    base = tiny_base()
    idx = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(2))
    ids = [3, 14, 7, 21, 0, 9]
    rows = base.wte.weight[ids].clone()  # rows that are real tokens' embeddings
    seen = []  # what the learner's code feeds into the first block, for a hint that names the first wrong position
    hook = base.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    try:
        got = soft_prompt_logits(base, rows, idx)
    finally:
        hook.remove()
    want = base(torch.cat([torch.tensor([ids] * B), idx], dim=1))[0][:, len(ids):]  # oracle: prepend the tokens
    expect(isinstance(got, torch.Tensor) and got.shape == want.shape,
           f"logits are {tuple(getattr(got, 'shape', ()))}, expected {tuple(want.shape)}: one row per real token")
    if not close(got, want):
        x = torch.cat([rows.expand(B, -1, -1), base.wte(idx)], dim=1)
        right = x + base.wpe(torch.arange(P + T))
        tokens_from_0 = x + torch.cat([base.wpe(torch.arange(P)), base.wpe(torch.arange(T))])
        if seen and seen[0].shape == right.shape and not close(seen[0], right):
            expect(not close(seen[0], tokens_from_0), "the tokens took positions 0..T-1: after P prompt rows they "
                   "are at P..P+T-1 (position P + t for token t)")
            i = int((seen[0] - right).abs().amax(dim=(0, 2)).gt(1e-9).nonzero()[0])
            expect(False, f"the first block's input differs first at position {i}, " +
                   (f"prompt row {i}: it should be rows[{i}] + wpe[{i}]" if i < P else
                    f"token {i - P}: it should be wte(idx[:, {i - P}]) + wpe[{i}]"))
        expect(not seen or seen[0].shape == right.shape, f"the first block gets {tuple(seen[0].shape)}, expected "
               f"(B, P + T, C) = {tuple(right.shape)}: the prompt's rows in front of every row's token embeddings")
        expect(False, "the first block's input is right but the logits are not: run every block in order, then "
               "base.head (ln_f and the tied output layer), and drop the prompt's P rows")
    rows = leaf(torch.randn(P, base.config.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    got, oracle_rows = soft_prompt_logits(base, rows, idx), leaf(rows)
    want = soft_prompt_reference(base, oracle_rows, idx)
    expect(close(got, want), "with free rows, the logits differ from minprefix's SoftPromptGPT")
    expect_gradients(got, want, {"the soft prompt's rows": (rows, oracle_rows)}, frozen=base)
    n = base.config.block_size
    full = torch.randint(0, V, (1, n - P), generator=torch.Generator().manual_seed(4))  # P + T = n exactly
    expect(soft_prompt_logits(base, rows, full).shape == (1, n - P, V),
           f"P + T equal to the context ({n}) fits: every position has a row of the position table")
    expect_value_error(lambda: soft_prompt_logits(base, rows, torch.cat([full, full[:, :1]], dim=1)),
                       f"P + T = {n + 1} is past the context (block_size {n}): the position table has no row there")


def soft_prompt_reference(base, rows, idx):
    """minprefix's SoftPromptGPT wearing `rows` as they are (not a copy), so that gradients reach them."""
    return SoftPromptGPT(base, rows.size(0))(idx, prompt=rows.expand(idx.size(0), -1, -1))[0]


def check_ex3_2(mixed_batch_logits):
    base = tiny_base()
    g = torch.Generator().manual_seed(4)
    C = base.config.d_model
    prompts = {name: leaf(torch.randn(P, C, dtype=torch.float64, generator=g)) for name in "abc"}
    tasks = ["b", "a", "c", "b"]
    idx = torch.randint(0, V, (len(tasks), T), generator=g)
    got = mixed_batch_logits(base, prompts, idx, tasks)
    expect(isinstance(got, torch.Tensor) and got.shape == (len(tasks), T, V), "mixed logits must be (B, T, V)")
    oracle = {name: leaf(rows) for name, rows in prompts.items()}
    want = torch.cat([soft_prompt_reference(base, oracle[task], idx[b : b + 1]) for b, task in enumerate(tasks)])
    for b, task in enumerate(tasks):  # the oracle: each row alone, with its own prompt
        expect(close(got[b : b + 1], want[b : b + 1]), f"row {b} ({task!r}) differs from running it alone with "
               f"prompt {task!r}: is each row's prompt picked by tasks[b]?")
    expect_gradients(got, want, {f"prompt {name!r}": (prompts[name], oracle[name]) for name in prompts}, frozen=base)
    uneven = {**prompts, "d": torch.randn(P - 1, C, dtype=torch.float64, generator=g)}
    for bad, args in [("three tasks for four rows", (prompts, idx, tasks[:3])),
                      ("a task with no prompt ('z')", (prompts, idx, ["a", "z", "b", "c"])),
                      (f"prompts of {P} and {P - 1} rows", (uneven, idx, ["a", "d", "a", "d"]))]:
        expect_value_error(lambda args=args: mixed_batch_logits(base, *args), bad)


def mixed_batch_reference(base, prompts, idx, tasks):
    """minprefix's PromptBank, its members wearing the given rows as they are (not copies): gradients reach them."""
    members = {task: SoftPromptGPT.from_embeddings(base, rows) for task, rows in prompts.items()}
    for member, rows in zip(members.values(), prompts.values()):
        member.prompt = lambda rows=rows: rows  # (P, C), the tensor given
    return PromptBank(members)(idx, tasks=tasks)[0]


def expect_value_error(call, what: str):
    """The call must raise ValueError: a clear error, not a silent answer nor an error from inside torch."""
    try:
        call()
    except ValueError:
        return
    except Exception as e:
        expect(False, f"{what}: raise ValueError saying so, not {type(e).__name__}: {e}")
    expect(False, f"{what}: you returned an answer; raise ValueError saying what is wrong")


def soft_prompt_batches(n: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (idx, targets) whose first three targets are -1: a loss on the answer only."""
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(n):
        idx, targets = torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)
        targets[:, :3] = -1
        batches.append((idx, targets))
    return batches


def library_steps(model, batches, lr, weight_decay=0.0) -> list[float]:
    """The oracle: minprefix's own training loop with a constant learning rate and no clipping."""
    losses, todo = [], iter(batches)
    cfg = LoopConfig(steps=len(batches), lr=lr, warmup=0, min_lr_ratio=1.0, grad_clip=1e30, weight_decay=weight_decay)
    optimize(model, cfg, Run(lr, lambda rng: next(todo), every=len(batches), progress=False,
                             on_step=lambda step, loss: losses.append(loss)))
    return losses


def check_ex3_3(train_soft_prompt):
    base = tiny_base()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    batches = soft_prompt_batches()
    model, oracle = SoftPromptGPT(base, P, seed=1), SoftPromptGPT(base, P, seed=1)
    got = train_soft_prompt(model, batches, 0.05)
    want = library_steps(oracle, batches, 0.05)
    expect(isinstance(got, list) and len(got) == len(batches) and all(isinstance(x, float) for x in got),
           f"return one float per batch ({len(batches)}), got {type(got).__name__} "
           f"{[type(x).__name__ for x in got] if isinstance(got, list) else ''}")
    expect(all(torch.equal(before[k], v) for k, v in base.state_dict().items()),
           "a base weight changed: the optimizer must get only the parameters with requires_grad")
    expect(math.isclose(got[0], want[0], rel_tol=1e-9), f"the first loss is {got[0]:.6f}, the library's "
           f"{want[0]:.6f}: is it model(idx, targets)[1], taken before the first step?")
    decayed = SoftPromptGPT(base, P, seed=1)
    library_steps(decayed, batches, 0.05, weight_decay=0.01)  # AdamW's default weight decay, a common slip
    expect(not close(model.rows(), decayed.rows(), atol=1e-9), "the rows trained as with AdamW's default "
           "weight_decay=0.01, which shrinks them every step: pass weight_decay=0.0")
    expect(all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, want)),
           f"losses {[round(x, 5) for x in got]} differ from the library loop's {[round(x, 5) for x in want]}: "
           "are the gradients cleared before each backward, and is it AdamW with betas (0.9, 0.95) and lr as given?")
    expect(close(model.rows(), oracle.rows(), atol=1e-9), "the losses match but the trained rows do not: "
           "is there one step per batch, and no step after the last loss?")


# ---------------------------------------------------------------------------- lesson 4


def check_ex4_1(prefix_block):
    base = tiny_base()
    block, c = base.blocks[0], base.config
    g = torch.Generator().manual_seed(5)
    x = leaf(torch.randn(B, T, c.d_model, dtype=torch.float64, generator=g))  # gradients reach the layers below
    kv = leaf(torch.randn(B, 2, c.n_head, P, c.head_dim, dtype=torch.float64, generator=g))  # the prefix: it trains
    seen = {}  # what the learner's code fed into the block's projections, for a hint that points at the step
    hooks = [block.attn.c_attn.register_forward_pre_hook(lambda m, a: seen.setdefault("h", a[0])),
             block.attn.c_proj.register_forward_pre_hook(lambda m, a: seen.setdefault("y", a[0]))]
    try:
        got = prefix_block(block, x, kv)
    finally:
        for hook in hooks:
            hook.remove()
    got = got[0] if isinstance(got, tuple) else got
    want, parts = _explicit_prefix_block(block, x, kv, c), _explicit_parts(block, x, kv, c)
    expect(isinstance(got, torch.Tensor) and got.shape == want.shape, f"output must be (B, T, C) = {tuple(want.shape)}")
    if not close(got, want):
        swapped = _explicit_prefix_block(block, x, kv.flip(1), c)
        top_left = _explicit_prefix_block(block, x, kv, c, top_left=True)
        expect(not close(got, swapped), "keys and values are swapped: prefix_kv[:, 0] are the keys, [:, 1] the values")
        expect(not close(got, top_left), "the causal triangle is aligned top-left: the first tokens do not see the "
               "whole prefix (with P prefix keys the mask is (T, P + T), bottom-right)")
        expect("h" not in seen or close(seen["h"], parts["h"]), "the input of attn.c_attn differs from ln_1(x): "
               "is the first LayerNorm block.ln_1, applied to x?")
        if "y" in seen and not close(seen["y"], parts["y"]):
            diff = (seen["y"] - parts["y"]).abs().view(*x.shape[:2], c.n_head, c.head_dim).amax(dim=(0, 3))  # (T, nh)
            t, head = (int(i) for i in (diff > 1e-6).nonzero()[0])  # the first token, then head, that differs
            expect(False, f"the attention output (the input of attn.c_proj) differs first at token {t}, head {head}: "
                   "split q, k, v into heads with view(B, T, n_head, head_dim).transpose(1, 2) (not reshape(B, "
                   "n_head, T, head_dim)), put the prefix keys and values before the tokens', and merge back with "
                   "transpose(1, 2).reshape(B, T, C)")
        expect(False, "the attention output is right but the block's output is not: x + c_proj(y), then "
               "x + mlp(ln_2(x)) on that sum")
    x_oracle, kv_oracle = leaf(x), leaf(kv)
    leaves = {"the prefix's keys and values (prefix_kv)": (kv, kv_oracle), "the block's input x": (x, x_oracle)}
    expect_gradients(got, _explicit_prefix_block(block, x_oracle, kv_oracle, c), leaves, frozen=block)


def _explicit_parts(block, x, kv, c, top_left=False) -> dict:
    """The oracle, written out with an explicit softmax: ln_1(x), the heads' outputs side by side, the output."""
    B, T, C = x.shape
    P = kv.size(3)
    h = block.ln_1(x)
    q, k, v = block.attn.c_attn(h).split(C, dim=2)
    heads = lambda t: t.view(B, T, c.n_head, c.head_dim).transpose(1, 2)  # (B, nh, T, hs)
    k, v = torch.cat([kv[:, 0], heads(k)], 2), torch.cat([kv[:, 1], heads(v)], 2)  # (B, nh, P + T, hs)
    att = heads(q) @ k.transpose(-1, -2) / math.sqrt(c.head_dim)
    allowed = torch.ones(T, P + T, dtype=torch.bool).tril(0 if top_left else P)
    y = (att.masked_fill(~allowed, float("-inf")).softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    x = x + block.attn.c_proj(y)
    return {"h": h, "y": y, "out": x + block.mlp(block.ln_2(x))}


def _explicit_prefix_block(block, x, kv, c, top_left=False):
    return _explicit_parts(block, x, kv, c, top_left)["out"]


def check_ex4_2(rows_to_kv):
    base = tiny_base()
    c = base.config
    rows = leaf(torch.randn(P, c.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(6)))
    got = rows_to_kv(base.blocks[1], rows)
    want_shape = (2, c.n_head, P, c.head_dim)
    expect(isinstance(got, torch.Tensor) and got.shape == want_shape, "keys and values must be (2, n_head, P, "
           f"head_dim) = {want_shape}, got {tuple(getattr(got, 'shape', ()))}")
    oracle_rows = leaf(rows)
    want = REFERENCE["ex4_2"](base.blocks[1], oracle_rows)  # its values are checked below, against the block-input view
    expect(close(got, want) or not close(got.flatten().sort().values, want.flatten().sort().values),
           "the keys and values hold the right numbers in the wrong places: index 0 the keys, 1 the values, each "
           "split into heads with view(P, n_head, head_dim).transpose(0, 1); a reshape to (n_head, P, head_dim) "
           "mixes positions and heads")
    hidden = torch.zeros(c.n_layer, P, c.d_model, dtype=torch.float64)
    hidden[1] = rows  # rows at block 1 only (the others: zeros)
    as_block_input = BlockInputPrefixGPT.from_hidden(base, hidden)
    kv = torch.stack([got if i == 1 else rows_to_kv(block, hidden[i]) for i, block in enumerate(base.blocks)])
    idx = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(7))
    expect(close(PrefixGPT.from_kv(base, kv)(idx)[0], as_block_input(idx)[0]),  # oracle: the block-input view
           "a key/value prefix of these keys and values differs from the block-input prefix of the rows: "
           "did you apply ln_1 first, and take the key (second) and value (third) parts of c_attn?")
    expect_gradients(got, want, {"the prefix rows": (rows, oracle_rows)}, frozen=base)


def check_ex4_3(prefix_cache):
    base = tiny_base()
    idx = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(6))
    for layers in ("all", "top"):
        model = PrefixGPT(base, P, init="random", seed=3, layers=layers)
        cache = prefix_cache(model, idx.size(0))
        expect(isinstance(cache, KVCache) and len(cache.layers) == base.config.n_layer,
               f"return a KVCache of {base.config.n_layer} layers, got {type(cache).__name__}")
        want_shape = (idx.size(0), base.config.n_head, P, base.config.head_dim)  # (B, n_head, P, head_dim)
        shapes = {tuple(t.shape) for kv in cache.layers if kv is not None for t in kv}
        expect(shapes == {want_shape}, f"the cached keys and values have shapes {sorted(shapes)}; each must be "
               f"(batch_size, n_head, P, head_dim) = {want_shape} (repeat the prefix for every row of the batch)")
        got, want = base(idx, cache=cache)[0], model(idx)[0]
        if not close(got, want):
            kv = model.prefix_kv()
            swapped = PrefixGPT.from_kv(base, kv.flip(1))
            expect(not close(got, swapped(idx)[0]), "keys and values are swapped: prefix_kv()[i, 0] are layer i's "
                   "keys, [i, 1] its values")
            expect(layers == "all", "a prefix worn on the top half only: the layers in model.wearing get its keys "
                   "and values, the others must stay None")
            expect(False, "the base continuing from your cache gives other logits than the prefix model")


# ---------------------------------------------------------------------------- lesson 5


def check_ex5_1(cls):
    torch.manual_seed(0)
    big = cls(16, 32, 6, 10)  # enough numbers in P' to tell a standard normal from anything else
    expect(0.8 < big.input.detach().std().item() < 1.2 and abs(big.input.detach().mean().item()) < 0.2,
           "P' (`input`) must start drawn from a standard normal (torch.randn), not zeros or another scale")
    m = cls(3, 4, 6, 10)
    rows = m()
    expect(isinstance(rows, torch.Tensor) and rows.shape == (3, 10), f"forward() must give (P, width) = (3, 10), "
           f"got {tuple(getattr(rows, 'shape', ()))}")
    names = {n: p.shape for n, p in m.named_parameters()}
    expect(names.get("input") == (3, 4), "P' must be a parameter named `input` of shape (prompt_len, k)")
    expect(sum(p.numel() for p in m.parameters()) == 3 * 4 + 4 * 6 + 6 + 6 * 10 + 10,
           "parameters: P' plus Linear(k, hidden) plus Linear(hidden, width), biases included")
    first, last = m.mlp[0], m.mlp[-1]
    trains = {"P' (`input`)": m.input, "mlp[0].weight": first.weight, "mlp[0].bias": first.bias,
              "mlp[-1].weight": last.weight, "mlp[-1].bias": last.bias}
    copies = {name: leaf(t) for name, t in trains.items()}
    w1, b1, w2, b2 = list(copies.values())[1:]
    want = F.linear(torch.tanh(F.linear(copies["P' (`input`)"], w1, b1)), w2, b2)  # the oracle: the MLP written out
    expect(close(rows, want), "rows differ from Linear -> tanh -> Linear applied to P' (is the nonlinearity tanh?)")
    expect_gradients(rows, want, {name: (trains[name], copies[name]) for name in trains})


def check_ex5_2(merge):
    base = tiny_base()
    model = PrefixGPT(base, P, reparam="mlp", reparam_dim=7, hidden=9, seed=1)
    merged = merge(model)
    expect(merged is not model and isinstance(model.row_maker, MLPPrefix),
           "merge must return a new model and leave the one it is given as it was (its rows still an MLPPrefix)")
    expect(type(merged) is PrefixGPT and merged.base is base, "merge must return a PrefixGPT on the same base")
    expect(isinstance(merged.row_maker, DirectPrefix) and not isinstance(merged.row_maker, MLPPrefix),
           "merged rows must be a DirectPrefix: the MLP is not kept")
    c = base.config
    expect(count_trainable(merged) > 0, "nothing in the merged model requires grad: keep its rows an nn.Parameter "
           "that trains (DirectPrefix makes one), not a frozen copy")
    expect(count_trainable(merged) == P * 2 * c.n_layer * c.d_model, "the merged model must hold only the "
           "P x 2*L*d rows")
    idx = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(8))
    expect(close(merged(idx)[0], model(idx)[0], atol=1e-8), "merged logits differ from the MLP model's")
    top = PrefixGPT(base, P, reparam="mlp", reparam_dim=7, hidden=9, seed=2, layers="top")  # the top half only
    expect(close(merge(top)(idx)[0], top(idx)[0], atol=1e-8), "merging a prefix worn on the top layers only "
           "gives other logits: does the merged model keep the layers it is worn on (model.layers)?")


# ---------------------------------------------------------------------------- lesson 6


def check_ex6_1(wilson_interval):
    for p, n in [(0.5, 20), (1.0, 45), (0.0, 45), (0.9, 200), (0.3, 7)]:
        got = wilson_interval(p, n)
        want = _score_interval_by_bisection(p, n)  # the oracle: the definition, solved numerically
        expect(len(got) == 2 and abs(got[0] - want[0]) < 1e-6 and abs(got[1] - want[1]) < 1e-6,
               f"interval for {p} on {n} is {tuple(round(x, 4) for x in got)}, expected "
               f"{tuple(round(x, 4) for x in want)}" + (" (a normal interval p +- z sqrt(p(1-p)/n) "
                                                        "collapses at p = 0 or 1)" if p in (0, 1) else ""))
    expect(tuple(wilson_interval(0.0, 0)) == (0.0, 1.0), "with n = 0 nothing is known: (0.0, 1.0)")


def _score_interval_by_bisection(p, n, z=1.96):
    inside = lambda q: abs(p - q) <= z * math.sqrt(q * (1 - q) / n) + 1e-15
    def edge(lo, hi):  # lo inside, hi outside
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if inside(mid) else (lo, mid)
        return lo
    return (0.0 if inside(0.0) else edge(p, 0.0)), (1.0 if inside(1.0) else edge(p, 1.0))


def check_ex6_2(pick_learning_rate):
    # each case: scores (rates deliberately out of order), the answer worked out by hand, what it catches
    cases = [
        ({0.03: [0.4, 0.2], 0.003: [0.2, 0.3], 0.01: [0.5, 0.6]}, 0.01, "the best mean, with the rates out of order"),
        ({1.0: [0.1, 0.1], 3.0: [0.95, 0.05], 10.0: [0.6, 0.6], 30.0: [0.2, 0.2]}, 10.0,
         "the mean over seeds, not the best seed: 3's mean is 0.5, 10's is 0.6"),
        ({0.01: [0.1, 0.1], 0.0003: [0.1, 0.1], 0.001: [0.5, 0.5], 0.003: [0.9, None]}, 0.001,
         "a diverged run (None) counts 0: 0.003's mean is (0.9 + 0) / 2 = 0.45, below 0.001's 0.5"),
        ({1.0: [0.1] * 3, 3.0: [0.9, 0.9, 0.0], 10.0: [0.7] * 3, 30.0: [0.1] * 3}, 10.0,
         "the mean, not the median: 3's three seeds average 0.6, 10's 0.7"),
        ({30.0: [0.2], 10.0: [0.7], 3.0: [0.7], 1.0: [0.5]}, 3.0, "a tie goes to the smaller rate"),
        ({0.001: [0.2, 0.4], 0.003: [0.9, 0.9], 0.0003: [0.3, 0.1], 0.01: [0.95, None], 0.03: [1.0, None]}, 0.003,
         "inside the range by the mean with None as 0; by a best seed or skipping None, 0.03 would look best"),
    ]
    for scores, want, what in cases:
        try:
            got = pick_learning_rate(dict(scores))
        except ValueError as e:
            got = None
            expect(False, f"for {scores} you raised ValueError({e}), but the best, {want:g}, is inside the rates "
                   f"tried ({what})")
        expect(got == want, f"for {scores} you returned {got}, expected {want:g} ({what})")
    edges = [({0.003: [0.5, 0.5], 0.001: [0.9, 0.8], 0.01: [0.1, 0.2]}, "widen below"),
             ({0.01: [0.9, 0.9], 0.001: [0.5, 0.6], 0.003: [0.7, 0.7]}, "widen above"),
             ({0.5: [0.9]}, "widen below")]  # one rate brackets nothing
    for scores, words in edges:
        try:
            got = pick_learning_rate(dict(scores))
        except ValueError as e:
            expect(words in str(e), f"for {scores} the ValueError should say {words!r}; it says: {e}")
            continue
        expect(False, f"for {scores} you returned {got!r}, but the best rate is at an end of those tried: "
               f"raise ValueError saying {words!r} (the sweep has not bracketed it)")


CHECKS = {name.removeprefix("check_"): f for name, f in globals().items() if name.startswith("check_ex")}

REFERENCE = {  # the library's own code: the reference solution of each exercise
    "ex1_1": attention_mask,
    "ex1_2": base_params,
    "ex2_1": exact_match,
    "ex2_2": rank_candidates,
    "ex3_1": soft_prompt_reference,
    "ex3_2": mixed_batch_reference,
    "ex3_3": library_steps,
    "ex4_1": lambda block, x, kv: PrefixBlock(block)(x, kv)[0],
    "ex4_2": rows_to_kv,
    "ex4_3": lambda model, batch_size: model.as_cache(batch_size),
    "ex5_1": lambda prompt_len, k, hidden, width: MLPPrefix(prompt_len, k, hidden, width, seed=0),
    "ex5_2": lambda model: model.merge(),
    "ex6_1": wilson_interval,
    "ex6_2": pick_learning_rate,
}

LEARNER = {  # where each exercise lives in lessons/exercises/
    "ex1_1": ("lesson1", "causal_mask"), "ex1_2": ("lesson1", "count_gpt_params"),
    "ex2_1": ("lesson2", "exact_match"), "ex2_2": ("lesson2", "rank_candidates"),
    "ex3_1": ("lesson3", "soft_prompt_logits"), "ex3_2": ("lesson3", "mixed_batch_logits"),
    "ex3_3": ("lesson3", "train_soft_prompt"),
    "ex4_1": ("lesson4", "prefix_block"), "ex4_2": ("lesson4", "rows_to_kv"), "ex4_3": ("lesson4", "prefix_cache"),
    "ex5_1": ("lesson5", "MLPPrefix"), "ex5_2": ("lesson5", "merge"),
    "ex6_1": ("lesson6", "wilson_interval"), "ex6_2": ("lesson6", "pick_learning_rate"),
}


def learner(name: str):
    """The learner's implementation of an exercise, read from lessons/exercises/."""
    module, attr = LEARNER[name]
    spec = importlib.util.spec_from_file_location(f"exercises_{module}", EXERCISES / f"{module}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return getattr(mod, attr)

