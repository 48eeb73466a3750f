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
# # Lesson 3: Soft prompts
#
# A hard prompt is a choice of tokens, and the only way to improve it is to try other tokens
# (lesson 2). **Prompt tuning** (Lester et al. 2021) lets go of the tokens: the prompt becomes
# P free vectors placed in front of the token embeddings, trained by gradient descent while
# every weight of the model stays frozen. These vectors are called a *soft prompt*.
#
# This lesson reads the layer that puts a soft prompt in place, counts what it costs, checks
# that the base model really stays untouched, compares three ways to start the vectors, looks
# at what a trained soft prompt resembles, serves several tasks in one batch, asks how far a tuned
# prompt carries past the string lengths it saw, and finally lets a small network produce the prompt
# (P-tuning, Liu et al. 2021).
#
# After this lesson you will be able to:
#
# - trace the shapes through a soft-prompted forward pass and say which positions the prompt and the tokens take;
# - count the numbers a soft prompt holds, on the shipped base and on GPT-2 medium;
# - check that tuning leaves the base bit for bit as it was;
# - tune a soft prompt with `minprefix.tune.tune`, from random, vocabulary or text initialization;
# - read a trained prompt through its nearest tokens, and say why that reading is only a hint;
# - run one batch in which every row wears the prompt of its own task;
# - score a tuned prompt on inputs longer than any it saw, and say what the drop does and does not show;
# - tell apart what trains and what is stored when a network (P-tuning's prompt encoder) makes the prompt.
#
# **Run time:** about a minute on 2 CPU cores, 45 s in the committed run (the last cell before the
# exercises prints how long this run took). With `MINPREFIX_QUICK=1` in the environment, training is
# shortened (every cell still runs); the numbers then differ from the ones discussed here.

# %%
# %matplotlib inline
import inspect
import random
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import minprefix
import minprefix.lab.figures
from minprefix import PromptBank, SoftPromptGPT, count_frozen, count_stored, count_trainable
from minprefix.lab.lesson import exercises, setup, solution  # noqa: F401 (solution("3.1"): the library's answer, after yours)
from minprefix.methods import METHODS, count_table
from minprefix.params import gpt2_config, ptuning_params
from minprefix.prompted import MLP_HIDDEN, PTuningEncoder
from minprefix.scoring import percent, score
from minprefix.tune import TuneConfig, tune
from minprefix.world import examples

t_start = time.time()
base, tok, QUICK = setup()  # one thread, seed 0, the shipped base (frozen, in eval mode); prints what ran

# %% [markdown]
# ## The input layer
#
# A token id is an index into a table, and there is no gradient with respect to an index.
# Lester et al. (2021) therefore stop asking that each prompt position be the embedding of some
# token. The prompt becomes a matrix of P rows, each as wide as an embedding (d, the model's
# width), and the rows are the parameters. Everything else in the model stays frozen.
#
# In `minprefix` the layer that does the placing is `SoftPromptEmbedding`. It owns no
# parameters: the rows belong to the model that wears the prompt (`SoftPromptGPT`), which hands
# them over on every call.
#
# What `SoftPromptGPT.forward` does, from top to bottom:
#
# 1. the token ids (B, T) become token embeddings (B, T, C) through the frozen table `base.wte`;
# 2. the prompt, one (P, C) matrix, is repeated for every row of the batch and put in front:
#    the input is now (B, P + T, C);
# 3. `base.run` adds the position embeddings, numbering the P + T rows from 0, and runs the
#    frozen blocks and the head. So the prompt rows take positions 0 to P-1 and the first real
#    token takes position P;
# 4. the first P rows of logits belong to the prompt, not to any token, and are dropped. The
#    caller gets one row of logits per real token, exactly as from the base alone.
#
# Writing it is **exercise 3.1**, `soft_prompt_logits(base, rows, idx)` in `lessons/exercises/lesson3.py`
# (check it with `pytest -m ex3_1 --learner` from the repository root; once it passes, `solution("3.1")`
# prints the library's code to compare). Here are the shapes for a batch of two inputs of the bare
# reversal task.

# %%
P = 10  # prompt rows, as everywhere in these lessons
soft = SoftPromptGPT(base, P)  # default init: the embeddings of P randomly drawn tokens
idx = torch.tensor([tok.encode("'drawer': "), tok.encode("'stress': ")])  # (B, T), two inputs of equal length

