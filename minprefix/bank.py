"""Many tasks, one frozen model: a bank of tuned prompts served in one batch.

Because the base never changes, a prompt is just a small tensor per task. A batch can mix
tasks: each row wears its own soft prompt or prefix, stacked along the batch, and the whole
batch runs in one forward pass. Prompt ensembling (Lester et al. 2021, §7) is the same trick
with N prompts for one task: every input is repeated N times, once per prompt.
"""

from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

from .generate import Generator, KVCache, check_ids


class PromptBank(nn.Module, Generator):
    """A dict of tuned models (same method, same prompt length, same base) keyed by name.

    forward(idx, tasks=[name of row 0, name of row 1, ...]) runs every row with its own prompt.
    """

    def __init__(self, members: dict):
        super().__init__()
        if not members:
            raise ValueError("a prompt bank needs at least one member")
        first = next(iter(members.values()))
        for name, m in members.items():
            if type(m) is not type(first):
                raise ValueError(f"member {name!r} is a {type(m).__name__}, the first a {type(first).__name__}: "
                                 "a bank stacks one kind of rows (make a bank per method)")
            if m.base is not first.base:
                raise ValueError(f"member {name!r} wears another base object; load every member onto the same base")
            if m.prompt().shape != first.prompt().shape:
                raise ValueError(f"member {name!r} has prompt shape {tuple(m.prompt().shape)}, "
                                 f"the others {tuple(first.prompt().shape)}; pad or retrain to one length")
        self.base = first.base  # registered once; each member's row maker is registered under `row_makers`
        self.row_makers = nn.ModuleDict({name: m.row_maker for name, m in members.items()})
        self.members = dict(members)  # plain dict: registering the members would register the base again

    @property
    def first(self):
        return next(iter(self.members.values()))

    @property
    def config(self):
        return self.base.config

    @property
    def prompt_len(self) -> int:
        return self.first.prompt_len

    def forward(self, idx, targets=None, cache: KVCache | None = None, tasks=None):
        if tasks is None or len(tasks) != idx.size(0):
            raise ValueError(f"tasks must name one member per row: {idx.size(0)} rows, got {tasks!r}")
        unknown = sorted(set(tasks) - set(self.members))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; the bank holds {sorted(self.members)}")
        prompts = {name: m.prompt() for name, m in self.members.items() if name in tasks}
        prompt = torch.stack([prompts[t] for t in tasks])  # (B, *prompt shape)
        return self.first(idx, targets, cache, prompt=prompt)


@torch.no_grad()
def ensemble_generate(bank: PromptBank, names: list[str], idx, max_new_tokens: int, stop_id: int,
                      combine: str = "mean"):
    """Greedy decoding of idx (B, T) with N prompts of one task, all in one batched pass.

    combine="mean": at each step, average the N prompts' log-probabilities, take the argmax,
    and feed that token to all N copies. combine="vote": each prompt decodes on its own and
    the most common answer wins (ties: the earliest prompt in `names`). Returns (B, T + new).
    """
    B, N = idx.size(0), len(names)
    rows = idx.repeat_interleave(N, dim=0)  # (B*N, T): copies of row b are b*N .. b*N+N-1
    tasks = list(names) * B
    if combine == "vote":
        out = bank.generate(rows, max_new_tokens, top_k=1, stop_id=stop_id, tasks=tasks)
        out = out.view(B, N, -1)
        winners = []
        for b in range(B):
            answers = [tuple(r.tolist()) for r in out[b]]
            top = Counter(answers).most_common(1)[0][1]
            winners.append(next(a for a in answers if Counter(answers)[a] == top))
        return torch.tensor(winners, device=idx.device)
    if combine != "mean":
        raise ValueError(f"unknown combine {combine!r}; choose mean or vote")
    check_ids(idx, bank.config, extra=bank.prompt_len + max_new_tokens)
    cache = KVCache(bank.config.n_layer)
    logits, _ = bank(rows, cache=cache, tasks=tasks)
    done = torch.zeros(B, dtype=torch.bool, device=idx.device)
    for step in range(max_new_tokens):
        logp = F.log_softmax(logits[:, -1].float(), dim=-1).view(B, N, -1).mean(dim=1)  # (B, vocab)
        next_id = logp.argmax(dim=-1).masked_fill(done, stop_id)  # (B,)
        done |= next_id == stop_id
        idx = torch.cat([idx, next_id[:, None]], dim=1)
        if done.all() or step == max_new_tokens - 1:
            break
        logits, _ = bank(next_id.repeat_interleave(N)[:, None], cache=cache, tasks=tasks)
    return idx
