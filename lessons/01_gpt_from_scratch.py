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
# # Lesson 1: a GPT from scratch
#
# Every method in this course (hard prompts, soft prompts, prefix tuning) leaves one model untouched
# and changes only what goes *into* it. So before tuning prompts we read that model: a small GPT,
# written in the style of GPT-2 (Radford et al. 2019), pretrained on a generated "tiny world" of
# instructions and shipped inside `minprefix`.
#
# **You will learn** what the model is trained on and how text becomes token ids; what one
# transformer block computes; why the attention mask must be aligned bottom-right once keys come
# before the current tokens (a KV cache now, a prefix in lesson 4); where the model's parameters sit;
# and how text is generated from it, greedily, by sampling, and with a KV cache.
#
# **You will be able to** push a batch through a block and predict every shape, write the attention
# mask for any number of earlier keys, count the parameters of a GPT from its configuration, and
# decode from the model (the two exercises at the end ask for the mask and the count).
#
# **Running time:** about 10 seconds on 2 CPU cores (6 s in the committed run); the last code cell
# prints how long this run took. Nothing is trained in this lesson.

# %% [markdown]
# ## Setup
#
# The first cell checks what a newcomer most often lacks: a recent Python, torch, and the package
# with its shipped weights. If something is missing it says what to install instead of showing a
# traceback. `QUICK` is set by the test suite (`MINPREFIX_QUICK=1`) to shorten the run; here it only
# lowers the number of timing repeats.

# %%
import sys
import time

T0 = time.perf_counter()
FIX = "from the repository root, run: pip install torch==2.13.0 && pip install -e ."

if sys.version_info < (3, 10):
    raise SystemExit(f"Python {sys.version.split()[0]} is too old: minprefix needs Python >= 3.10. "
                     f"Make a virtual environment with a newer Python, then {FIX}")
try:
    import torch
    import minprefix  # noqa: F401 (is it installed?)
except ImportError as e:
    raise SystemExit(f"cannot import {e.name!r}: {FIX}") from None
if tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) < (2, 2):
    raise SystemExit(f"torch {torch.__version__} is too old: minprefix needs torch >= 2.2 "
                     f"(these lessons were run with 2.13.0); {FIX}")
from minprefix.lab.lesson import setup, solution  # noqa: F401 (solution("1.1"): the library's answer, after yours)

try:  # one thread, seed 0, the shipped base (frozen, in eval mode) and its tokenizer; QUICK: CI's short run
    base, tok, QUICK = setup()
except (FileNotFoundError, ValueError) as e:
    raise SystemExit(f"the shipped base does not load ({e}); reinstall the package: {FIX}") from None
print(f"base config: {base.config}")

# %% [markdown]
# ## The tiny world
#
# No data set can be downloaded here, so `minprefix.world` generates one, the same on every machine.
# Each example is an instruction *prompt* followed by its *answer*; the model sees
# `prompt + answer + <eos>` and learns to continue the text. Five skills are pretrained: translating an
# English word into German (from a small lexicon), reversing a string, upper-casing it, sorting its
# letters and removing its vowels. Each skill is asked in several phrasings, its *templates*; the
# random strings of the other skills are drawn in a split of their own, so dev and test strings are
# never seen in training.
#
# `examples(task, split, n)` returns a fixed list of examples. Here are a few from the training split
# of three pretraining tasks:

# %%
from minprefix.world import LEXICON, PRETRAIN_TASKS, TEMPLATES, examples

print("pretraining tasks:", ", ".join(f"{t} ({len(TEMPLATES[t])} templates)" for t in PRETRAIN_TASKS))
print(f"lexicon: {len(LEXICON)} English-German pairs")
for task in ("translate", "reverse", "sort"):
    for ex in examples(task, "train", 2):
        print(f"{task:10s} {ex.prompt!r:58s} -> {ex.answer!r}")

# %% [markdown]
# The prompt-tuning tasks of later lessons are the *bare* variants: the input alone, quoted as the
# templates quote it, with no instruction. From `'stop': ` alone the model cannot know whether to
# reverse, sort or translate, so the base does badly; a tuned prompt has to supply the missing
# instruction. These formats never occur in pretraining.

# %%
for task in ("bare-translate", "bare-reverse", "bare-sort"):
    for ex in examples(task, "train", 2):
        print(f"{task:15s} {ex.prompt!r:14s} -> {ex.answer!r}")

