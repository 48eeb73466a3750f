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
# # Lesson 2: hard prompts
#
# A *hard prompt* is ordinary text put before the input: an instruction such as
# "Spell '{x}' backwards: ". Tuning a hard prompt means choosing that text; the model itself never
# changes. This lesson does it two ways on the frozen base of lesson 1: by scoring a few hand-written
# templates, and by a search over characters guided by gradients (AutoPrompt, Shin et al. 2020). It
# ends by putting the searched prompt beside a *soft* prompt, the continuous relaxation that
# lesson 3 studies (Lester et al. 2021).
#
# **You will be able to** score templates with exact match and answer loss and tell when a small dev
# set cannot rank them; read greedy exact match off a single forward pass; explain why a token has no
# gradient while its embedding does; and run a gradient-guided search over the characters of a
# prompt, knowing what each step computes.
#
# **Running time:** under a minute on 2 CPU cores (56 s in the committed run), most of it in the search and in
# training the soft prompt; the last code cell prints how long this run took.

# %% [markdown]
# ## Setup
#
# `QUICK` is set by the test suite (`MINPREFIX_QUICK=1`): fewer search and training steps, every cell
# still runs. The scores below are then lower than in a full run.

# %%
import time

import torch

from minprefix.lab.lesson import setup, solution  # noqa: F401 (solution("2.2"): the library's answer, after yours)

T0 = time.perf_counter()
base, tok, QUICK = setup()  # one thread, seed 0, the shipped base (frozen, in eval mode); prints what ran
SEARCH_STEPS = 8 if QUICK else 40  # steps of the discrete search
SOFT_STEPS = 40 if QUICK else 200  # training steps of the soft prompt

# %% [markdown]
# ## Three templates, scored
#
# The base learned English-to-German translation from several phrasings. The downstream task
# `bare-translate` gives it the input alone, `'dog': `, with no instruction. The simplest way to
# tune a prompt is to write a few candidates, put each in front of the same held-out inputs, and keep
# the best. `score_templates` does exactly that and reports two numbers per template:
#
# - **exact match**: the share of inputs whose greedy answer is exactly right (then `<eos>`);
# - **answer loss**: the mean negative log-probability, in nats per answer token, that the model gives
#   to the right answer's characters and to the `<eos>` that ends it. It is finer than exact match: it moves before any answer flips.
#
# We score the three classic English-to-German templates and the bare format on the dev words. Those
# words are never used for tuning (they are held out from the downstream tasks' training split), but
# the base met every lexicon word in pretraining: the question is whether the phrasing brings the
# knowledge out.
#
# A score on n examples is a proportion, k right out of n, and another draw of n examples would give
# another k. `percent` prints a 95 % interval next to any score on fewer than a hundred examples:
# Wilson's, the range of true accuracies q under which the observed p = k / n would not be
# surprising, that is every q with $|p - q| \le 1.96\sqrt{q(1-q)/n}$. The textbook interval
# $p \pm 1.96\sqrt{p(1-p)/n}$ has zero width at 0 % and at 100 %, claiming certainty exactly where
# small samples leave the most doubt; Wilson's does not. (Lesson 6 solves the inequality for q, and
# exercise 6.1 asks you to.)

# %%
from minprefix.hard_prompt import score_templates
from minprefix.scoring import percent, wilson_interval
from minprefix.world import BARE_TEMPLATE, TEMPLATES, examples

words = examples("bare-translate", "dev")
rows = score_templates(base, tok, words, list(TEMPLATES["translate"][:3]) + [BARE_TEMPLATE])
print(f"English -> German on {len(words)} dev words (best first):")
for r in rows:
    print(f"  {percent(r['exact_match'], r['n']):>18s}  answer loss {r['loss']:.3f}  {r['template']!r}")

# %%
print(f"95 % Wilson intervals, on {len(words)} dev words:")
for r in rows:
    lo, hi = wilson_interval(r["exact_match"], r["n"])
    print(f"  {round(r['exact_match'] * r['n']):3d} right  [{100 * lo:5.1f}, {100 * hi:5.1f}] %  {r['template']!r}")

