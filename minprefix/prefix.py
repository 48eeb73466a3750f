"""Prefix tuning (Li & Liang 2021): trainable rows at every block, not only at the input.

Two views, one a special case of the other, each with the block a reader can point to:

- Key/value prefix (`PrefixGPT` with `PrefixBlock`, as in Li & Liang's code and PEFT): at
  every layer, P free key rows and P free value rows are prepended inside attention. Layout
  of the whole prefix: (n_layer, 2, n_head, P, head_dim), index 0 keys, 1 values. 2*L*P*d numbers.
- Block-input prefix (`BlockInputPrefixGPT` with `BlockInputPrefixBlock`): P free rows are
  concatenated to the *input* of every block; the frozen block's own projections turn them
  into keys and values, and the rows are dropped after the block. L*P*d numbers. It equals a
  key/value prefix with K = W_k LN(p) + b_k and V = W_v LN(p) + b_v.

Both are trained directly (`DirectPrefix`) or through the MLP of Li & Liang §4.3
(`MLPPrefix`); see prompted.py. Positions: prefix rows take 0..P-1, real tokens start at P.
"""

import torch

from .generate import KVCache, check_ids
from .model import GPT, Block, attention_mask, lm_loss, run_block
from .prompted import PromptedGPT

LAYERS = ("all", "bottom", "top")  # which layers wear a prefix: every one, or the first or second half


class PrefixBlock:
    """A regular, frozen Block whose attention also sees P prefix key/value rows.

    The block is untouched: its attention already accepts key/value rows that come before the
    current tokens (for the KV cache). A prefix is such rows for P tokens that never existed,
    so on the first call the prefix is the "past"; later calls (generation) pass the cache,
    which already begins with the prefix. Not an nn.Module: it owns no parameters, only a
    reference to one of the base's blocks (the wearer registers the base once).
    """

    def __init__(self, block: Block):
        self.block = block

    def __call__(self, x, prefix_kv, past_kv=None):
        """x (B, T, C); prefix_kv (B, 2, n_head, P, head_dim). Returns x and the (k, v) to cache."""
        if past_kv is None:
            past_kv = (prefix_kv[:, 0].to(x.dtype), prefix_kv[:, 1].to(x.dtype))  # each (B, nh, P, hs)
        return self.block(x, past_kv)


class BlockInputPrefixBlock:
    """A regular, frozen Block whose input has P prefix rows in front, dropped after it.

    The block's own LayerNorm and projections turn the rows into keys and values; their
    outputs are thrown away, so the next block gets fresh rows of its own. Owns no parameters.
    """

    def __init__(self, block: Block):
        self.block = block

    def __call__(self, x, prefix_rows, past_kv=None):
        """x (B, T, C); prefix_rows (B, P, C). Returns x and the (k, v) to cache."""
        if past_kv is not None:  # generation: the cache already holds the prefix's keys and values
            return self.block(x, past_kv)
        P = prefix_rows.size(1)
        h, kv = self.block(torch.cat([prefix_rows.to(x.dtype), x], dim=1))  # (B, P + T, C): prefix first
        return h[:, P:], kv  # drop the prefix rows


class _PrefixGPT(PromptedGPT):
    """The forward pass both prefix views share: tokens from position P, a prefix block per layer."""

    block_type = None  # PrefixBlock or BlockInputPrefixBlock
    at_every_block = True

    def __init__(self, base: GPT, prompt_len: int, *, layers: str = "all", **kwargs):
        """layers: "all", or "bottom" / "top" (the first / second half) to wear the prefix at those only.

        The rows keep every layer's slot (one layout, one artifact format); a layer without the
        prefix runs its plain block, so its rows get no gradient and do nothing (P-tuning v2's
        depth ablation).
        """
        super().__init__(base, prompt_len, **kwargs)
        self.layers, self.wearing = layers, wearing(base.config.n_layer, layers)
        self.prefix_blocks = [self.block_type(b) if i in self.wearing else b for i, b in enumerate(self.base.blocks)]

    def forward(self, idx, targets=None, cache: KVCache | None = None, prompt=None):
        """idx (B, T) -> logits (B, T, vocab), and the loss.

        prompt: optional, a different prefix for each row, (B, *self.prompt().shape).
        """
        start = self.start(cache)
        check_ids(idx, self.config, extra=start)
        first = cache is None or cache.length == 0  # later calls find the prefix in the cache
        if prompt is None and first:
            prompt = self.prompt()
            prompt = prompt.expand(idx.size(0), *prompt.shape)
        x = self.base.embed(self.base.wte(idx), start)  # tokens take positions P, P+1, ...
        for i, block in enumerate(self.prefix_blocks):
            past = None if first else cache.layers[i]
            extra = (prompt[:, i] if first else None,) if i in self.wearing else ()  # a plain block takes none
            x, kv = run_block(self.base, block, x, *extra, past)
            if cache is not None:
                cache.layers[i] = kv
        logits = self.base.head(x)
        return logits, lm_loss(logits, targets)

    def merge(self):
        return self.from_rows(self.base, self.rows().detach(), layers=self.layers)