with torch.no_grad():
    tok_emb = base.wte(idx)
    prompt = soft.prompt().expand(idx.size(0), -1, -1)
    x = soft.embedding(tok_emb, prompt)
    logits, _ = soft(idx)
print(f"token ids       idx     {tuple(idx.shape)}   (B, T)")
print(f"token rows      tok_emb {tuple(tok_emb.shape)}   (B, T, C)")
print(f"soft prompt     prompt  {tuple(prompt.shape)}   (B, P, C): the same {P} rows for every input")
print(f"input of blocks x       {tuple(x.shape)}   (B, P + T, C)")
print(f"logits                  {tuple(logits.shape)}  (B, T, V): the prompt's own {P} rows dropped")

# %% [markdown]
# The position convention can be checked against something we already trust. If the soft
# prompt's rows are exactly the embeddings of some real characters, the soft prompt *is* a hard
# prompt, and the logits must equal those of the base reading the characters followed by the
# input. We take the instruction of one of the base's reversal templates,
# `Reverse the word '{x}': `: its text before the input is `Reverse the word `.

# %%
text = "Reverse the word "
ids = tok.encode(text)
as_soft = SoftPromptGPT.from_embeddings(base, base.wte.weight[ids])  # rows = the characters' embeddings
with torch.no_grad():
    soft_logits, _ = as_soft(idx)
    full_logits, _ = base(torch.cat([torch.tensor([ids] * idx.size(0)), idx], dim=1))
diff = (soft_logits - full_logits[:, len(ids):]).abs().max().item()
print(f"prompt of {len(ids)} rows; base on text + input: logits {tuple(full_logits.shape)}, "
      f"soft prompt: {tuple(soft_logits.shape)}")
print(f"largest difference between the soft prompt's logits and the base's last {idx.size(1)} rows: {diff:.1e}")

x_ids = torch.tensor([tok.encode("'drawer': ")])
out = as_soft.generate(x_ids, max_new_tokens=12, top_k=1, stop_id=tok.eos_id)
print(f"greedy answer to 'drawer' with these rows in front: {tok.decode(out[0, x_ids.size(1):].tolist())!r}")

# %% [markdown]
# The largest difference is 0.0e+00, exactly zero: the two computations are the same, and the greedy
# answer is the reversal the instruction asks for. A soft prompt can therefore do at least what any hard prompt of the same length does; training moves
# the rows away from the token table to places no text can reach.

# %% [markdown]
# ## How many numbers
#
# A soft prompt of P rows of width d holds P x d numbers, and nothing else trains. For the P of
# this lesson, on GPT-2 medium (the model Li & Liang 2021 report on) and on the shipped base:

# %%
medium = gpt2_config("gpt2-medium")
for name, config in (("GPT-2 medium", medium), ("shipped base", base.config)):
    row = next(r for r in count_table(config, P) if r["method"] == "soft")
    n_model = next(r for r in count_table(config, P) if r["method"] == "full")["trainable"]
    print(f"{name:13s} P x d = {P} x {config.d_model} = {P * config.d_model:,} numbers "
          f"(count_table: {row['trainable']:,}), {100 * row['trainable_share']:.4f} % of its {n_model:,}")
print(f"counted on the module built above: count_trainable(soft) = {count_trainable(soft):,}")

# %% [markdown]
# The same P rows are a far larger share of the tiny base than of GPT-2 medium. A prompt grows
# with the width d, while a transformer's weights grow with d squared (every block holds several
# d x d matrices), so the wider the model, the smaller the share a prompt of fixed length takes.

# %% [markdown]
# ## A frozen base
#
# `SoftPromptGPT` calls `base.freeze()` when it is built: every base parameter gets
# `requires_grad = False` and the base goes to evaluation mode. The base is registered as a
# submodule, so `soft.parameters()` lists its weights too; what separates them from the prompt
# is the flag.

