"""Soft prompts (Lester et al. 2021): trainable rows in front of the token embeddings.

A hard prompt is a choice of tokens, and token ids have no gradient. A soft prompt drops the
constraint that each row be the embedding of some token: the P rows are free vectors, trained
by backpropagation through the frozen model. They take positions 0..P-1; the real tokens
start at position P. The rows can also be a small network's output: Li & Liang's MLP
(reparam="mlp"), or P-tuning's prompt encoder (Liu et al. 2021; reparam="ptuning").
"""

import torch

from .generate import KVCache, check_ids
from .model import GPT, lm_loss
from .prompted import PromptedGPT


class SoftPromptEmbedding:
    """The input layer of prompt tuning: P soft-prompt rows put before the T token embeddings.

    It owns no parameters: the rows come from the wearer's `DirectPrefix`, `MLPPrefix` or `PTuningEncoder`.
    """

    def __call__(self, tok_emb: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        """tok_emb (B, T, C), prompt (B, P, C) -> (B, P + T, C)."""
        return torch.cat([prompt.to(tok_emb.dtype), tok_emb], dim=1)


class SoftPromptGPT(PromptedGPT):
    """A frozen GPT wearing a soft prompt of prompt_len rows; only the rows (or the network making them) train.

    init (see PromptedGPT): "vocab" by default (embeddings of random tokens, Lester et al.'s
    sampled-vocabulary init), "random", "zero" or "text".
    """

    default_init = "vocab"
    embedding = SoftPromptEmbedding()

    @staticmethod
    def width(config) -> int:
        return config.d_model

    def rows_of_ids(self, ids: list[int]) -> torch.Tensor:
        """The embeddings of real tokens: (len(ids), d_model)."""
        return self.base.wte.weight.detach()[torch.tensor(ids, dtype=torch.long)]

    def layout(self, rows):
        return rows  # (P, d_model) already

    @staticmethod
    def to_rows(prompt):
        return prompt

    @classmethod
    def from_embeddings(cls, base: GPT, rows: torch.Tensor) -> "SoftPromptGPT":
        """A soft prompt with the given (prompt_len, d_model) rows."""
        return cls.from_rows(base, rows)

    def forward(self, idx, targets=None, cache: KVCache | None = None, prompt=None):
        """idx (B, T) -> logits (B, T, vocab) for the real tokens only, and the loss.

        prompt: optional (B, prompt_len, d_model), a different soft prompt for each row.
        With a cache, the prompt goes in on the first call only; later calls extend it.
        """
        first = cache is None or cache.length == 0
        check_ids(idx, self.config, extra=self.start(cache))
        x = self.base.wte(idx)  # (B, T, C)
        if first:
            prompt = self.prompt().expand(idx.size(0), -1, -1) if prompt is None else prompt
            x = self.embedding(x, prompt)  # (B, P + T, C)
        logits = self.base.run(x, cache)
        if first:
            logits = logits[:, self.prompt_len :]  # drop the prompt's own outputs
        return logits, lm_loss(logits, targets)
