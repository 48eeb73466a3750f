# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 4: Prefix tuning
#
# A soft prompt (lesson 3) adds trainable rows at the input only; everything it does to the
# higher layers has to pass through the frozen blocks below them. **Prefix tuning** (Li & Liang
# 2021) puts trainable rows at *every* layer: at each block, the attention sees P extra key and
# value rows in front of the tokens' own. The base stays frozen, as before.
#
# This lesson draws the block that wears a prefix and reads its code, shows with numbers how a
# soft prompt, a block-input prefix and a key/value prefix are each a special case of the next,
# counts what a prefix costs on GPT-2 medium (with and without the MLP Li & Liang train it
# through), and trains a prefix on a task that chains two skills.
#
# After this lesson you will be able to:
#
# - say what a key/value prefix and a block-input prefix add to a transformer block, and which positions every token can see;
# - turn a soft prompt into a block-input prefix, and a block-input prefix into a key/value prefix, with the same logits;
# - build the key/value prefix of a real text, and explain why it equals writing the text in front;
# - count a prefix's numbers by hand, and tell what trains from what is stored when an MLP makes the prefix;
# - tune a prefix, directly or through the MLP, with `minprefix.tune.tune`.
#
# **Run time:** about two minutes on 2 CPU cores, 120 s in the committed run (the last
# cell before the exercises prints how long this run took). With `MINPREFIX_QUICK=1` in the
# environment, training is shortened (every cell still runs); the numbers then differ from the ones discussed here.

# %%
# %matplotlib inline
import time

import torch

import minprefix
import minprefix.lab.figures
from minprefix import BlockInputPrefixGPT, PrefixGPT, SoftPromptGPT, count_stored, count_trainable
from minprefix.lab.lesson import exercises, setup, solution  # noqa: F401 (solution("4.1"): the library's answer, after yours)
from minprefix.methods import METHODS, count_markdown, count_table
from minprefix.model import attention_mask
from minprefix.params import GPT2_FAMILY, gpt2_config
from minprefix.prefix import base_kv, prefix_attention_share
from minprefix.prompted import MLP_HIDDEN
from minprefix.lab.sweep import SweepConfig
from minprefix.scoring import percent, score
from minprefix.tune import TuneConfig, tune
from minprefix.world import answer_batch, examples

t_start = time.time()
base, tok, QUICK = setup()  # one thread, seed 0, the shipped base (frozen, in eval mode); prints what ran

# %% [markdown]
# ## The prefix-augmented block
#
# A transformer block mixes information between positions in one place only: attention. Each
# token's query is compared with the keys of the positions it may see, and it takes a weighted
# average of their values. Prefix tuning adds rows to *what can be seen*. There are two ways to
# do it, and `minprefix` implements both, each as a thin wrapper around an unchanged, frozen block:
#
# - a **key/value prefix** (the form in Li & Liang's code): P extra keys and P extra values are
#   put in front of the tokens' own keys and values, inside every layer's attention. They are free
#   numbers; no input row produced them;
# - a **block-input prefix**: P extra rows are concatenated in front of every block's *input*. The
#   frozen block computes their keys and values with its own LayerNorm and projections, as it would
#   for tokens. After the block, the P output rows are thrown away, and the next block gets its own
#   fresh P rows.
#
# The figure below, drawn by `minprefix.lab.figures.draw_blocks()`, sets a regular block beside the two.

# %%
fig = minprefix.lab.figures.draw_blocks()

# %% [markdown]
# `PrefixBlock` needs no new attention code. The regular attention already accepts key/value rows
# that come *before* the current tokens: that is the KV cache used in generation, where the past
# tokens' keys and values are kept. A key/value prefix is simply a "past" of P tokens that never
# existed. So `PrefixBlock` hands the block its prefix as the past; the attention puts those keys and
# values in front of the tokens' own (`extend` in `minprefix/model.py`: a prefix is concatenated;
# during generation the cache writes each new token into room it reserved, instead of copying the
# whole past every token), and masks with `attention_mask(T, P + T)`. Writing that block is
# **exercise 4.1**, `prefix_block(block, x, prefix_kv)` in `lessons/exercises/lesson4.py` (check it
# with `pytest -m ex4_1 --learner`; once it passes, `solution("4.1")` prints the library's code).
# Here is the mask for T = 4 tokens after P = 3 prefix rows (1: the query may look at that key):