# %% [markdown]
# All three instructions get every one of the 59 words right, so their intervals are the same,
# [93.9, 100] %: the dev words cannot rank them. When intervals overlap like this, the order printed
# above is one draw of words, and another draw of the same size could well reverse it. A difference of a word or
# two out of a few dozen is noise. The answer loss is finer, but its differences here are as small
# and rest on the same few words; to rank templates this close you need many more examples (which
# the lexicon does not have), not a second decimal. What the scores *do* show is the gap to the bare
# format: any of the instructions turns almost nothing into almost everything.
#
# With random strings instead of words, the dev split can be as large as we like. Here is reversal,
# with its hand-written templates and the bare format, on 200 dev strings: enough to set every
# instruction far above the bare format, not enough to rank instructions a point or two apart (on
# 200 strings a 95 % interval is still several points wide):

# %%
strings = examples("bare-reverse", "dev", 200)
rev_rows = score_templates(base, tok, strings, list(TEMPLATES["reverse"]) + [BARE_TEMPLATE])
print(f"reversal on {len(strings)} dev strings (best first):")
for r in rev_rows:
    print(f"  {percent(r['exact_match'], r['n']):>7s}  answer loss {r['loss']:.3f}  {r['template']!r}")

# %% [markdown]
# ## Exact match without decoding
#
# Checking an answer the obvious way means decoding it: run the model, take the most likely
# character, append it, run again, until `<eos>`. That is one forward pass per character, and a batch
# of different prompts needs care (padding, different stopping points).
#
# `minprefix.scoring.exact_match` reads the same verdict off **one** forward pass over
# `prompt + answer` (*teacher forcing*: the model is shown the correct text so far at every
# position). Greedy decoding reproduces the answer exactly when, at every answer position, the
# highest-scoring next character given the *correct* text so far is the correct character, `<eos>`
# included. If that holds everywhere, greedy decoding writes the first answer character, is then in
# exactly the teacher-forced situation for the second, and so on to `<eos>`. If it fails first at
# some position, greedy decoding got there on the correct text and writes the wrong character there.
# So the two agree on every example. `answer_batch` marks the positions to score with their target
# id, and every other position (the prompt, the padding after the answer) with -1.
#
# To see the check work both ways we take some dev strings, half asked with an instruction (mostly
# right) and half bare (mostly wrong), and compare its verdicts with real greedy decoding:

# %%
from minprefix.hard_prompt import with_template
from minprefix.scoring import exact_match
from minprefix.world import answer_batch

mixed = with_template(strings[:10], "Spell '{x}' backwards: ") + with_template(strings[10:20], BARE_TEMPLATE)
idx, targets = answer_batch(tok, mixed)
logits, _ = base(idx)  # one teacher-forced pass over the whole batch
one_pass = exact_match(logits, targets).tolist()

decoded, by_decoding = [], []
for ex in mixed:  # the slow way: greedy decoding, one example and one character at a time
    ids = torch.tensor([tok.encode(ex.prompt)])
    new = base.generate(ids, len(ex.answer) + 1, top_k=1, stop_id=tok.eos_id)[0, ids.size(1):].tolist()
    decoded.append(tok.decode(new))
    by_decoding.append(new == tok.encode(ex.answer) + [tok.eos_id])

same = sum(a == b for a, b in zip(one_pass, by_decoding))
print(f"same verdict on {same} of {len(mixed)} examples; right by both: {sum(one_pass)}")
for i in (0, 10):
    print(f"  {mixed[i].prompt!r:28s} answer {mixed[i].answer!r:10s} greedy {decoded[i]!r:18s} one pass says {one_pass[i]}")

# %% [markdown]
# Here is what the one pass sees for a wrong example: the target at each scored position, and the
# model's highest-scoring character there. The first disagreement is where greedy decoding leaves the
# right answer.

# %%
b = next(i for i, ok in enumerate(one_pass) if not ok)
scored = targets[b] != -1
show = lambda ids: " ".join("␣" if tok.itos[i] == " " else tok.itos[i] for i in ids.tolist())  # ␣: a space
print(f"prompt      {mixed[b].prompt!r}")
print(f"target      {show(targets[b][scored])}")
print(f"argmax      {show(logits[b].argmax(-1)[scored])}")

# %% [markdown]
# ## Why no gradient
#
# Scoring templates only chooses among candidates someone wrote. To *improve* a prompt we would like
# what training uses everywhere else: the gradient of the loss with respect to the thing we change.
# But the prompt is a sequence of token ids, integers that index rows of the token table. There is no
# "slightly more `e`" between `e` and `f`, and PyTorch refuses to track a gradient for an integer
# tensor:

# %%
ids = torch.tensor(tok.encode("Spell 'kram' backwards: "))
try:
    ids.requires_grad_()
except RuntimeError as e:
    print(f"{ids.dtype}: RuntimeError: {e}")