# %%
print(inspect.getsource(minprefix.GPT.freeze))
trainable = [n for n, p in soft.named_parameters() if p.requires_grad]
frozen = [n for n, p in soft.named_parameters() if not p.requires_grad]
print(f"requires_grad=True : {trainable}, {count_trainable(soft):,} numbers")
print(f"requires_grad=False: {len(frozen)} tensors under 'base.', e.g. {frozen[:3]}, {count_frozen(soft):,} numbers")
print(f"the base's state_dict lists {len(base.state_dict())} tensors: the output head shares its weight "
      "with the token table, listed once as a parameter and twice in the state dict")

# %% [markdown]
# The optimizer is handed only the parameters that require a gradient (`make_optimizer` in
# `minprefix/train.py`), so the frozen weights could not move even if a gradient reached them. Backward
# still runs *through* the frozen blocks: the gradient with respect to the prompt rows has to
# pass every layer above them. Writing that loop by hand is **exercise 3.3** (`train_soft_prompt`;
# `solution("3.3")` prints the library's loop once yours passes).

# %% [markdown]
# ## The optimizer and its schedule
#
# This is the first lesson that trains, so here is what every run in the lessons does with the
# parameters it is handed. `make_optimizer` builds AdamW (Loshchilov & Hutter 2019). Adam keeps, for
# each trainable number, a running mean of its gradient (β₁ = 0.9) and of the gradient's square
# (β₂ = 0.95), and moves the number by the learning rate times mean / √(mean square). The ratio is
# about ±1 when the gradient keeps its sign, so a step moves each number by roughly the learning rate,
# whatever the scale of its gradient: that is why a soft prompt's default learning rate (10) can
# be tens of thousands of times full fine-tuning's (0.0003; the ratio is printed below) and both
# work. The "W" is weight decay applied apart from the gradient step, on matrices only (0 by default here). The global gradient norm is clipped at 1.
#
# The learning rate itself follows a schedule, `LoopConfig.lr_at`: a linear warm-up over the first
# 20 steps, so that the first steps, taken while Adam's running means are still unreliable, are
# small; then a cosine decay to a tenth of the peak at the last step, so the last steps settle
# instead of jumping around a minimum.

# %%
print(inspect.getsource(minprefix.train.LoopConfig.lr_at))  # not an exercise: the learning rate at each step
soft_lr, full_lr = METHODS["soft"].lr, METHODS["full"].lr
opt = minprefix.train.make_optimizer(soft.parameters(), soft_lr, weight_decay=0.0)
n_opt = sum(p.numel() for group in opt.param_groups for p in group["params"])
print(f"make_optimizer(soft.parameters(), ...): {type(opt).__name__} over {n_opt:,} numbers (the rows alone), "
      f"betas {opt.defaults['betas']}")
print(f"default learning rates: soft prompt {soft_lr:g}, full fine-tuning {full_lr:g}: {soft_lr / full_lr:,.0f} times")
cfg = TuneConfig(method="soft", task="bare-reverse")
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.plot([cfg.lr_at(step, cfg.peak_lr) for step in range(cfg.steps)])
ax.set(xlabel="step", ylabel="learning rate", title=f"soft: peak {cfg.peak_lr:g}, {cfg.warmup} warm-up steps, "
       f"cosine to {cfg.min_lr_ratio:g} x peak at step {cfg.steps}")
ax.grid(alpha=0.3)

# %% [markdown]
# The claim to check: after tuning, every tensor of the base is bit for bit what it was. We copy
# the base's state dict, tune a soft prompt for a few steps, and compare each tensor with
# `torch.equal` (exact equality, no tolerance).

# %%
FROZEN_STEPS = 5 if QUICK else 20
before = {k: v.clone() for k, v in base.state_dict().items()}
start_rows = soft.prompt().detach().clone()  # tune builds the same start: default init, seed 0
tuned, _ = tune(base, tok, TuneConfig(method="soft", task="bare-reverse", steps=FROZEN_STEPS), progress=False)
identical = all(torch.equal(before[k], v) for k, v in base.state_dict().items())
moved = (tuned.prompt().detach() - start_rows).abs().max().item()
print(f"after {FROZEN_STEPS} steps: all {len(before)} base tensors bit-identical: {identical}")
print(f"largest change of a prompt number: {moved:.3f}")

# %% [markdown]
# `tune` makes the same comparison itself at the end of every run and raises an error if a base
# weight changed. That is the promise that makes the rest of this lesson possible: one frozen
# base, many small prompts.