# %%
print("keys:   prefix  tokens")
for i, row in enumerate(attention_mask(4, 3 + 4).int().tolist()):
    print(f"token {i}: {row[:3]}  {row[3:]}")

# %% [markdown]
# With P earlier rows, the mask has T rows (queries) and P + T columns (keys). The causal triangle
# is aligned at the bottom right, so every token sees all P prefix positions, and the tokens are
# causal among themselves. `BlockInputPrefixBlock` reaches the same mask the plain way: the P rows
# are put at the front of the block's input, so the ordinary causal mask lets every token see them,
# and the block's P output rows are dropped before the next block.

# %% [markdown]
# ## Three views
#
# A soft prompt, a block-input prefix and a key/value prefix are not three unrelated methods:
# each is a special case of the next. We show it with numbers: build one, build the next from it,
# and compare the logits on a batch of inputs. As a yardstick for "zero", the largest logit in the
# batch is printed too.

# %%
P = 10
exs = examples("reverse-upper", "dev", 8)
idx, _ = answer_batch(tok, exs)  # (B, T), padded at the end: harmless for a causal model
soft = SoftPromptGPT(base, P, init="random", seed=1)
with torch.no_grad():
    soft_logits, _ = soft(idx)
print(f"a batch of {idx.size(0)} inputs, {idx.size(1)} positions; largest |logit| {soft_logits.abs().max():.1f}")

# %% [markdown]
# **(a) A soft prompt is a block-input prefix.** A soft prompt's rows enter at positions 0 to P-1,
# before every token, so under the causal mask they never see the tokens. What they become at the
# input of each block is therefore fixed once the rows are: run the rows alone through the blocks
# and record each block's input. A block-input prefix holding exactly those recorded rows gives the
# same logits. The few lines below do the recording (the same loop as `hidden_rows_of` in
# `tests/test_methods.py`; the library's `minprefix.prefix.block_inputs` does it for token ids, not
# for free rows).

# %%
with torch.no_grad():
    x = base.embed(soft.prompt()[None])  # (1, P, d): the rows plus the position embeddings of 0..P-1
    hidden = []
    for block in base.blocks:
        hidden.append(x[0])  # what this block receives at the prompt positions
        x, _ = block(x)
    hidden = torch.stack(hidden)  # (n_layer, P, d)
as_block_input = BlockInputPrefixGPT.from_hidden(base, hidden)
with torch.no_grad():
    diff_a = (as_block_input(idx)[0] - soft_logits).abs().max().item()
print(f"block-input rows: {tuple(hidden.shape)} (n_layer, P, d)")
print(f"(a) max |logit difference|, soft prompt vs block-input prefix: {diff_a:.1e}")

# %% [markdown]
# So the soft prompt is the block-input prefix whose rows at every block after the first are
# *determined* by its rows at the first. A block-input prefix lets the rows of every block be chosen freely: it has
# one P x d matrix per block where the soft prompt has one in all.
#
# **(b) A block-input prefix is a key/value prefix.** All a block does with its P prefix rows is
# turn them into keys and values: K = W_k LN(p) + b_k and V = W_v LN(p) + b_v, with the block's
# first LayerNorm and the key and value parts of its `c_attn`. (Their queries and outputs are
# computed and thrown away.) `BlockInputPrefixGPT.to_kv()` computes those keys and values for every
# block, and `PrefixGPT.from_kv` builds the key/value prefix that holds them. We check it on a
# block-input prefix with random rows, and along the whole chain from the soft prompt.

# %%
block_prefix = BlockInputPrefixGPT(base, P, init="random", seed=2)
with torch.no_grad():
    kv = block_prefix.to_kv()  # (n_layer, 2, n_head, P, head_dim): index 0 keys, 1 values
    diff_b = (PrefixGPT.from_kv(base, kv)(idx)[0] - block_prefix(idx)[0]).abs().max().item()
    diff_chain = (PrefixGPT.from_kv(base, as_block_input.to_kv())(idx)[0] - soft_logits).abs().max().item()
