"""Scoring and reporting: how well a model answers, and how a score is printed.

`score` reads greedy exact match off one teacher-forced pass (no decoding loop); a score
over fewer than 100 examples is printed with its 95 % Wilson interval (`percent`); every
table the project prints is a markdown table (`table`).
"""

import math

import torch

from .world import Example, Tokenizer, answer_batch, check_tokenizer


@torch.no_grad()
def score(model, tok: Tokenizer, exs: list[Example], batch_size: int = 256, whole_text=False, **kw) -> dict:
    """Answer loss and greedy exact match of a model on examples.

    Exact match is read off one teacher-forced pass: greedy decoding reproduces the answer
    (and then <eos>) exactly when, at every answer position, the argmax given the correct
    text so far is the correct next token. So no token-by-token decoding is needed, and
    padding never matters (the model is causal and padding sits at the end).
    whole_text=True scores every character (the pretraining loss). Extra keyword arguments go
    to the model (e.g. `tasks=` for a prompt bank).
    """
    if not exs:
        raise ValueError("score needs at least one example: a score of nothing is no score")
    check_tokenizer(tok, model)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_correct, loss_sum, n_tokens = 0, 0.0, 0
    for i in range(0, len(exs), batch_size):
        chunk = exs[i : i + batch_size]
        idx, targets = answer_batch(tok, chunk, device, whole_text)
        chunk_kw = {k: v[i : i + batch_size] if isinstance(v, (list, tuple)) else v for k, v in kw.items()}
        logits, _ = model(idx, **chunk_kw)
        scored = targets != -1
        n_correct += exact_match(logits, targets).sum().item()
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        loss_sum += nll[scored].sum().item()
        n_tokens += scored.sum().item()
    model.train(was_training)
    return {"exact_match": n_correct / len(exs), "loss": loss_sum / max(1, n_tokens), "n": len(exs)}


def exact_match(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) bool: would greedy decoding reproduce each row's answer? logits (B, T, V), targets (B, T), -1 = unscored.

    Yes exactly when, at every scored position, the argmax given the correct text so far is the target.
    """
    return ((logits.argmax(-1) == targets) | (targets == -1)).all(dim=1)


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion p measured on n examples (good at small n and p near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def percent(p: float, n: int | None = None) -> str:
    """A score as a percentage; with its 95 % interval when it rests on fewer than 100 examples (n given)."""
    if n is None or n >= 100:
        return f"{100 * p:.1f} %"
    low, high = wilson_interval(p, n)
    return f"{100 * p:.1f} % [{100 * low:.0f}, {100 * high:.0f}]"


def table(header: list[str], rows: list[list], right_from: int = 1) -> str:
    """A markdown table; columns from `right_from` on are right-aligned (numbers)."""
    lines = ["| " + " | ".join(header) + " |",
             "| " + " | ".join("---" if i < right_from else "---:" for i in range(len(header))) + " |"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])