# %% [markdown]
# The first thing the model does with an id is look up its row in the token table, a vector of
# floats. The loss does have a gradient with respect to those vectors, and it flows through the frozen
# base (whose own weights get none). We use a prompt of filler characters before the bare input, the
# starting point of the search below.

# %%
from minprefix.model import lm_loss

START = "**********'{x}': "
train = examples("bare-reverse", "train", 200)
idx, targets = answer_batch(tok, with_template(train[:64], START))
emb = base.wte(idx).detach().requires_grad_()  # (B, T, C): the looked-up rows, as a leaf to differentiate
loss = lm_loss(base.run(emb), targets)
loss.backward()
n_fill = START.index("'")
print(f"answer loss {loss.item():.3f}; gradient {tuple(emb.grad.shape)}, the same shape as the embeddings")
print("gradient norm at the filler positions, summed over the batch:",
      " ".join(f"{n:.2f}" for n in emb.grad[:, :n_fill].sum(0).norm(dim=-1).tolist()))
print("the base's token table got a gradient:", base.wte.weight.grad is not None)

# %% [markdown]
# The gradient says which way to move each vector to lower the loss. But a hard prompt cannot put an
# arbitrary vector at a position, only one of the rows of the token table: a small step along the
# gradient lands between tokens, on no character at all. Two ways out follow. Keep the prompt discrete
# and use the gradient only to *propose* characters (this lesson's search); or let the vectors be free
# and train them directly, which is a soft prompt (lesson 3).
#
# ## Search with gradients
#
# AutoPrompt (Shin et al. 2020), following HotFlip (Ebrahimi et al. 2018), proposes swaps from the
# gradient. Write the character at one position as a one-hot vector; its embedding is that one-hot
# vector times the token table `E`. To first order, swapping the current character `c` for `w`
# changes the loss by `(E[w] - E[c]) · g`, where `g` is the gradient with respect to the embedding at
# that position. `E[c] · g` is the same for every `w`, so the best candidates are the characters with
# the most negative `E[w] · g`: one matrix-vector product ranks the whole vocabulary.

# %% [markdown]
# That ranking is **exercise 2.2**, `rank_candidates(grad, table, allowed, k)` in
# `lessons/exercises/lesson2.py` (check it with `pytest -m ex2_2 --learner` from the repository root).
# The cells below use the library's version; once yours passes, `solution("2.2")` prints it to compare.

# %%
from minprefix.hard_prompt import rank_candidates, search_prompt

# %% [markdown]
# A first-order estimate is a straight-line guess, and a swap is a jump, not a small step. Let us
# compare, at the first filler position, the loss change the gradient predicts for the top candidates
# with the change a real forward pass measures (the candidates are the search's: characters, without
# the braces that mark a template's `{x}`).

# %%
from minprefix.world import CHARACTERS

allowed = torch.tensor([tok.stoi[ch] for ch in CHARACTERS if ch not in "{}"])
table = base.wte.weight  # (V, C)
pos = 0
g = emb.grad[:, pos].sum(0)  # (C,): the same position in every example of the batch
now = tok.stoi[START[pos]]
with torch.no_grad():
    for w in rank_candidates(g, table, allowed, 5).tolist():
        trial = START[:pos] + tok.itos[w] + START[pos + 1:]
        _, new_loss = base(*answer_batch(tok, with_template(train[:64], trial)))  # (idx, targets) -> loss
        predicted = ((table[w] - table[now]) @ g).item()
        print(f"  {START[pos]!r} -> {tok.itos[w]!r}: predicted change {predicted:+.3f}, measured {new_loss.item() - loss.item():+.3f}")

# %% [markdown]
# The same comparison for the thirty characters the gradient ranks highest at that position, as a
# picture (`minprefix.lab.figures.plot_predicted_vs_measured`): on the dotted line the estimate would
# be exact; above zero a swap the gradient favours makes the loss worse.

# %%
from minprefix.lab.figures import plot_predicted_vs_measured

predicted, measured = [], []
with torch.no_grad():
    for w in rank_candidates(g, table, allowed, 30).tolist():
        trial = START[:pos] + tok.itos[w] + START[pos + 1:]
        _, new_loss = base(*answer_batch(tok, with_template(train[:64], trial)))
        predicted.append(((table[w] - table[now]) @ g).item())
        measured.append(new_loss.item() - loss.item())
print(f"{sum(m > 0 for m in measured)} of the gradient's {len(measured)} favourites raise the loss when tried")
plot_predicted_vs_measured(predicted, measured, title="the 30 characters the gradient ranks highest, position 0");

