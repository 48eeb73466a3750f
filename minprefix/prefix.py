"""Prefix tuning (Li & Liang 2021): trainable rows at every block, not only at the input.

Two views, one a special case of the other:

- Key/value prefix (`PrefixGPT`, as in Li & Liang's code and PEFT): at every layer, P free
  key rows and P free value rows are prepended inside attention. Layout of the whole
  prefix: (n_layer, 2, n_head, P, head_dim), index 0 keys, 1 values. 2*L*P*d numbers.
- Block-input prefix (`BlockInputPrefixGPT`, the seed text's pseudo-code): P free rows are
  concatenated to the *input* of every block; the frozen block's own projections turn
  them into keys and values, and the rows are dropped after the block. L*P*d numbers.
  It equals a key/value prefix with K = W_k LN(p) + b_k and V = W_v LN(p) + b_v.

Both can be trained directly or through the reparameterization of Li & Liang §4.3:
P' (P x k) -> Linear(k, hidden) -> tanh -> Linear(hidden, width) -> the prefix. Optimizing
the prefix directly was found unstable and sensitive to initialization; the MLP is a
bottleneck that smooths it. After training only its output is kept (`merge`).

Positions: prefix rows take 0..P-1 and the real tokens start at P.
"""

import torch
import torch.nn as nn

from .model import GPT, Block, Generator, KVCache, check_ids, lm_loss, run_block
from .soft_prompt import text_ids
from .world import Tokenizer


class PrefixBlock(nn.Module):
    """A regular, frozen Block whose attention also sees P prefix key/value rows.

    The block itself is untouched: its attention already accepts key/value rows that come
    before the current tokens (for the KV cache). A prefix is such rows for P tokens that
    never existed, so on the first call the prefix is the "past". Later calls (generation)
    pass the cache, which already begins with the prefix.
    """

    def __init__(self, block: Block):
        super().__init__()
        self.block = block

    def forward(self, x, prefix_kv, past_kv=None):
        """x (B, T, C); prefix_kv (B, 2, n_head, P, head_dim). Returns x and the (k, v) to cache."""
        if past_kv is None:
            past_kv = (prefix_kv[:, 0], prefix_kv[:, 1])  # each (B, nh, P, hs)
        return self.block(x, past_kv)


class PrefixMLP(nn.Sequential):
    """Li & Liang §4.3: Linear(k -> hidden) -> tanh -> Linear(hidden -> width), applied per row."""

    def __init__(self, k: int, hidden: int, width: int):
        super().__init__(nn.Linear(k, hidden), nn.Tanh(), nn.Linear(hidden, width))


class _PrefixBase(nn.Module, Generator):
    """What the two prefix views share: the frozen base, the parametrization, merge."""

    def __init__(self, base: GPT, prefix_len: int, width: int, reparam_dim, hidden, seed: int):
        super().__init__()
        if prefix_len < 0 or prefix_len >= base.config.block_size:
            raise ValueError(f"prefix_len={prefix_len} must be in [0, block_size={base.config.block_size})")
        self.base = base.freeze()
        self.prefix_len = prefix_len
        self.reparam_dim, self.hidden = reparam_dim, hidden
        like = {"device": base.wte.weight.device, "dtype": base.wte.weight.dtype}
        if reparam_dim is None:  # direct: the prefix itself is the parameter
            self.prefix = nn.Parameter(torch.zeros(prefix_len, width, **like))
        else:
            with torch.random.fork_rng():  # seeded init of P' and the MLP, the global RNG untouched
                torch.manual_seed(seed)
                self.prefix_input = nn.Parameter(torch.randn(prefix_len, reparam_dim).to(**like))  # P'
                self.mlp = PrefixMLP(reparam_dim, hidden, width).to(**like)

    @property
    def config(self):
        return self.base.config

    def prompt_rows(self) -> int:
        return self.prefix_len

    def rows(self) -> torch.Tensor:
        """The prefix as one (P, width) matrix: the parameter itself, or MLP(P')."""
        return self.prefix if self.reparam_dim is None else self.mlp(self.prefix_input)

    @classmethod
    def _direct(cls, base: GPT, tensor: torch.Tensor, prefix_len: int):
        """A direct prefix holding `tensor` (in the layout of `prompt()`)."""
        model = cls(base, prefix_len, init="zero")
        with torch.no_grad():
            model.prefix.copy_(model._to_rows(tensor))
        return model

    def merge(self):
        """The stored form: a direct prefix holding the current one (no MLP), giving the same logits."""
        return self._direct(self.base, self.prompt().detach(), self.prefix_len)

    def _fill(self, init: str, text: str | None, seed: int, text_rows):
        """Set the starting prefix. text_rows(ids) -> (P, width) rows the base computes for ids."""
        with torch.no_grad():
            if init == "zero":
                if self.reparam_dim is None:
                    self.prefix.zero_()
                else:  # last layer zero: the prefix starts at 0 and its weights still get gradients
                    nn.init.zeros_(self.mlp[2].weight)
                    nn.init.zeros_(self.mlp[2].bias)
            elif init == "text":
                if self.reparam_dim is not None:
                    raise ValueError("init='text' sets the prefix itself: use a direct prefix "
                                     "(no reparam_dim), or init='random' with the MLP")
                if not isinstance(text, str):
                    raise ValueError("init='text' needs text=...")
                tok = Tokenizer()
                if self.config.vocab_size != tok.vocab_size:
                    raise ValueError(f"init='text' encodes with minprefix's character tokenizer, but this base "
                                     f"has {self.config.vocab_size} tokens: use PrefixGPT.from_kv instead")
                self.prefix.copy_(text_rows(text_ids(tok, text, self.prefix_len)))
            elif init == "random":
                if self.reparam_dim is None and self.prefix_len:  # noise at the scale of real activations
                    real = text_rows([i % self.config.vocab_size for i in range(self.prefix_len)])
                    g = torch.Generator().manual_seed(seed)
                    self.prefix.copy_(torch.randn(real.shape, generator=g).to(real) * real.std())
            else:
                raise ValueError(f"unknown init {init!r}; choose zero, random or text")


