"""Soft prompts (Lester et al. 2021): trainable rows in front of the token embeddings.

A hard prompt is a choice of tokens, and token ids have no gradient. A soft prompt drops the
constraint that each row be the embedding of some token: the P rows are free vectors, trained
by backpropagation through the frozen model. They take positions 0..P-1; the real tokens
start at position P.
"""

import torch
import torch.nn as nn

from .model import GPT, Generator, KVCache, check_ids, lm_loss
from .world import Tokenizer


def text_ids(tok: Tokenizer, text: str, n: int) -> list[int]:
    """n token ids from a text, repeating it if it is shorter than n, cutting it if longer."""
    ids = tok.encode(text)
    if not ids:
        raise ValueError("initialization text is empty")
    return (ids * (n // len(ids) + 1))[:n]


class SoftPromptEmbedding(nn.Module):
    """The input layer of prompt tuning: a (prompt_len, d_model) tensor put before the tokens."""

    def __init__(self, prompt_len: int, d_model: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(prompt_len, d_model))

    @property
    def prompt_len(self) -> int:
        return self.weight.size(0)

    def forward(self, tok_emb, prompt=None):
        """tok_emb (B, T, C) -> (B, P + T, C). prompt: (B, P, C) rows to use instead (one per row)."""
        B = tok_emb.size(0)
        prompt = self.weight.expand(B, -1, -1) if prompt is None else prompt
        return torch.cat([prompt.to(tok_emb.dtype), tok_emb], dim=1)


class SoftPromptGPT(nn.Module, Generator):
    """A frozen GPT wearing a soft prompt. Only `embedding.weight` trains.

    init: "random" (normal, scaled to the std of the token table), "vocab" (rows of randomly
    sampled characters' embeddings) or "text" (the embeddings of `text`, e.g. an instruction).
    """

    def __init__(self, base: GPT, prompt_len: int, init: str = "vocab", text: str | None = None,
                 seed: int = 0):
        super().__init__()
        if prompt_len < 1:
            raise ValueError(f"prompt_len must be at least 1, got {prompt_len}")
        if prompt_len >= base.config.block_size:
            raise ValueError(f"prompt_len={prompt_len} leaves no room in block_size={base.config.block_size}")
        self.base = base.freeze()
        self.embedding = SoftPromptEmbedding(prompt_len, base.config.d_model)
        g = torch.Generator().manual_seed(seed)
        table = base.wte.weight.detach().cpu().float()
        with torch.no_grad():
            if init == "random":
                rows = torch.randn(prompt_len, table.size(1), generator=g) * table.std()
            elif init == "vocab":  # characters only, never <pad>/<eos>
                rows = table[torch.randint(2, table.size(0), (prompt_len,), generator=g)]
            elif init == "text":
                if text is None:
                    raise ValueError("init='text' needs text=...")
                rows = table[text_ids(Tokenizer(), text, prompt_len)]
            else:
                raise ValueError(f"unknown init {init!r}; choose random, vocab or text")
            self.embedding.weight.copy_(rows)
        self.embedding.to(base.wte.weight.device, base.wte.weight.dtype)

    @classmethod
    def from_embeddings(cls, base: GPT, rows: torch.Tensor) -> "SoftPromptGPT":
        """A soft prompt with the given (prompt_len, d_model) rows."""
        if rows.dim() != 2 or rows.size(1) != base.config.d_model:
            raise ValueError(f"soft prompt rows must be (prompt_len, {base.config.d_model}), got {tuple(rows.shape)}")
        model = cls(base, rows.size(0), init="random")
        with torch.no_grad():
            model.embedding.weight.copy_(rows)
        return model

    @property
    def config(self):
        return self.base.config

    @property
    def prompt_len(self) -> int:
        return self.embedding.prompt_len

    def prompt_rows(self) -> int:
        return self.prompt_len

    def prompt(self) -> torch.Tensor:
        """The trained tensor itself: (prompt_len, d_model)."""
        return self.embedding.weight

    def forward(self, idx, targets=None, cache: KVCache | None = None, prompt=None):
        """idx (B, T) -> logits (B, T, vocab) for the real tokens only, and the loss.

        prompt: optional (B, prompt_len, d_model), a different soft prompt for each row.
        With a cache, the prompt goes in on the first call only; later calls extend it.
        """
        first = cache is None or cache.length == 0
        check_ids(idx, self.config, extra=self.prompt_len if first else cache.length)
        x = self.base.wte(idx)  # (B, T, C)
        if first:
            x = self.embedding(x, prompt)  # (B, P + T, C)
        logits = self.base.run(x, cache)
        if first:
            logits = logits[:, self.prompt_len :]  # drop the prompt's own outputs
        return logits, lm_loss(logits, targets)