print(f"keys and values: {tuple(kv.shape)} (n_layer, 2, n_head, P, head_dim)")
print(f"(b) max |logit difference|, block-input prefix vs key/value prefix: {diff_b:.1e}")
print(f"    soft prompt -> block-input prefix -> key/value prefix: {diff_chain:.1e}")

# %% [markdown]
# The converse does not hold. A key/value prefix has, per block, P free keys and P free values;
# a block-input prefix makes both from the same P rows, through fixed weights. So a key/value
# prefix holds separate keys and values where a block-input prefix holds only rows, and it can reach
# keys and values that no input row would produce. Each view contains the previous one: soft prompt, then block-input prefix, then
# key/value prefix.
#
# **(c) The key/value prefix of a real text is that text, written in front.** When the base reads
# a text, every block computes keys and values for it; `minprefix.prefix.base_kv` collects them. A
# key/value prefix holding them must give exactly the logits of the base reading the text followed
# by the input, because that is what the KV cache does during generation. We take the words before
# the input in one of the base's reversal templates, `Reverse the word '{x}': `.

# %%
text = "Reverse the word "
ids = tok.encode(text)
text_prefix = PrefixGPT.from_kv(base, base_kv(base, ids))
with torch.no_grad():
    full_logits, _ = base(torch.cat([torch.tensor([ids] * idx.size(0)), idx], dim=1))
    diff_c = (text_prefix(idx)[0] - full_logits[:, len(ids):]).abs().max().item()
print(f"{text!r}: a prefix of {len(ids)} positions, {tuple(text_prefix.prefix_kv().shape)}")
print(f"(c) max |logit difference|, its key/value prefix vs the base reading text + input: {diff_c:.1e}")

dev = examples("bare-reverse", "dev", 200)
with_prefix, bare = score(text_prefix, tok, dev), score(base, tok, dev)
print(f"bare-reverse dev ({len(dev)} inputs, no instruction): base alone {percent(bare['exact_match'], len(dev))}, "
      f"with this prefix {percent(with_prefix['exact_match'], len(dev))}")

# %% [markdown]
# The three differences are 8.1e-06, 0.0e+00 and 7.6e-06, against logits as large as 19.1: float32
# rounding, nothing more. The bare-reverse scores (0.0 % for the base alone, 100.0 % with this prefix)
# also show why Li & Liang start a prefix from the keys and values of real words (`init="text"` in
# `minprefix`): such a prefix is already a working prompt before any training.
#
# **The mask, seen from outside.** The claim "every real token sees every prefix position" can be
# tested without reading any code: change one prefix position and watch the *first* token's
# logits. If the first token could not see that position, they would not move. And changing a later
# token must leave the earlier tokens' logits alone (the mask printed in "The prefix-augmented block").

# %%
kv_prefix = PrefixGPT(base, P, init="random", seed=3)
kv = kv_prefix.prefix_kv().detach()
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    first_token = kv_prefix(idx)[0][:, 0]  # (B, V): logits at the first real token
    moved = []
    for j in range(P):
        changed = kv.clone()
        changed[:, :, :, j] += torch.randn(changed[:, :, :, j].shape, generator=g)  # position j, every layer
        moved.append((PrefixGPT.from_kv(base, changed)(idx)[0][:, 0] - first_token).abs().max().item())
    later = idx.clone()
    later[:, 3] = tok.stoi["z"]  # change the fourth token
    earlier_moved = (kv_prefix(later)[0][:, :3] - kv_prefix(idx)[0][:, :3]).abs().max().item()
print("change of the first token's logits when prefix position j changes:")
print("  " + ", ".join(f"j={j}: {m:.2f}" for j, m in enumerate(moved)))
print(f"change of the first three tokens' logits when the fourth token changes: {earlier_moved:.1e}")

# %% [markdown]
# ## Counting a prefix
#
# The numbers Li & Liang (2021) quote are for GPT-2 medium, with a prefix as long as the one in
# this lesson. `count_table` computes every method's counts from closed-form formulas (tests check
# them against modules actually built). The building block is one P x d matrix.