# %% [markdown]
# ## Initializations
#
# Where the rows start matters more for a soft prompt than for ordinary weights, because only
# P x d numbers train and the frozen model was never trained to read arbitrary vectors.
# `minprefix` offers, for a soft prompt:
#
# - `random`: normal noise at the scale of the token embeddings;
# - `vocab`: the embeddings of P randomly drawn tokens (Lester et al.'s sampled-vocabulary init,
#   the default);
# - `text`: the embeddings of a real text's tokens, repeated or cut to P. Lester et al. started
#   from the words of the class labels; the tiny world has no labels, and the nearest equivalent is
#   an instruction.
#
# Lester et al. (2021) found that starting from real tokens (class labels, or sampled vocabulary)
# beats random initialization, and that the gap is large for small models and closes for the
# largest ones. Our base is very small, so we can expect the start to matter. To make the
# difference visible, the setting is low-data: few training examples, few steps, and a dev
# evaluation every few steps.

# %%
INIT_STEPS = 10 if QUICK else 40
N_TRAIN = 64
INIT_TEXT = "Reverse the word "
print(f"the text init keeps the first {P} characters of {INIT_TEXT!r}: {INIT_TEXT[:P]!r}")

inits = {}
for init in ("random", "vocab", "text"):
    cfg = TuneConfig(method="soft", task="bare-reverse", init=init, init_text=INIT_TEXT if init == "text" else None,
                     steps=INIT_STEPS, n_train=N_TRAIN, eval_every=5)
    inits[init] = tune(base, tok, cfg, progress=False)  # (model with the best dev weights, history)

n_dev = len(examples("bare-reverse", "dev", cfg.n_dev))  # the same dev set for all three
print(f"soft prompt, P = {P}, bare-reverse, {N_TRAIN} training examples, {INIT_STEPS} steps, {n_dev} dev examples:")
for init, (_, history) in inits.items():
    ems = [percent(h["dev_exact_match"], n_dev) for h in history]
    print(f"  {init:6s}  dev exact match at step 0: {ems[0]:>7}, step {history[1]['step']}: {ems[1]:>7}, "
          f"step {history[-1]['step']}: {ems[-1]:>7}")

# %%
curves = {f"bare-reverse, soft prompt, P = {P}": {init: history for init, (_, history) in inits.items()}}
fig = minprefix.lab.figures.plot_curves(curves, None, INIT_STEPS, {i: f"init {i}" for i in inits},
                                        title=f"{N_TRAIN} training examples")

# %%
first = {init: h[1]["dev_exact_match"] for init, (_, h) in inits.items()}
last = {init: h[-1]["dev_exact_match"] for init, (_, h) in inits.items()}
step1, step_last = inits["random"][1][1]["step"], inits["random"][1][-1]["step"]
for step, scores in ((step1, first), (step_last, last)):
    print(f"after {step:2d} steps: " + ", ".join(f"{init} {100 * s:.1f} %" for init, s in scores.items())
          + f"; spread {100 * (max(scores.values()) - min(scores.values())):.1f} points")


# %% [markdown]
# At the soft prompt's default learning rate
# (10, the best of `minprefix sweep` on a composed task over 800 steps), only the vocabulary start
# has left 0 % after 5 steps, and after 40 it leads (81.5 %), the text start next (59.0 %), the
# random start far behind (26.5 %). A learning rate this large moves each number by up to about 10
# per step (Adam's step is about the learning rate per coordinate), a row tens of times the spacing
# of the token table (the distances below), so every start is left far behind within a few steps,
# and where a run goes can still depend on where it began: the three ends are 55 points apart. The
# rate was chosen for 800 steps on 320 examples, not for 40 steps on 64, which is another reason
# not to read these curves as the methods' best. This is a single seed on
# a single task, so it is an illustration, not a measurement; Lester et al.'s result rests on many
# runs over several model sizes, and lesson 5 measures initialization over seeds for a prefix.
#
# Note also what the `text` curve shows at step 0: `Reverse th` alone is not the instruction the
# base knows, so the start is not a working hard prompt, only a point near real characters.