# %% [markdown]
# The tokenizer is as simple as a tokenizer gets: one token per character. The first ids are the
# special tokens `<pad>` and `<eos>` (end of sequence); every other id is one printable ASCII character
# or one of the German letters ÄÖÜäöüß. Real models use sub-word tokenizers with far larger
# vocabularies (GPT-2's splits text into pieces of words), but nothing in prompt tuning depends on that
# choice: the methods only ever see token ids.

# %%
text = "Spell 'kram' backwards: mark"
ids = tok.encode(text)
print("ids:", ids)
print("decoded:", repr(tok.decode(ids)))
print(f"vocabulary: {tok.vocab_size} tokens, the first two special: {tok.itos[:2]}")
print("decode stops at <eos>:", repr(tok.decode(ids + [tok.eos_id] + tok.encode("ignored"))))

# %% [markdown]
# ## The regular block
#
# A GPT is a stack of identical blocks between an embedding layer and an output layer. Each block
# reads a sequence of vectors, one per position (the *residual stream*, width `d_model`), and adds two
# things to it: first what attention gathers from earlier positions, then what a small per-position
# MLP computes. Each branch reads a LayerNorm of the stream ("pre-LayerNorm", as in GPT-2) and its
# output is *added* back, so a block writes to the stream only by adding to it: what it adds can be large, but what the
# earlier layers wrote stays in the sum unless a later block adds its opposite. Here is the
# library's block, as it is:

# %%
import inspect

from minprefix.model import Block

print(inspect.getsource(Block))

# %% [markdown]
# Note the second return value: attention hands back the keys and values it used. They are what a KV
# cache stores during generation, and what a prefix replaces in prefix tuning.
#
# Let us push a batch through the first block of the base. `answer_batch` turns examples into a
# right-padded tensor of ids; the token table and the position table turn ids into vectors; the block
# keeps the shape of its input. Attention splits the width into `n_head` heads, so each head's keys
# and values have `d_model / n_head` numbers per position.

# %%
from minprefix.world import answer_batch

idx, _ = answer_batch(tok, examples("reverse", "dev", 4))
x = base.embed(base.wte(idx))  # token vectors plus position vectors
y, (k, v) = base.blocks[0](x)
c = base.config
print(f"ids              {tuple(idx.shape)}  (batch B, time T)")
print(f"block input      {tuple(x.shape)}  (B, T, d_model={c.d_model})")
print(f"block output     {tuple(y.shape)}  (same shape: the block adds to its input)")
print(f"keys, values     {tuple(k.shape)}, {tuple(v.shape)}  (B, n_head={c.n_head}, T, head_dim={c.head_dim})")

# %% [markdown]
# ## The attention mask
#
# In a language model a position may only look at itself and at earlier positions; otherwise it
# could read the token it is asked to predict. The mask that enforces this is a lower triangle:
# query `i` sees keys `0 .. i`.
#
# That is only right when queries and keys are the same positions. During generation with a KV cache
# the model feeds one new token (one query) but attends to all keys computed so far; in prefix tuning
# (Li & Liang 2021; lesson 4) every block also receives `P` key/value rows that come *before* the first real token. In
# both cases there are more keys than queries, the extra keys come first, and every query must see
# all of them. The queries are the *last* positions, so the triangle belongs in the bottom-right
# corner: query `i` sees keys `0 .. n_key - n_query + i`.
#
# `minprefix.model.attention_mask(n_query, n_key)` builds it (`True` where a query may look):

# %%
from minprefix.model import attention_mask

print("3 queries, 3 keys (the plain causal triangle):")
print(attention_mask(3, 3).int())
print("3 queries, 5 keys (2 earlier keys, visible to every query):")
print(attention_mask(3, 5).int())

# %% [markdown]
# The same rule as pictures (`minprefix.lab.figures.plot_attention_masks`, also `figures/masks.png`):
# the plain triangle; P prefix keys in front, which every token sees; and the one query of a new
# token over a cache, which sees everything before it.

# %%
# %matplotlib inline
from minprefix.lab.figures import plot_attention_masks

plot_attention_masks(T=6, P=3, cached=8);