def wearing(n_layer: int, layers: str) -> set[int]:
    """The indices of the layers that wear the prefix."""
    spans = dict(zip(LAYERS, (range(n_layer), range(n_layer // 2), range(n_layer // 2, n_layer))))
    if layers not in spans or not spans[layers]:
        raise ValueError(f"`layers` {layers!r}: choose all, bottom or top (a half needs at least 2 layers)")
    return set(spans[layers])


class PrefixGPT(_PrefixGPT):
    """A frozen GPT with a key/value prefix at every layer. Only the prefix (or P' and the MLP) trains.

    reparam=None: direct, the prefix itself is the parameter. reparam="mlp": P' (P x k) ->
    MLP(hidden) -> (P, 2 * n_layer * d_model) -> the prefix. init: see PromptedGPT ("text":
    the keys and values the frozen base computes for a text, Li & Liang's real-word init).
    """

    block_type = PrefixBlock
    keys_and_values = True

    @staticmethod
    def width(config) -> int:
        return 2 * config.n_layer * config.d_model

    def rows_of_ids(self, ids: list[int]) -> torch.Tensor:
        return self.to_rows(base_kv(self.base, ids))

    def layout(self, rows):
        """(P, L * 2 * nh * hs) -> (L, 2, nh, P, hs)."""
        c = self.config
        return rows.view(rows.size(0), c.n_layer, 2, c.n_head, c.head_dim).permute(1, 2, 3, 0, 4)

    @staticmethod
    def to_rows(kv):
        """(L, 2, nh, P, hs) -> (P, L * 2 * nh * hs): one row of all layers' keys and values per position."""
        return kv.permute(3, 0, 1, 2, 4).reshape(kv.size(3), -1)

    def prefix_kv(self) -> torch.Tensor:
        """The current prefix: (n_layer, 2, n_head, P, head_dim)."""
        return self.prompt()

    @torch.no_grad()
    def as_cache(self, batch_size: int) -> KVCache:
        """The prefix as a KV cache: the bare base continues from it as from P earlier tokens.

        `base(idx, cache=model.as_cache(B))` gives this model's logits: each layer that wears the
        prefix holds its P keys and values (repeated for the B rows), so the tokens see them first
        and take positions P, P+1, ...; a layer without the prefix starts empty.
        """
        kv = self.prompt().detach()
        cache = KVCache(self.config.n_layer)
        for i in self.wearing:
            cache.layers[i] = tuple(kv[i, j].expand(batch_size, -1, -1, -1) for j in (0, 1))  # (B, nh, P, hs)
        return cache

    @classmethod
    def from_kv(cls, base: GPT, kv: torch.Tensor) -> "PrefixGPT":
        """A direct prefix holding the given (n_layer, 2, n_head, P, head_dim) keys and values."""
        c = base.config
        if kv.dim() != 5 or (kv.size(0), kv.size(1), kv.size(2), kv.size(4)) != (c.n_layer, 2, c.n_head, c.head_dim):
            raise ValueError(f"prefix keys/values must be (n_layer, 2, n_head, P, head_dim) = "
                             f"({c.n_layer}, 2, {c.n_head}, P, {c.head_dim}), got {tuple(kv.shape)}")
        return cls.from_rows(base, cls.to_rows(kv))


class BlockInputPrefixGPT(_PrefixGPT):
    """A frozen GPT with P rows concatenated to the input of every block, dropped after it.

    reparam=None: the (n_layer, P, d_model) rows are the parameter. With reparam="mlp",
    fully connected layers make them: P' (P x k) -> MLP(hidden) -> (P, n_layer * d_model).
    init "text": the inputs each block sees when the base reads a text.
    """

    block_type = BlockInputPrefixBlock

    @staticmethod
    def width(config) -> int:
        return config.n_layer * config.d_model

    def rows_of_ids(self, ids: list[int]) -> torch.Tensor:
        return self.to_rows(block_inputs(self.base, ids))

    def layout(self, rows):
        """(P, L * C) -> (L, P, C)."""
        return rows.view(rows.size(0), self.config.n_layer, self.config.d_model).transpose(0, 1)

    @staticmethod
    def to_rows(hidden):
        """(L, P, C) -> (P, L * C)."""
        return hidden.transpose(0, 1).reshape(hidden.size(1), -1)

    def block_rows(self) -> torch.Tensor:
        """The rows fed to each block: (n_layer, P, d_model)."""
        return self.prompt()

    @classmethod
    def from_hidden(cls, base: GPT, hidden: torch.Tensor) -> "BlockInputPrefixGPT":
        """A direct block-input prefix with the given (n_layer, P, d_model) rows."""
        c = base.config
        if hidden.dim() != 3 or hidden.size(0) != c.n_layer or hidden.size(2) != c.d_model:
            raise ValueError(f"block-input rows must be (n_layer={c.n_layer}, P, d_model={c.d_model}), "
                             f"got {tuple(hidden.shape)}")
        return cls.from_rows(base, cls.to_rows(hidden))

    def to_kv(self) -> torch.Tensor:
        """The equivalent key/value prefix: each frozen block's K and V of its rows, (L, 2, nh, P, hs)."""
        return torch.stack([rows_to_kv(block, rows) for block, rows in zip(self.base.blocks, self.block_rows())])


def rows_to_kv(block: Block, rows: torch.Tensor) -> torch.Tensor:
    """What a block's attention makes of P input rows (P, C): K = W_k LN(p) + b_k, V = W_v LN(p) + b_v.

    Returns (2, n_head, P, head_dim), index 0 keys, 1 values: the key/value prefix equal to them.
    """
    P, C = rows.shape
    n_head = block.attn.n_head
    k, v = block.attn.c_attn(block.ln_1(rows)).split(C, dim=1)[1:]  # (P, C) each; the queries are not needed
    return torch.stack([k, v]).view(2, P, n_head, C // n_head).transpose(1, 2)  # (2, nh, P, hs)


def base_kv(base: GPT, ids: list[int]) -> torch.Tensor:
    """The keys and values the frozen base computes for a text: (n_layer, 2, n_head, T, head_dim)."""
    cache = KVCache(base.config.n_layer)
    with torch.no_grad():
        base(torch.tensor([ids], device=base.wte.weight.device), cache=cache)
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in cache.layers])


def block_inputs(base: GPT, ids: list[int]) -> torch.Tensor:
    """The input of every block for a text run alone through the base: (n_layer, T, d_model)."""
    with torch.no_grad():
        x = base.embed(base.wte(torch.tensor([ids], device=base.wte.weight.device)))
        out = []
        for block in base.blocks:
            out.append(x[0])
            x, _ = block(x)
    return torch.stack(out)


@torch.no_grad()
def prefix_attention_share(model: _PrefixGPT, idx: torch.Tensor) -> list[float]:
    """Per layer, the share of attention that the tokens of idx (B, T) give the prefix positions.

    A prefix's attention output mixes an average over the prefix values with the tokens' own
    average; this is the mixing weight, averaged over rows, heads and tokens (0 at a layer that
    wears no prefix). The keys come from a KV cache filled by one forward pass, the queries from
    each block's ln_1 output, and the weights are recomputed with the bottom-right mask.
    """
    base, T = model.base, idx.size(1)
    queries = []
    hooks = [b.ln_1.register_forward_hook(lambda module, args, out: queries.append(out)) for b in base.blocks]
    cache = KVCache(base.config.n_layer)
    try:
        model(idx, cache=cache)
    finally:
        for hook in hooks:
            hook.remove()
    shares = []
    for block, h, (k, _) in zip(base.blocks, queries, cache.layers):
        h = h[:, -T:]  # a block-input prefix runs its rows through ln_1 too: keep the tokens' queries
        B, _, C = h.shape
        q = block.attn.c_attn(h)[..., :C].view(B, T, block.attn.n_head, -1).transpose(1, 2)  # (B, nh, T, hs)
        scores = (q @ k.transpose(-1, -2)) / q.size(-1) ** 0.5  # (B, nh, T, P + T)
        weights = scores.masked_fill(~attention_mask(T, k.size(2), idx.device), float("-inf")).softmax(-1)
        shares.append(weights[..., :k.size(2) - T].sum(-1).mean().item())
    return shares