# %% [markdown]
# ## What a trained soft prompt says
#
# A soft prompt lives in the same space as the token embeddings, so one can ask which tokens each
# row is closest to. Lester et al. (2021) did this with cosine similarity and found that the nearest
# neighbours of trained prompt tokens often formed meaningful groups, and that rows started from
# class labels tended to keep them as their nearest neighbour. Here, for the prompt started from
# text, each row's three nearest characters in the token table `base.wte.weight` (which is also the
# output head), beside the character the row started from:

# %%
W = base.wte.weight.detach()  # (V, d): the token table
text_model = inits["text"][0]
rows = text_model.prompt().detach()  # (P, d)
cosine = F.normalize(rows, dim=-1) @ F.normalize(W, dim=-1).T  # (P, V)
top = cosine.topk(3, dim=-1)
print("row  started as  nearest characters now (cosine similarity)")
for i in range(P):
    near = ", ".join(f"{tok.itos[j]!r} {s:.2f}" for s, j in zip(top.values[i].tolist(), top.indices[i].tolist()))
    print(f"{i:3d}  {INIT_TEXT[i]!r:>10}  {near}")
kept = sum(tok.itos[top.indices[i, 0]] == INIT_TEXT[i] for i in range(P))
print(f"rows whose nearest character is still the one they started as: {kept} of {P}")


# %% [markdown]
# Not one row (0 of 10) still has the character it started as for its nearest: every row has turned
# towards other characters, and the cosine similarities themselves are modest.
# Cosine similarity also ignores length. Distances tell how far the rows have actually travelled:
# below, each row's distance to its nearest token, against the distance from a token to its
# nearest other token (how tightly the table itself is packed), and the typical norms.

# %%
def nearest_distance(vectors, table, exclude_self=False):
    d = torch.cdist(vectors, table)
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return d.min(dim=-1).values

for init, (model, _) in inits.items():
    r = model.prompt().detach()
    print(f"init {init:6s}: median distance of a row to its nearest token {nearest_distance(r, W).median():.2f}, "
          f"median row norm {r.norm(dim=-1).median():.2f}")
spacing = nearest_distance(W, W, exclude_self=True).median()
print(f"token table : median distance of a token to its nearest other token {spacing:.2f}, "
      f"median token norm {W.norm(dim=-1).median():.2f}")
ratio = nearest_distance(rows, W).median() / spacing
print(f"the text-init rows are, at the median, {ratio:.1f} times as far from their nearest token "
      f"as tokens are from each other")

# %% [markdown]
# Compare the rows' distances with the table's own spacing, and their norms with the tokens'
# norms. The trained rows have grown a couple of hundred times longer than a typical token embedding and sit far
# outside the cloud of tokens, far from the nearest character (the text-init rows, at the median, 230.6
# times as far as tokens are from each other). "The nearest character" of a row is therefore a loose
# description: the row is not that character, nor close to any character. What
# the model reads is the whole vector, position embedding added, through frozen blocks that were
# never shown such inputs. The nearest-token reading is a hint about direction, not a translation of
# the prompt into text; a prompt that works is not, in general, a sentence.

# %% [markdown]
# Distances are easier to believe with a picture. Below, the plane in which the token table spreads
# most (its top two principal directions), with every character's embedding in grey and the rows of
# the three trained prompts as stars, numbered by position. Left, the rows as they are; right, each
# row scaled to a typical token's length, so that only its direction is left (what the cosine
# similarity above compares). Two dimensions out of 128 keep only a sliver of each row: read the
# picture for the overall shape, not for any single row.

# %%
chars = [i for i, s in enumerate(tok.itos) if len(s) == 1]  # the characters (the special tokens left out)
fig = minprefix.lab.figures.plot_rows_among_tokens(W[chars], {f"init {i}": m.prompt() for i, (m, _) in inits.items()},
                                                   [tok.itos[i] for i in chars])

# %% [markdown]
# On the left, the whole token table is the small grey blob in the middle, and the rows of all
# three prompts lie far outside it, each in its own direction: no row is anywhere near a character.
# On the right, with their lengths taken away, the rows of all three prompts point the same way:
# into the corner of the plane where the lowercase letters are (the capitals are the grey group at
# the top; the far-left group is punctuation and digits, which pretraining hardly used), the
# alphabet of `bare-reverse`'s inputs and answers. That is the sense in which the nearest character
# is a hint about direction: a trained prompt leans towards the tokens of its task, far beyond them.