# %%
medium = gpt2_config("gpt2-medium")
L, d, h = medium.n_layer, medium.d_model, MLP_HIDDEN
table = {r["method"]: r for r in count_table(medium, P)}
n_medium = table["full"]["trainable"]
kv_row, mlp_row = table["prefix"], table["prefix-mlp"]
print(f"GPT-2 medium: {L} layers, d = {d}, {n_medium:,} parameters")
print(f"one P x d matrix:   {P} x {d} = {P * d:,}   = a soft prompt: {table['soft']['trainable']:,}")
print(f"block-input prefix: {L} x {P * d:,} = {L * P * d:,}   (count_table: {table['block-prefix']['trainable']:,})")
print(f"key/value prefix:   2 x {L * P * d:,} = {2 * L * P * d:,}   (count_table: {kv_row['trainable']:,}), "
      f"{100 * kv_row['trainable_share']:.3f} % of GPT-2 medium")

# %% [markdown]
# Li & Liang did not train those numbers directly: an MLP makes them (lesson 5 looks at why). A
# trainable P x k matrix P' goes through Linear(k, h), tanh, and Linear(h, 2 L d), one row per
# prefix position. With k = d and the hidden width h of their code (both printed below):

# %%
width = 2 * L * d  # one prefix position: keys and values of every layer
parts = {"P' (P x k)": P * d, "Linear(k, h)": d * h + h, "Linear(h, 2Ld)": h * width + width}
for name, n in parts.items():
    print(f"  {name:15s} {n:>12,}")
print(f"with P = {P}, k = d = {d}, h = {h}, 2Ld = 2 x {L} x {d} = {width:,}")
print(f"trains while tuning: {sum(parts.values()):,} (count_table: {mlp_row['trainable']:,}), "
      f"{100 * mlp_row['trainable_share']:.2f} % of GPT-2 medium")
print(f"stored after merge(): {mlp_row['stored']:,}, {100 * mlp_row['stored_share']:.3f} % of GPT-2 medium")

# %% [markdown]
# The last layer of the MLP dominates: it maps each hidden vector to all of a position's keys and
# values. So the tiny share usually quoted for prefix tuning describes what is *stored*: the
# prefix. While training, the MLP makes far more numbers train, though still only a small share
# of the model; after training it is dropped and only its output is kept. The whole table, the
# same way `minprefix info` prints it:

# %%
print(count_markdown(medium, P))

# %% [markdown]
# How does the share depend on the model's size? A prefix has 2 L P d numbers, while a block holds
# about 12 d² weights (4 d² in attention: the query, key, value and output projections; 8 d² in the
# MLP: two d x 4d matrices), so the whole model
# has roughly 12 L d². Their ratio is about 2 P d / (12 d²) = P / (6 d): at a fixed prefix
# length the share shrinks in proportion to 1/d. The embedding tables make the real share a little
# smaller still. The figure shows the trainable share of each method across the GPT-2 family and
# the shipped base, and the cell after it compares the key/value prefix's share with P / (6 d).

# %%
fig = minprefix.lab.figures.plot_share_by_width(None, base.config)

# %%
models = {"shipped base": base.config, **{name: gpt2_config(name) for name in GPT2_FAMILY}}
print(f"trainable share, P = {P}, h = {h}")
print(f"{'model':13s} {'d':>5s}  key/value prefix   P / (6d)   key/value prefix + MLP   h / (6d)")
for name, config in models.items():
    shares = {r["method"]: r["trainable_share"] for r in count_table(config, P)}
    print(f"{name:13s} {config.d_model:5d}  {100 * shares['prefix']:14.3f} %  "
          f"{100 * P / (6 * config.d_model):7.3f} %  {100 * shares['prefix-mlp']:21.2f} %  "
          f"{100 * h / (6 * config.d_model):7.2f} %")

# %% [markdown]
# The approximation tracks the exact share, and both fall as the width grows; the exact share is
# lower because the token and position tables add to the model but not to the prefix, most of all in
# the smaller GPT-2 models, whose token table is a large part of their weights. The MLP behaves the
# same way: its largest layer, h x 2 L d, grows like L d just as the prefix does, so its share
# approaches h / (6 d), a fixed multiple of the prefix's (on the shipped base, the MLP's first layer
# adds noticeably on top). On the shipped base, whose width is small, the direct prefix is already a
# visible fraction of the model and the MLP trains a large part of it; on GPT-2 medium both are
# small. The soft prompt's line in the figure falls faster than the others: it does not grow with
# the number of layers, and the wider GPT-2 models are also deeper.