def base_kv(base: GPT, ids: list[int]) -> torch.Tensor:
    """The keys and values the frozen base computes for a text: (n_layer, 2, n_head, T, head_dim)."""
    cache = KVCache(base.config.n_layer)
    with torch.no_grad():
        base(torch.tensor([ids], device=base.wte.weight.device), cache=cache)
    return torch.stack([torch.stack([k[0], v[0]]) for k, v in cache.layers])


class PrefixGPT(_PrefixBase):
    """A frozen GPT with a key/value prefix at every layer. Only the prefix (or P' and the MLP) trains.

    reparam_dim=None: direct, the (n_layer, 2, n_head, P, head_dim) prefix is the parameter.
    reparam_dim=k: P' (P x k) -> MLP(hidden) -> (P, 2 * n_layer * d_model) -> the prefix.
    init: "zero", "random" (normal at the scale of the base's own keys and values) or "text"
    (the keys and values the frozen base computes for `text`: Li & Liang's real-word init).
    """

    def __init__(self, base: GPT, prefix_len: int, reparam_dim: int | None = None, hidden: int = 512,
                 init: str = "random", text: str | None = None, seed: int = 0):
        c = base.config
        super().__init__(base, prefix_len, 2 * c.n_layer * c.d_model, reparam_dim, hidden, seed)
        self.blocks = nn.ModuleList(PrefixBlock(b) for b in base.blocks)
        self._fill(init, text, seed, lambda ids: self._to_rows(base_kv(base, ids)))

    def _to_rows(self, kv):
        """(L, 2, nh, P, hs) -> (P, L * 2 * nh * hs): one row of all layers' keys and values per position."""
        return kv.permute(3, 0, 1, 2, 4).reshape(kv.size(3), -1)

    @classmethod
    def from_kv(cls, base: GPT, kv: torch.Tensor) -> "PrefixGPT":
        """A direct prefix holding the given (n_layer, 2, n_head, P, head_dim) keys and values."""
        c = base.config
        want = (c.n_layer, 2, c.n_head, kv.size(3) if kv.dim() == 5 else -1, c.head_dim)
        if kv.dim() != 5 or tuple(kv.shape) != want:
            raise ValueError(f"prefix keys/values must be (n_layer, 2, n_head, P, head_dim) = "
                             f"{want}, got {tuple(kv.shape)}")
        return cls._direct(base, kv, kv.size(3))

    def prefix_kv(self) -> torch.Tensor:
        """The current prefix: (n_layer, 2, n_head, P, head_dim)."""
        c = self.config
        rows = self.rows().view(self.prefix_len, c.n_layer, 2, c.n_head, c.head_dim)
        return rows.permute(1, 2, 3, 0, 4)  # (L, 2, nh, P, hs)

    prompt = prefix_kv  # the per-task tensor a prompt bank stacks

    def forward(self, idx, targets=None, cache: KVCache | None = None, prompt=None):
        """idx (B, T) -> logits (B, T, vocab), and the loss.

        prompt: optional (B, n_layer, 2, n_head, P, head_dim), a different prefix for each row.
        """
        first = cache is None or cache.length == 0
        start = self.prefix_len if first else cache.length
        check_ids(idx, self.config, extra=start)
        kv = self.prefix_kv().expand(idx.size(0), -1, -1, -1, -1, -1) if prompt is None else prompt
        x = self.base.embed(self.base.wte(idx), start)  # tokens take positions P, P+1, ...
        for i, block in enumerate(self.blocks):
            past = None if first else cache.layers[i]
            x, kv_i = run_block(self.base, block, x, kv[:, i].to(x.dtype), past)
            if cache is not None:
                cache.layers[i] = kv_i
        logits = self.base.head(x)
        return logits, lm_loss(logits, targets)