# %% [markdown]
# ## Many tasks, one batch
#
# Because the base never changes, a tuned soft prompt is just a (P, d) tensor per task, and one
# batch can mix tasks: stack each row's own prompt along the batch, giving a (B, P, d) tensor, and
# run the batch once. `SoftPromptGPT.forward` already accepts such a per-row `prompt`; `PromptBank`
# picks the rows by task name. Lester et al. (2021) point out this serving advantage: with
# fine-tuning, each task would need its own copy of the model.
#
# Picking each row's prompt and running the batch once is **exercise 3.2**, `mixed_batch_logits(base,
# prompts, idx, tasks)` (`pytest -m ex3_2 --learner`; then `solution("3.2")`).
#
# We reuse the bare-reverse prompt trained from vocabulary init above and tune two more prompts,
# for the bare uppercase and bare sort tasks (the input alone, no instruction; the base knows both
# skills from its pretraining templates, but nothing in the bare input says which one is wanted).

# %%
BANK_STEPS = 15 if QUICK else 80
members = {"bare-reverse": inits["vocab"][0]}
for task in ("bare-uppercase", "bare-sort"):
    members[task] = tune(base, tok, TuneConfig(method="soft", task=task, steps=BANK_STEPS), progress=False)[0]
bank = PromptBank(members)

mixed = [ex for task in members for ex in examples(task, "test", 100)]
random.Random(0).shuffle(mixed)  # tasks interleaved row by row
tasks = [ex.task for ex in mixed]
result = score(bank, tok, mixed, tasks=tasks)
print(f"{len(mixed)} test examples of {len(members)} tasks, shuffled into one batch, each row with its own prompt: "
      f"{percent(result['exact_match'], result['n'])} exact match")
for task in members:
    alone = [ex for ex in mixed if ex.task == task]
    r = score(bank, tok, alone, tasks=[task] * len(alone))
    print(f"  {task:15s} {percent(r['exact_match'], r['n']):>8} on its {r['n']} examples")
wrong = score(bank, tok, mixed, tasks=["bare-reverse"] * len(mixed))
print(f"the same batch with every row wearing the bare-reverse prompt: {percent(wrong['exact_match'], wrong['n'])}")

# %%
for task in members:
    ex = next(ex for ex in mixed if ex.task == task)
    ids = torch.tensor([tok.encode(ex.prompt)])
    out = bank.generate(ids, max_new_tokens=12, top_k=1, stop_id=tok.eos_id, tasks=[task])
    print(f"{task:15s} {ex.prompt!r:14} -> {tok.decode(out[0, ids.size(1):].tolist())!r:10} (expected {ex.answer!r})")

# %% [markdown]
# The same input gets a different answer depending only on which rows are put in front of it,
# and the wrong prompt ruins the tasks it was not trained for. Each row of the batch really does
# wear its own prompt, and the cost of serving another task is one more (P, d) tensor.

# %% [markdown]
# ## Longer strings than any it saw
#
# Every string these prompts trained on, and every string pretraining showed, has 4 to 7 letters.
# The world holds back a `long` split of 8 to 10 letters (`examples(task, "long", n)`) for asking how
# far a learned skill carries past the lengths it was learned on. The same three prompts, scored by
# input length on the test split and on the long one:

# %%
def by_length(model, exs, task=None):
    """Exact match on `exs`, grouped by input length; `task` picks a bank's prompt for every row."""
    groups = {}
    for ex in exs:
        groups.setdefault(len(ex.x), []).append(ex)
    kw = lambda g: {"tasks": [task] * len(g)} if task else {}  # noqa: E731
    return {n: score(model, tok, g, **kw(g))["exact_match"] for n, g in sorted(groups.items())}


def row(label, scores):  # one column per length, 4 to 10 letters; blank where nothing was scored
    cells = (f"{n}: {100 * scores[n]:5.1f} %" if n in scores else " " * 10 for n in range(4, 11))
    return f"{label:43s}" + "  ".join(cells)


print("exact match by number of letters: 200 test strings of 4 to 7 letters, 200 long ones of 8 to 10")
for task in members:
    skill = task.removeprefix("bare-")  # the pretraining task behind it, asked with its own templates
    short_and_long = examples(task, "test", 200) + examples(task, "long", 200)
    print(row(f"{task}, soft prompt:", by_length(bank, short_and_long, task)))
    print(row(f"{skill}, the base with its own templates:", by_length(base, examples(skill, "long", 200))))