# %% [markdown]
# Compare the two columns: the straight-line guesses are off in size, and their order is not the
# measured one (the gradient's first choice lowers the loss less than its second and its fifth).
# Here, at the first filler position, every one of the thirty favourites does lower the loss, but
# nothing promises it: a swap jumps from one row of the table to another, far from where the
# estimate was made, and in the search below many steps find no candidate that helps at all
# (compare its steps with the swaps it kept). The gradient is only a cheap way to pick a few candidates out of the whole
# vocabulary, and the search never trusts its estimates: at each step, `search_prompt` picks one editable position at random, ranks the characters by
# the gradient, scores the top few with real forward passes on a batch of training examples, and keeps
# the best swap only if it really lowers the loss on that batch. Each step draws a new batch, so
# the losses in the log below come from different batches and need not fall from line to line. Every character outside `{x}` can change, the
# quotes and colon around the input included. We start from the filler and search on training
# strings, then score the start and the result on the dev strings.

# %%
t = time.perf_counter()
found, swaps = search_prompt(base, tok, train, START, steps=SEARCH_STEPS, progress=True)
search_time = time.perf_counter() - t
print(f"{SEARCH_STEPS} search steps in {search_time:.0f} s, {len(swaps)} swaps kept:")
for s in swaps:
    print(f"  step {s['step']:2d}, position {s['position']:2d}: {s['old']!r} -> {s['new']!r}   batch loss {s['loss']:.3f}")
before = score_templates(base, tok, strings, [START])[0]
after = score_templates(base, tok, strings, [found])[0]
print(f"dev, before: {percent(before['exact_match'], before['n']):>7s}  answer loss {before['loss']:.3f}  {START!r}")
print(f"dev, after:  {percent(after['exact_match'], after['n']):>7s}  answer loss {after['loss']:.3f}  {found!r}")

# %% [markdown]
# The result is not a prompt a person would write, and it need not be: the model reads characters,
# not meanings, and the search only asks what lowers the loss. Compare it with the hand-written
# reversal templates scored above.
#
# ## Against a soft prompt
#
# A soft prompt (Lester et al. 2021) takes the other way out of "Why no gradient": it keeps the
# gradient and gives up the characters. Its rows are free vectors put in front of the token
# embeddings, trained by gradient descent while the base stays frozen. We give it as many rows as the
# search had filler characters and train it on the same task with the library's one training loop;
# lesson 3 looks inside. `tune` evaluates on the dev strings during training and keeps the best
# weights, so we also score both prompts on the test strings, which neither has seen.

# %%
from minprefix import count_trainable
from minprefix.lab.figures import plot_curves
from minprefix.scoring import score
from minprefix.tune import TuneConfig, tune

t = time.perf_counter()
cfg = TuneConfig(method="soft", task="bare-reverse", steps=SOFT_STEPS, prompt_len=n_fill)
soft, history = tune(base, tok, cfg, progress=True)
soft_time = time.perf_counter() - t
test = examples("bare-reverse", "test", 200)
results = {
    "searched template": (score_templates(base, tok, strings, [found])[0], score_templates(base, tok, test, [found])[0]),
    "soft prompt": (score(soft, tok, strings), score(soft, tok, test)),
}
print(f"soft prompt: {cfg.prompt_len} rows, {count_trainable(soft):,} trainable numbers, {SOFT_STEPS} steps in {soft_time:.0f} s")
print(f"searched template: {len(START) - len('{x}')} editable characters (every one outside '{{x}}'), "
      f"{SEARCH_STEPS} steps in {search_time:.0f} s")
for name, (dev_r, test_r) in results.items():
    print(f"  {name:18s} dev {percent(dev_r['exact_match'], dev_r['n']):>7s}   test {percent(test_r['exact_match'], test_r['n']):>7s}"
          f"   test answer loss {test_r['loss']:.3f}")

# %%
# %matplotlib inline
# (minprefix.lab.figures forces no matplotlib backend; the line above makes sure the notebook shows figures inline)
fig = plot_curves({"bare-reverse": {"soft prompt": history}}, steps=SOFT_STEPS,
                  title="dev exact match while training the soft prompt")
ax = fig.axes[0]
ax.axhline(100 * after["exact_match"], color="C1", ls="--", label="searched template (after the search)")
ax.axhline(100 * before["exact_match"], color="C2", ls=":", label="filler start")
ax.legend(loc="lower right", fontsize=8);