# %% [markdown]
# PyTorch's fused attention, `F.scaled_dot_product_attention`, has a shortcut, `is_causal=True`. With
# as many queries as keys it is exactly the triangle above, and the block uses it in that case. With
# fewer queries than keys it aligns the triangle **top-left** instead: query 0 then sees only key 0,
# which is the first *earlier* key, not its own token. Let us check numerically, against attention
# written out by hand: scores `q k^T / sqrt(head_dim)`, `-inf` where the mask says no, a softmax, and
# the weighted sum of the values.

# %%
import math

import torch.nn.functional as F

g = torch.Generator().manual_seed(0)
q = torch.randn(1, 1, 3, 8, generator=g)  # (B, heads, 3 queries, head_dim)
k = torch.randn(1, 1, 5, 8, generator=g)  # 5 keys: 2 earlier ones, then the queries' own 3
v = torch.randn(1, 1, 5, 8, generator=g)

scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (1, 1, 3, 5)
right = torch.softmax(scores.masked_fill(~attention_mask(3, 5), float("-inf")), dim=-1) @ v
top_left = torch.ones(3, 5, dtype=torch.bool).tril()
wrong = torch.softmax(scores.masked_fill(~top_left, float("-inf")), dim=-1) @ v

with_mask = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(3, 5))
is_causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
print(f"SDPA with attention_mask(3, 5) vs by hand, right mask:  max |diff| = {(with_mask - right).abs().max():.1e}")
print(f"SDPA with is_causal=True       vs by hand, right mask:  max |diff| = {(is_causal - right).abs().max():.3f}")
print(f"SDPA with is_causal=True       vs by hand, top-left:    max |diff| = {(is_causal - wrong).abs().max():.1e}")
print("top-left mask that is_causal uses here:")
print(top_left.int())

# %% [markdown]
# The first line agrees to rounding error, the second does not: `is_causal=True` silently computes
# something else when keys outnumber queries, and the third line shows what it computes. That is why
# the block switches to an explicit mask whenever earlier keys are present. Exercise 1.1 asks you to
# write this mask yourself.

# %% [markdown]
# ## Counting the parameters
#
# Where do the base's parameters sit? The token table has one row of `d_model` numbers per token, the
# position table one row per position of the context. Every block holds two LayerNorms (a scale and a
# shift each), the query/key/value projection, the attention's output projection and the MLP, which
# widens the stream (`mlp.c_fc` below) and narrows it back. A final LayerNorm comes before the output layer.

# %%
from minprefix.params import base_params

c = base.config
print("one block:")
for name, p in base.blocks[0].named_parameters():
    print(f"  {name:20s} {str(tuple(p.shape)):12s} {p.numel():>9,}")
per_block = sum(p.numel() for p in base.blocks[0].parameters())
pieces = {
    "token table": base.wte.weight.numel(),
    "position table": base.wpe.weight.numel(),
    f"{c.n_layer} blocks": c.n_layer * per_block,
    "final LayerNorm": sum(p.numel() for p in base.ln_f.parameters()),
}
print()
for name, n in pieces.items():
    print(f"{name:16s} {n:>9,}  ({100 * n / base.num_params():4.1f} %)")
total = sum(pieces.values())
print(f"{'sum':16s} {total:>9,}")
print(f"base.num_params()                {base.num_params():>9,}")
print(f"base_params(base.config)         {base_params(c):>9,}  (the closed form)")

# %% [markdown]
# The three totals agree, and there is no line for the output layer. That is because the output layer
# is *tied* to the token table, as in GPT-2: the same matrix turns a token into a vector at the input
# and scores every token against the final vector at the output. `model.parameters()` yields a shared
# tensor once; the state dict lists it under both names, so summing the state dict counts it twice.

# %%
print("lm_head.weight is wte.weight:", base.lm_head.weight is base.wte.weight)
in_state_dict = sum(t.numel() for t in base.state_dict().values())
print(f"state dict: {in_state_dict:,} numbers, {in_state_dict - base.num_params():,} more than the parameters "
      f"(= vocab_size x d_model = {c.vocab_size} x {c.d_model} = {c.vocab_size * c.d_model:,}, the head counted again)")

# %% [markdown]
# Exercise 1.2 asks for the count as a formula of the configuration alone, including a model built
# with `bias=False` (no biases in the linear layers and no shifts in the LayerNorms).
#
# ## Sampling
#
# The model gives, at every position, a score (logit) for each possible next token. To generate, we
# append one token at a time: *greedy* decoding takes the highest-scoring token (`top_k=1`),
# *sampling* draws from the softmax of the logits. `stop_id=tok.eos_id` stops once the model writes
# `<eos>`. We compare each greedy answer with the true one from `minprefix.world.solve`.