# %% [markdown]
# Within the lengths it was tuned on, each prompt does its job (65.3 % to 100.0 %; these are short
# runs of 40 and 80 steps, so not at their best). Past them the scores fall away fast: at 8 letters
# 12.2 %, 58.2 % and 52.9 %, at 10 letters 8.3 % at most. The base asked with its own pretraining
# templates falls the same way on the long strings (11.3 %, 34.8 % and 44.6 % at 8 letters, 0.0 % at
# 10), and the soft prompts do no worse than those templates. Pretraining showed 4 to 7 letters too,
# so "the prompt learned the lengths it saw" is true here of the whole system, base and prompt
# together: this measurement cannot say which of the two stops at 7 letters. Telling them apart would
# take a base pretrained on longer strings and a prompt tuned on short ones.

# %% [markdown]
# ## A prompt made by a network
#
# P-tuning (Liu et al. 2021) does not train the prompt rows directly: a small *prompt encoder*
# produces them, and its weights are what the optimizer updates. Li & Liang (2021) did the same for
# prefixes with an MLP of their own, because optimizing the rows directly was unstable for them
# (lesson 5 takes their MLP apart). The encoder of the P-tuning paper is an LSTM followed by a small
# ReLU MLP; PEFT (Hugging Face's library of these methods) also builds it as the MLP alone, and that
# variant is what the method `soft-mlp` uses, `PTuningEncoder`: a trainable (P, d) table E with one row
# per prompt position (as wide as the rows it makes: there is no narrower input width here), then
# Linear(d, h), ReLU, Linear(h, h), ReLU and Linear(h, d), row by row, with h the hidden width.
# (In `minprefix` a method whose rows a network makes while training is named after the direct method
# plus `-mlp`: `soft-mlp` here, `prefix-mlp` in lessons 4 and 5.)

# %%
print(inspect.getsource(PTuningEncoder))

# %% [markdown]
# After training, only the output matters: `merge()` computes the P rows once and keeps them, so
# what is stored is a plain soft prompt: the encoder is thrown away. We train `soft-mlp` in the
# same low-data setting as the initialization runs (same task, examples and steps, at its own
# default learning rate) and compare the counts, and the curve beside plain `soft`.

# %%
cfg_mlp = TuneConfig(method="soft-mlp", task="bare-reverse", steps=INIT_STEPS, n_train=N_TRAIN, eval_every=5)
mlp_model, mlp_history = tune(base, tok, cfg_mlp, progress=False)
d, h = base.config.d_model, MLP_HIDDEN
parts = {f"E {P}x{d}": P * d, f"Linear({d}, {h})": d * h + h, f"Linear({h}, {h})": h * h + h,
         f"Linear({h}, {d})": h * d + d}  # weights and biases of each layer
formula = sum(parts.values())  # P*d + d*h + h + h*h + h + h*d + d
print(f"soft-mlp: rows made by {type(mlp_model.row_maker).__name__}; it trains {count_trainable(mlp_model):,} numbers:")
print("  " + ", ".join(f"{name} {n:,}" for name, n in parts.items()) + f"; sum {formula:,} "
      f"(params.ptuning_params: {ptuning_params(P, d, h):,}; count_table: "
      f"{next(r for r in count_table(base.config, P) if r['method'] == 'soft-mlp')['trainable']:,})")
print(f"soft-mlp stores {count_stored(mlp_model):,} numbers (P x d = {P} x {d}); plain soft trains and stores "
      f"{count_trainable(inits['random'][0]):,}")
merged = mlp_model.merge()
with torch.no_grad():
    gap = (merged(idx)[0] - mlp_model(idx)[0]).abs().max().item()
print(f"merge(): a {type(merged).__name__} with {count_trainable(merged):,} trainable numbers; "
      f"largest logit difference {gap:.1e}")
print(f"default peak learning rates: soft {METHODS['soft'].lr:g}, soft-mlp {METHODS['soft-mlp'].lr:g}")
for name, history in (("soft, random init", inits["random"][1]), ("soft, vocab init", inits["vocab"][1]),
                      ("soft-mlp", mlp_history)):
    print(f"  {name:18s} dev exact match at step {history[1]['step']}: {percent(history[1]['dev_exact_match'], n_dev):>7}, "
          f"step {history[-1]['step']}: {percent(history[-1]['dev_exact_match'], n_dev):>7}")