# %% [markdown]
# ## Training a prefix
#
# Now we train. The task is `reverse-upper`: the input alone, `'stop': `, with the answer `POTS`,
# the input reversed *and* in capitals. The base learned to reverse and to uppercase from their
# templates, but never both at once, and the bare input names neither. We tune a key/value prefix
# two ways, each at its default learning rate: `prefix` trains the prefix itself, and `prefix-mlp`
# trains it through the MLP of the previous section (a method trained through a network is named
# after its direct method, plus `-mlp`). Both get 800 steps: the MLP's default budget. The direct
# prefix's default is 1,600 (`minprefix tune --help`), because `minprefix sweep` found it still
# climbing at 800; this run shows where it stands halfway there.

# %%
STEPS = 60 if QUICK else SweepConfig().steps  # the sweep's first step count, prefix-mlp's default
print(f"default steps: prefix {METHODS['prefix'].steps:,}, prefix-mlp {METHODS['prefix-mlp'].steps:,}")
EVAL_EVERY = 10 if QUICK else 100
runs = {}
for method in ("prefix", "prefix-mlp"):
    cfg = TuneConfig(method=method, task="reverse-upper", steps=STEPS, eval_every=EVAL_EVERY)
    t0 = time.time()
    model, history = tune(base, tok, cfg, progress=True)
    runs[method] = (model, history, time.time() - t0)

n_dev = len(examples("reverse-upper", "dev", cfg.n_dev))
print(f"reverse-upper, P = {P}, {STEPS} steps of {cfg.batch_size} examples, {n_dev} dev examples, seed {cfg.seed}:")
for method, (model, history, seconds) in runs.items():
    best = max(history, key=lambda r: r["dev_exact_match"])
    print(f"  {METHODS[method].label:23s} (lr {METHODS[method].lr:g}): dev exact match at the last step "
          f"{percent(history[-1]['dev_exact_match'], n_dev):>7}, best {percent(best['dev_exact_match'], n_dev):>7} "
          f"(step {best['step']}); trains {count_trainable(model):,}, stores {count_stored(model):,}; {seconds:.0f} s")
last = {m: r[1][-1]["dev_exact_match"] for m, r in runs.items()}
print(f"at the last step the MLP route is {100 * (last['prefix-mlp'] - last['prefix']):+.1f} points "
      f"from the direct one")

# %%
labels = {m: f"{METHODS[m].label} ({m})" for m in runs}
fig = minprefix.lab.figures.plot_curves({f"reverse-upper, key/value prefix, P = {P}": {m: r[1] for m, r in runs.items()}},
                                        None, STEPS, labels, title="one seed, each method at its default learning rate")

# %%
for ex in examples("reverse-upper", "test", 4):
    ids = torch.tensor([tok.encode(ex.prompt)])
    answers = []
    for method, (model, _, _) in runs.items():
        out = model.generate(ids, max_new_tokens=12, top_k=1, stop_id=tok.eos_id)
        answers.append(f"{method}: {tok.decode(out[0, ids.size(1):].tolist())!r}")
    print(f"{ex.prompt!r:14} expected {ex.answer!r:10} " + "   ".join(answers))

# %% [markdown]
# Both methods train a key/value prefix of the same shape and store the same number of values
# (10,240); they differ in the route the gradient takes to the prefix and in their learning rates.
# On this composed task, in this run, the direct prefix ends at 92.0 % dev exact match (best 94.0 %)
# and the prefix through the MLP at 100.0 %. This is one seed at one learning rate per method: it shows that the
# route can matter, not how reliably. Whether direct optimization of a prefix is unstable, as Li &
# Liang (2021) report, is a question about many seeds and learning rates, and it is the subject of
# lesson 5.

# %% [markdown]
# ### How a prefix mixes into attention
#
# A key/value prefix acts inside attention. At every layer, a token's attention output becomes a
# mix of two averages: one over the prefix's values, one over the tokens' own values (the one the
# base computes), weighted by the share of the softmax that the prefix keys take. Lesson 6 comes
# back to what that structure allows. `prefix_attention_share` reads the weight, layer by layer:
# it fills a KV cache with one forward pass (the keys, prefix first), takes each block's queries,
# and recomputes the softmax with the bottom-right mask of lesson 1. Here it is for the two trained
# prefixes, on the dev inputs of the commonest length:

# %%
dev_inputs = [ex.prompt for ex in examples("reverse-upper", "dev", 200)]
length = max(set(map(len, dev_inputs)), key=[len(s) for s in dev_inputs].count)  # the commonest length
idx = torch.tensor([tok.encode(s) for s in dev_inputs if len(s) == length])
shares = {METHODS[m].label: prefix_attention_share(model, idx) for m, (model, _, _) in runs.items()}
for label, s in shares.items():
    print(f"{label:23s} attention on the prefix: " + ", ".join(f"layer {i} {100 * v:.1f} %" for i, v in enumerate(s)))
fig = minprefix.lab.figures.plot_prefix_attention(shares, title=f"reverse-upper: {len(idx)} dev inputs of {length} characters")

# %% [markdown]
# Both prefixes take a large share of the attention, from half to nine tenths of it depending
# on the layer, so the tokens' own average is scaled down a lot and the prefix's values weigh heavily
# in what attention returns. The direct prefix takes more in the first two layers (87.7 % and
# 87.0 %) than the one trained through the MLP (69.1 % and 56.4 %), which scores higher, and about
# the same in the last two (52.0 % and 71.0 % against 51.3 % and 70.9 %): a larger share does not
# make a better prefix. In both,
# layer 2 leaves the tokens the most room. One seed of each, on one task: take away the shape, not
# the exact numbers.

# %%
print(f"this notebook ran for {time.time() - t_start:.0f} s ({'quick' if QUICK else 'full'} mode)")

# %% [markdown]
# ## Recap
#
# - A key/value prefix adds P keys and values to every layer's attention; a block-input prefix adds
#   P rows to every block's input; both are checked against the explicit block, and a soft prompt
#   is the case with rows at the bottom only.
# - A key/value prefix stores 2 x L x P x d numbers; trained through the MLP, the hidden-to-row layer
#   alone adds h x 2Ld while training.
# - That MLP is 72 % of the shipped base's size, 7 % of GPT-2 medium's: what trains and what is
#   stored are different counts.
# - A trained prefix takes a large share of every layer's attention (half to nine tenths
#   here): what attention returns leans heavily on the prefix's values.
# - One seed at the default learning rates says how far each route got in one run, not how
#   reliably: lesson 5 measures that.
#
# ## Try it yourself
#
# 1. Put the prefix on the bottom or the top half only (`prefix_layers="bottom"` or `"top"` in the
#    `TuneConfig`): which half carries `reverse-upper`?
# 2. Start the direct prefix from the keys and values of the instruction `Reverse it in capitals`
#    (`init_text=...`) and compare its curve with the random start's.
# 3. With `count_table(gpt2_config("gpt2-xl"), 100)`, what share of GPT-2 XL is a 100-position prefix?
#
# Next, lesson 5 measures the MLP's effect on stability, with grids of runs.
#

# %% [markdown]
# ## Exercises
#
# The exercises are functions to fill in, in `lessons/exercises/lesson4.py`. Each docstring says
# what to compute and which section above to reread.

# %%
exercises(4)  # lists them from that file (it only reads the file; it runs nothing in it)

# %% [markdown]
# | exercise | function in `lessons/exercises/lesson4.py` | reread |
# | --- | --- | --- |
# | 4.1 | `prefix_block(block, x, prefix_kv)`: a regular block whose attention also sees P prefix keys and values, written with the block's own weights | "The prefix-augmented block" |
# | 4.2 | `rows_to_kv(block, rows)`: the keys and values a block makes of P block-input rows | "Three views" |
# | 4.3 | `prefix_cache(model, batch_size)`: a trained prefix turned into a KV cache the bare base continues from, with the same logits | "The prefix-augmented block" |
#
# To check your work, run from the repository root (not from this notebook: until you fill them
# in, the functions raise `NotImplementedError`):
#
# ```bash
# pytest -m ex4_1 --learner                      # one exercise (ex4_2, ex4_3 likewise)
# pytest -m "ex4_1 or ex4_2 or ex4_3" --learner  # this lesson's three
# pytest tests/test_exercises.py --learner       # all of them
# ```
#
# The last command ends with a line `exercises done: k/N`, where N is the number of exercises in
# all the lessons, printed above. Without `--learner`, the same checks run against the library's
# own solutions.