# %%
from minprefix.world import solve


def complete(prompt, n=20, **kw):
    ids = torch.tensor([tok.encode(prompt)])
    out = base.generate(ids, n, stop_id=tok.eos_id, **kw)
    return tok.decode(out[0, ids.size(1):].tolist())


for prompt, skill, x in [("Spell 'stressed' backwards: ", "reverse", "stressed"),
                         ("Spell 'drawer' backwards: ", "reverse", "drawer"),
                         ("English: 'house' | German: ", "translate", "house"),
                         ("English: 'bread' | German: ", "translate", "bread")]:
    got, want = complete(prompt, top_k=1), solve(skill, x)
    print(f"{prompt!r:32s} -> {got!r:12s} ({'right' if got == want else 'wrong, the answer is ' + repr(want)})")
lengths = [len(ex.x) for ex in examples("reverse", "train", 1000)]
print(f"pretraining strings have {min(lengths)} to {max(lengths)} letters; 'stressed' has {len('stressed')}")

# %% [markdown]
# A word longer than every pretraining string is outside what the base has practised: it may fail on
# it while it reverses a shorter one. The lexicon words were all seen in pretraining, so translating
# them is knowledge the base has.
#
# Sampling divides the logits by a *temperature* before the softmax. Below 1 the distribution
# sharpens towards the greedy choice; above 1 it flattens and less likely tokens get drawn. Here is
# the distribution of the first answer character at two temperatures, then a few sampled answers at
# each.

# %%
prompt = "The German word for 'tree' is "
logits, _ = base(torch.tensor([tok.encode(prompt)]))
for temperature in (0.5, 2.0):
    probs = torch.softmax(logits[0, -1] / temperature, dim=-1)
    top = probs.topk(3)
    shown = ", ".join(f"{tok.itos[i]!r} {p:.3f}" for p, i in zip(top.values.tolist(), top.indices.tolist()))
    torch.manual_seed(0)
    samples = [complete(prompt, temperature=temperature) for _ in range(4)]
    print(f"temperature {temperature}: first character {shown}")
    print(f"  samples: {samples}")

# %% [markdown]
# **The KV cache.** Generating token by token with full forward passes recomputes every earlier
# position at every step: the work grows with the square of the length. But a position's keys and
# values never change once computed (the model is causal), so `generate` keeps them in a cache and
# feeds only the newest token, whose one query attends to all cached keys: exactly the
# more-keys-than-queries case of the bottom-right mask. Both ways must give the same tokens.

# %%
prompt = torch.tensor([tok.encode("Write 'minprefix' in capital letters: ")])
N_NEW = 60
REPEATS = 1 if QUICK else 3


def full_forward_loop(ids, n):
    for _ in range(n):
        logits, _ = base(ids)  # the whole sequence again, every step
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids


def best_time(fn):
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, min(times)


cached, t_cached = best_time(lambda: base.generate(prompt, N_NEW, top_k=1))
looped, t_loop = best_time(lambda: full_forward_loop(prompt, N_NEW))
print("same tokens:", torch.equal(cached, looped))
print(f"greedy answer: {tok.decode(cached[0, prompt.size(1):].tolist())!r} (the right one: {solve('uppercase', 'minprefix')!r})")
T = prompt.size(1)
positions_loop = sum(T + i for i in range(N_NEW))
print(f"{N_NEW} new tokens after a {T}-token prompt: the loop runs {positions_loop:,} positions through the model, "
      f"the cache {T + N_NEW - 1:,}")
print(f"time: loop {1000 * t_loop:.0f} ms, cached {1000 * t_cached:.0f} ms, ratio {t_loop / t_cached:.1f}x")

# %% [markdown]
# The ratio of times is smaller than the ratio of positions: for a model this small, much of each step
# is fixed overhead (Python, launching many tiny operations) that does not depend on how many positions
# go through. The gap widens with longer sequences and bigger models. The greedy answer itself is worth
# a look against the word asked for: it is longer than the strings the base practised on.
#
# ## A bridge to real models
#
# Nothing in this GPT is specific to the tiny world: it has the layout of GPT-2, so real GPT-2 weights
# can be loaded into it. `GPT.from_hf` copies the weights of a Hugging Face `GPT2LMHeadModel` (GPT-2
# stores its linear layers transposed, as `Conv1D`, so those are transposed on the way). No model hub
# is reachable here, so we build a tiny *random* GPT-2 in code and check that both give the same
# logits. `transformers` is an optional extra; without it the cell says so.