# %%
curves = {f"bare-reverse, P = {P}": {"soft random": inits["random"][1], "soft vocab": inits["vocab"][1],
                                   "soft-mlp": mlp_history}}
fig = minprefix.lab.figures.plot_curves(curves, None, INIT_STEPS, {"soft random": "soft (init random)",
                                        "soft vocab": "soft (init vocab)", "soft-mlp": "soft-mlp (P-tuning's encoder)"},
                                        title=f"{N_TRAIN} training examples, one seed")

# %% [markdown]
# While it trains, the encoder is far bigger than the prompt it makes (395,648 trainable numbers
# against the 1,280 it stores), yet what is kept is only the rows. In this one run `soft-mlp` ends above plain `soft`
# started at random or from the vocabulary (at step 40: 92.5 % against 26.5 %
# and 81.5 %), after a start about as quick as the vocabulary's (13.5 % at step 5 against 17.0 %),
# in a setting (64 examples, 40 steps) far
# from the one its default learning rate was chosen in; one seed on 200 dev examples is an
# illustration, not a ranking. A network earns its keep where direct
# training of the rows is unstable, which lesson 5 measures for prefixes, with Li & Liang's MLP. Note that the two methods also run at
# different learning rates, each at its default: a comparison of methods is always also a
# comparison of their settings.

# %%
print(f"this notebook ran for {time.time() - t_start:.0f} s ({'quick' if QUICK else 'full'} mode)")

# %% [markdown]
# ## Recap
#
# - A soft prompt is P free rows in front of the token embeddings: P x d numbers train, and the base
#   stays bit for bit as it was.
# - Rows equal to real tokens' embeddings give exactly the hard prompt's logits: a soft prompt can do
#   at least what any hard prompt of its length does.
# - At the default learning rate every start is left far behind within a few steps, and where a run
#   ends can still depend on the start.
# - Trained rows sit far outside the cloud of tokens: their nearest token is a hint, not a reading.
# - One batch can serve many tasks, each row with its own prompt; a network (P-tuning's encoder) can
#   make the rows while training and is merged away after.
#
# ## Try it yourself
#
# 1. Rerun the initialization runs at a learning rate of 0.1 (`lr=0.1` in their `TuneConfig`): does
#    the order of the three starts hold, and do the rows stay closer to the token table?
# 2. How few rows does `bare-reverse` need? Try P = 1 and P = 3.
# 3. In the bank, give the `bare-sort` prompt to `bare-reverse` inputs: what comes out?
#
# Next, lesson 4 puts trainable rows at every layer: prefix tuning.
#

# %% [markdown]
# ## Exercises
#
# The exercises are functions to fill in, in `lessons/exercises/lesson3.py`. Each docstring says
# what to compute and which section above to reread.

# %%
exercises(3)  # lists them from that file (it only reads the file; it runs nothing in it)

# %% [markdown]
# | exercise | function in `lessons/exercises/lesson3.py` | reread |
# | --- | --- | --- |
# | 3.1 | `soft_prompt_logits(base, rows, idx)`: the logits of the real tokens with a soft prompt in front | "The input layer" |
# | 3.2 | `mixed_batch_logits(base, prompts, idx, tasks)`: one forward pass, each row with its task's prompt | "Many tasks, one batch" |
# | 3.3 | `train_soft_prompt(model, batches, lr)`: the training loop by hand, one AdamW step per batch, checked against the library's loop | "A frozen base", "The optimizer and its schedule" |
#
# To check your work, run from the repository root (not from this notebook: until you fill them
# in, the functions raise `NotImplementedError`):
#
# ```bash
# pytest -m ex3_1 --learner                      # one exercise (ex3_2, ex3_3 likewise)
# pytest -m "ex3_1 or ex3_2 or ex3_3" --learner  # this lesson's three
# pytest tests/test_exercises.py --learner       # all of them
# ```
#
# The last command ends with a line `exercises done: k/N`, where N is the number of exercises in
# all the lessons, printed above. Without `--learner`, the same checks run against the library's
# own solutions.