# %%
(s_test, soft_test) = results["searched template"][1], results["soft prompt"][1]
lo_s, hi_s = wilson_interval(s_test["exact_match"], s_test["n"])
lo_p, hi_p = wilson_interval(soft_test["exact_match"], soft_test["n"])
print(f"on the {soft_test['n']} test strings: soft prompt minus searched template "
      f"{100 * (soft_test['exact_match'] - s_test['exact_match']):+.1f} points; 95 % intervals "
      f"[{100 * lo_p:.0f}, {100 * hi_p:.0f}] and [{100 * lo_s:.0f}, {100 * hi_s:.0f}]; they overlap: {lo_p <= hi_s and lo_s <= hi_p}")


# %% [markdown]
# Why should the continuous search usually win? Three reasons, all visible in the code above.
#
# - **Every row moves at every step.** A gradient step updates all the soft prompt's numbers at once,
#   in the direction that lowers the loss. The discrete search changes one character per step, at a
#   position drawn at random, and many steps keep nothing.
# - **Every step is checked by the next gradient.** Adam does not step along the gradient: it moves
#   each number by about the learning rate, in the direction of the sign of its running gradient, so
#   a step is not small either (at the soft prompt's default learning rate of 10, each number moves
#   by up to about 10 per step, so a row moves tens of times the distance between two tokens' rows:
#   lesson 3 measures it). But nothing forces the rows onto the token table, and the
#   next step starts from a fresh gradient where the last one landed. A swap jumps from one row of
#   the table to another, where the straight-line estimate fails (the predicted and measured changes
#   above), so the search needs extra forward passes to check its candidates.
# - **The space is larger.** A hard prompt's rows must be rows of the token table; a soft prompt's can
#   be any vectors, including ones no text produces.
#
# What the numbers here show is narrower than that argument. On this base, in a full run, forty
# search steps take the filler from 0.0 % to 71.5 % of the dev strings, with characters that are no
# instruction a person would write, and still below the hand-written reversal templates scored
# earlier (95.5 % to 100.0 %). The soft prompt, in less time (17 s against 30 s in the committed run),
# reaches about what those templates score: 95.5 % of the test strings against the searched
# template's 69.0 %, and the two 95 % intervals, [92, 98] and [62, 75], do not overlap.
# This is one seed of each, with default settings, on one task the base already knows, and forty
# steps from one start may simply be too few for the search: it shows what each method reaches within
# this budget, not a ranking of the methods. In the quick mode both are cut short and the comparison
# says little.

# %%
print(f"this notebook ran top to bottom in {time.perf_counter() - T0:.0f} s{' (quick mode)' if QUICK else ''}")

# %% [markdown]
# ## Recap
#
# - A hard prompt is text. Scoring candidates on held-out inputs (exact match, answer loss) is the
#   simplest tuning, and a few dozen examples cannot rank close candidates: the Wilson interval says
#   how close is too close.
# - Exact match needs no decoding: one teacher-forced pass gives greedy decoding's verdict.
# - Tokens have no gradient, their embeddings do. HotFlip ranks every character with one product,
#   but its first-order estimates can be far off, so the search checks each swap on real batches.
# - A soft prompt drops the constraint to the token table and trains the rows themselves.
#
# ## Try it yourself
#
# 1. Start the search from a hand-written template (`"Reverse the word '{x}': "`) instead of the
#    filler. Can it improve a template that already scores near 100 %? Look at the answer loss.
# 2. Give the search 200 steps: how close does the filler get to the hand-written templates?
# 3. Score the three reversal templates on a thousand dev strings: how much narrower do their
#    intervals get, and does their order change?
#
# Next, lesson 3 trains the continuous version: soft prompts.
#

# %% [markdown]
# ## Exercises
#
# Write your solutions in **`lessons/exercises/lesson2.py`**; each function there raises
# `NotImplementedError` until you fill it in.
#
# - **Exercise 2.1, `exact_match(logits, targets)`:** would greedy decoding reproduce each row's
#   answer? Read it off one teacher-forced pass, with `-1` marking the positions that are not scored.
#   Reread "Exact match without decoding".
# - **Exercise 2.2, `rank_candidates(grad, table, allowed, k)`:** HotFlip's candidates for one
#   position, best first. Reread "Search with gradients".
#
# To check, from the repository root:
#
# ```bash
# pytest -m ex2_1 --learner                  # one exercise (or: pytest -m "ex2_1 or ex2_2" --learner)
# pytest tests/test_exercises.py --learner   # all of them; it ends with "exercises done: k/14"
# ```
