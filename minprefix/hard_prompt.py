"""Hard prompts: choosing the discrete tokens of the instruction itself.

Two ways to tune them. Score a handful of hand-written templates and keep the best, or search:
token ids are integers, so the loss has no gradient with respect to them. AutoPrompt (Shin et
al. 2020), after HotFlip, uses the gradient with respect to the *one-hot* vector of a position
instead: to first order, swapping the token there for token w changes the loss by
(E[w] - E[current]) . grad, so the tokens with the most negative E[w] . grad are the best
candidates. Candidates are then checked with real forward passes, and a swap is kept only if
it really lowers the loss.
"""

import random

import torch
from tqdm import tqdm  # the text bar: in a notebook without ipywidgets, tqdm.auto warns and falls back to it

from .model import GPT, lm_loss
from .scoring import score
from .world import BARE_TEMPLATE, CHARACTERS, Example, Tokenizer, answer_batch

SEARCH_START = "*" * 10 + BARE_TEMPLATE  # AutoPrompt's setting: filler characters, then the input


def with_template(exs: list[Example], template: str) -> list[Example]:
    """The same inputs and answers, asked with another template (it must contain one '{x}')."""
    if template.count("{x}") != 1:
        raise ValueError(f"a template needs exactly one '{{x}}' where the input goes, got {template!r}")
    return [Example(ex.task, ex.x, template.replace("{x}", ex.x), ex.answer) for ex in exs]


def score_templates(model, tok: Tokenizer, exs: list[Example], templates: list[str]) -> list[dict]:
    """Answer loss and exact match of each template on the same examples, best first."""
    rows = [{"template": t, **score(model, tok, with_template(exs, t))} for t in templates]
    return sorted(rows, key=lambda r: (-r["exact_match"], r["loss"]))


def _answer_loss(model: GPT, tok, exs):
    """Mean answer loss, and the input embeddings (B, T, C) as a leaf tensor to differentiate."""
    idx, targets = answer_batch(tok, exs, model.wte.weight.device)
    emb = model.wte(idx).detach().requires_grad_(torch.is_grad_enabled())
    return lm_loss(model.run(emb), targets), emb


def rank_candidates(grad: torch.Tensor, table: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """The k allowed token ids whose swap-in most lowers the loss, to first order, best first.

    grad (C,): gradient of the loss w.r.t. the embedding at one position; table (V, C): the token
    embeddings. Swapping the token there for w changes the loss by about (E[w] - E[now]) . grad, so
    the best candidates have the most negative E[w] . grad.
    """
    scores = -(table[allowed] @ grad)  # (len(allowed),): first-order decrease of the loss
    return allowed[scores.topk(min(k, len(allowed))).indices]


def search_prompt(model: GPT, tok: Tokenizer, exs: list[Example], start: str, steps: int = 40,
                  top_k: int = 8, batch_size: int = 64, seed: int = 0, progress: bool = True):
    """Gradient-guided search over the characters of a template (AutoPrompt / HotFlip).

    start: a template like "Reverse '{x}': " or filler like "**********'{x}': ". Each step picks
    one editable position (every character outside '{x}'), ranks replacement characters by
    -(E . grad of the loss w.r.t. that position's embedding), scores the top_k with real
    forward passes on a batch, and keeps the best only if it beats the current template.
    Returns (best template, history of (step, position, old, new, batch loss)).
    """
    with_template(exs[:1], start)  # validates the template
    pre, post = start.split("{x}")
    chars = list(pre + post)
    if not chars:
        raise ValueError("the start template has no characters outside '{x}' to search over")
    allowed = torch.tensor([tok.stoi[c] for c in CHARACTERS if c not in "{}"])
    table = model.wte.weight  # (V, C)
    rng = random.Random(seed)
    history = []
    for step in tqdm(range(steps), desc="prompt search", disable=not progress):
        batch = rng.sample(exs, min(batch_size, len(exs)))
        template = "".join(chars[: len(pre)]) + "{x}" + "".join(chars[len(pre):])
        pos = rng.randrange(len(chars))
        # where that character sits in each example's ids: after the input if it is in `post`
        where = [pos if pos < len(pre) else pos + len(ex.x) for ex in batch]
        loss, emb = _answer_loss(model, tok, with_template(batch, template))
        (grad,) = torch.autograd.grad(loss, emb)  # (B, T, C)
        g = grad[torch.arange(len(batch)), torch.tensor(where)].sum(0)  # (C,) summed over the batch
        candidates = rank_candidates(g, table, allowed, top_k).tolist()
        best_loss, best_char = loss.item(), None
        with torch.no_grad():
            for c in candidates:
                trial = chars.copy()
                trial[pos] = tok.itos[c]
                t = "".join(trial[: len(pre)]) + "{x}" + "".join(trial[len(pre):])
                trial_loss = _answer_loss(model, tok, with_template(batch, t))[0].item()
                if trial_loss < best_loss:
                    best_loss, best_char = trial_loss, tok.itos[c]
        if best_char is not None:
            history.append({"step": step, "position": pos, "old": chars[pos], "new": best_char, "loss": best_loss})
            chars[pos] = best_char
    return "".join(chars[: len(pre)]) + "{x}" + "".join(chars[len(pre):]), history
