"""Generation, shared by every model of the package: the KV cache and `generate`.

GPT (model.py), the prompted models (prompted.py) and the prompt bank (bank.py) all decode
with `Generator.generate`: the prompt goes through once, filling a `KVCache`, then each new
token costs one position of work. This module needs nothing of the model itself: any module
whose forward is `(idx, targets=None, cache=None, **kw)` and that has a `config` can generate.
"""

import numbers

import torch
import torch.nn.functional as F


class KVCache:
    """Keys and values of the tokens seen so far, one (k, v) pair per layer.

    Each k and v has shape (B, n_head, S, head_dim). Generation fills it one token at a time
    so that each new token costs one row of work instead of a whole forward pass.
    `reserve(n)` moves each layer's pair into buffers of n positions (`Reserved`): from then
    on a new token's keys and values are written after the old ones, in place, instead of
    torch.cat copying the whole past every token. A layer is still read as a (k, v) pair.
    """

    def __init__(self, n_layer: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer

    @property
    def length(self) -> int:
        """Positions used so far: the longest layer (a layer without a prefix holds P rows fewer)."""
        return max((kv[0].size(2) for kv in self.layers if kv is not None), default=0)

    def reserve(self, capacity: int):
        """Room for `capacity` positions in every layer that holds keys and values (for generation)."""
        self.layers = [kv if kv is None else Reserved.copy_of(kv, capacity) for kv in self.layers]


class Reserved(tuple):
    """A layer's (k, v): the first n positions of two buffers with room for more (no gradients)."""

    def __new__(cls, k_buf: torch.Tensor, v_buf: torch.Tensor, n: int):
        pair = super().__new__(cls, (k_buf[:, :, :n], v_buf[:, :, :n]))
        pair.buffers, pair.n = (k_buf, v_buf), n
        return pair

    @classmethod
    def copy_of(cls, kv, capacity: int) -> "Reserved":
        k, v = kv
        buffers = [t.new_empty(t.size(0), t.size(1), max(capacity, t.size(2)), t.size(3)) for t in (k, v)]
        for buf, t in zip(buffers, (k, v)):
            buf[:, :, : t.size(2)] = t
        return cls(*buffers, k.size(2))


class Generator:
    """`generate` for any model whose forward is `(idx, targets=None, cache=None, **kw)`.

    Shared by GPT, SoftPromptGPT, PrefixGPT and the prompt bank so they decode the same way.
    """

    prompt_len = 0  # P: the context positions the model itself uses before the tokens (none for the base)

    @staticmethod
    def pick(logits, temperature=1.0, top_k=None):
        """The next ids (B, 1) from last-position logits (B, vocab): greedy for top_k=1, else sampled."""
        if top_k == 1:  # greedy: the argmax, nothing to sample
            return logits.argmax(dim=-1, keepdim=True)
        logits = logits.double()  # float64, so that a tiny temperature cannot underflow
        logits = (logits - logits.max(-1, keepdim=True).values) / temperature  # max at 0: no overflow either
        if top_k is not None:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
            logits = logits.masked_fill(logits < kth, -float("inf"))
        return torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, stop_id=None, **kw):
        """Extend idx (B, T) by max_new_tokens tokens, using a KV cache.

        top_k=1 is greedy decoding. With stop_id, rows that produced it keep producing it
        and decoding ends early once every row has. The rows are of one length: no `config.pad_id` in idx.
        """
        if not isinstance(max_new_tokens, numbers.Integral) or isinstance(max_new_tokens, bool) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer (0 returns idx), got {max_new_tokens!r}")
        check_ids(idx, self.config, extra=self.prompt_len + max_new_tokens)
        pad = self.config.pad_id
        if pad is not None and (idx == pad).any():  # a right pad sits before the new tokens; a left one is attended to
            b, t = (idx == pad).nonzero()[0].tolist()
            raise ValueError(f"row {b} of idx holds the pad id {pad} at position {t}: generate takes no padding "
                             "(right or left; there is no attention mask): generate rows of different lengths "
                             "separately")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature} (use top_k=1 for greedy)")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1 (1 is greedy), got {top_k}")
        cache = KVCache(self.config.n_layer)
        logits, _ = self(idx, cache=cache, **kw)
        cache.reserve(cache.length + max_new_tokens)  # later tokens write into it in place
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for step in range(max_new_tokens):
            next_id = self.pick(logits[:, -1, :], temperature, top_k)  # (B, 1)
            if stop_id is not None:
                next_id = next_id.masked_fill(done[:, None], stop_id)
                done |= next_id[:, 0] == stop_id
            idx = torch.cat([idx, next_id], dim=1)
            if step == max_new_tokens - 1 or stop_id is not None and done.all():
                break
            logits, _ = self(next_id, cache=cache, **kw)
        return idx


def check_ids(idx, config, extra: int = 0):
    """Raise a ValueError that names the problem if idx cannot go through the model (config: its GPTConfig)."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"token ids must be a 2-D tensor (batch, time), got {shape}")
    if idx.dtype not in (torch.long, torch.int):
        raise ValueError(f"token ids must be torch.long (or torch.int), got dtype {idx.dtype}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= config.vocab_size):
        bad = idx[(idx < 0) | (idx >= config.vocab_size)][0].item()
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {config.vocab_size})")
    if idx.size(1) + extra > config.block_size:
        detail = f" ({idx.size(1)} tokens + {extra} prompt/prefix/new positions)" if extra else ""
        raise ValueError(
            f"sequence of {idx.size(1) + extra} positions{detail} exceeds block_size={config.block_size}"
        )