class BlockInputPrefixGPT(_PrefixBase):
    """The seed's prefix: P rows concatenated to the input of every block, dropped after it.

    reparam_dim=None: the (n_layer, P, d_model) rows are the parameter. With reparam_dim=k the
    seed's "fully connected layers" make them: P' (P x k) -> MLP(hidden) -> (P, n_layer * d_model).
    """

    def __init__(self, base: GPT, prefix_len: int, reparam_dim: int | None = None, hidden: int = 512,
                 init: str = "random", text: str | None = None, seed: int = 0):
        c = base.config
        super().__init__(base, prefix_len, c.n_layer * c.d_model, reparam_dim, hidden, seed)
        self._fill(init, text, seed, lambda ids: self._to_rows(block_inputs(base, ids)))

    def _to_rows(self, hidden):
        """(L, P, C) -> (P, L * C)."""
        return hidden.permute(1, 0, 2).reshape(hidden.size(1), -1)

    @classmethod
    def from_hidden(cls, base: GPT, hidden: torch.Tensor) -> "BlockInputPrefixGPT":
        """A direct block-input prefix with the given (n_layer, P, d_model) rows."""
        c = base.config
        if hidden.dim() != 3 or hidden.size(0) != c.n_layer or hidden.size(2) != c.d_model:
            raise ValueError(f"block-input rows must be (n_layer={c.n_layer}, P, d_model={c.d_model}), "
                             f"got {tuple(hidden.shape)}")
        return cls._direct(base, hidden, hidden.size(1))

    def block_rows(self) -> torch.Tensor:
        """The rows fed to each block: (n_layer, P, d_model)."""
        return self.rows().view(self.prefix_len, self.config.n_layer, self.config.d_model).transpose(0, 1)

    prompt = block_rows

    def to_kv(self) -> torch.Tensor:
        """The equivalent key/value prefix: each frozen block's K and V of its rows, (L, 2, nh, P, hs)."""
        c, out = self.config, []
        for block, p in zip(self.base.blocks, self.block_rows()):
            k, v = block.attn.c_attn(block.ln_1(p)).split(c.d_model, dim=1)[1:]  # (P, C) each
            out.append(torch.stack([k, v]).view(2, self.prefix_len, c.n_head, c.head_dim).transpose(1, 2))
        return torch.stack(out)

    def forward(self, idx, targets=None, cache: KVCache | None = None, prompt=None):
        """idx (B, T) -> logits (B, T, vocab), and the loss. prompt: optional (B, n_layer, P, d_model)."""
        P = self.prefix_len
        first = cache is None or cache.length == 0
        start = P if first else cache.length
        check_ids(idx, self.config, extra=start)
        rows = self.block_rows().expand(idx.size(0), -1, -1, -1) if prompt is None else prompt
        x = self.base.embed(self.base.wte(idx), start)
        for i, block in enumerate(self.base.blocks):
            if first:
                h = torch.cat([rows[:, i].to(x.dtype), x], dim=1)  # (B, P + T, C): prefix rows first
                h, kv = run_block(self.base, block, h)
                x = h[:, P:]  # drop the prefix rows; the next block gets its own
            else:
                x, kv = run_block(self.base, block, x, cache.layers[i])
            if cache is not None:
                cache.layers[i] = kv
        logits = self.base.head(x)
        return logits, lm_loss(logits, targets)


def block_inputs(base: GPT, ids: list[int]) -> torch.Tensor:
    """The input of every block for a text run alone through the base: (n_layer, T, d_model)."""
    with torch.no_grad():
        x = base.embed(base.wte(torch.tensor([ids], device=base.wte.weight.device)))
        out = []
        for block in base.blocks:
            out.append(x[0])
            x, _ = block(x)
    return torch.stack(out)