# %%
import warnings

warnings.filterwarnings("ignore", message="IProgress not found")  # transformers' tqdm.auto, without ipywidgets
try:
    from transformers import GPT2Config, GPT2LMHeadModel
except ImportError:
    print("this cell needs the transformers package: pip install transformers")
else:
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=64,
                                    bos_token_id=0, eos_token_id=0)).eval()  # GPT-2's 50256 is past 100
    ours = minprefix.GPT.from_hf(hf).eval()
    ids = torch.randint(0, 100, (2, 16))
    with torch.no_grad():
        hf_logits = hf(ids).logits
        our_logits, _ = ours(ids)
    print(f"logits {tuple(our_logits.shape)}, max |difference| = {(hf_logits - our_logits).abs().max():.1e}")

# %% [markdown]
# With internet access, tuning a prefix on real GPT-2 changes two things in code like the cell above:
# the weights come from the hub instead of a tiny config, and text is encoded with GPT-2's own
# tokenizer. `minprefix`'s methods take **token ids**, never text, so they do not care which tokenizer
# made them:
#
# ```python
# from transformers import GPT2LMHeadModel, GPT2TokenizerFast
#
# hf = GPT2LMHeadModel.from_pretrained("gpt2")                   # 1. real weights instead of GPT2Config(...)
# init_ids = GPT2TokenizerFast.from_pretrained("gpt2").encode(   # 2. GPT-2's tokenizer makes the token ids
#     "Translate English to German:")
# base = minprefix.GPT.from_hf(hf).freeze()
# model = minprefix.PrefixGPT(base, 10, init="text", init_ids=init_ids)  # a prefix started from a real text
# ```
#
# Training it needs batches of GPT-2 token ids from your own data; the `tune` function of later
# lessons draws its batches from the tiny world and its character tokenizer.

# %%
print(f"this notebook ran top to bottom in {time.perf_counter() - T0:.0f} s{' (quick mode)' if QUICK else ''}")

# %% [markdown]
# ## Recap
#
# - A block adds what attention gathers and what its MLP computes to the residual stream, each read
#   through a LayerNorm; the output has the shape of the input.
# - With more keys than queries (a cache, a prefix) the causal triangle must be aligned
#   bottom-right; SDPA's `is_causal` aligns it top-left and silently computes something else.
# - The shipped base has 823,040 parameters, 96 % of them in the blocks; its output layer is the
#   token table itself.
# - Greedy decoding takes the top token, sampling divides the logits by a temperature first; the KV
#   cache gives the same tokens for far less work.
#
# ## Try it yourself
#
# 1. In the sampling cell, try temperatures 1.0 and 5.0: at which one do the answers stop being
#    German words?
# 2. Before printing `attention_mask(4, 7)`, write down which entries you expect to be True; then
#    print `torch.ones(4, 7).tril()` too. Which one lets the first query see the three earlier keys?
# 3. Ask the base to spell a ten-letter word backwards. Where does it go wrong, and why might it
#    (pretraining strings have 4 to 7 letters)?
#
# Next, lesson 2 tunes the text in front of the input: hard prompts.
#

# %% [markdown]
# ## Exercises
#
# Write your solutions in **`lessons/exercises/lesson1.py`**; each function there raises
# `NotImplementedError` until you fill it in. The checks compare your code with independent oracles
# and name the likely bug when they fail.
#
# - **Exercise 1.1, `causal_mask(n_query, n_key)`:** the boolean attention mask for `n_query` queries
#   and `n_key` keys, the earlier keys visible to every query. Reread "The attention mask".
# - **Exercise 1.2, `count_gpt_params(config)`:** the number of parameters of `GPT(config)`, the tied
#   head counted once, with and without biases. Reread "Counting the parameters".
#
# To check, from the repository root:
#
# ```bash
# pytest -m ex1_1 --learner                  # one exercise (or: pytest -m "ex1_1 or ex1_2" --learner)
# pytest tests/test_exercises.py --learner   # all of them; it ends with "exercises done: k/14"
# ```
