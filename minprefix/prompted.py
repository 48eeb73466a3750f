"""What every prompt method shares: a frozen GPT wearing P trainable rows.

The rows are a (P, width) matrix. Where they enter is what tells the methods apart (a soft
prompt before the token embeddings, a prefix at every block); how they are made is one of
two small modules, the same for every method:

- `DirectPrefix`: the rows themselves are the parameter.
- `MLPPrefix` (Li & Liang 2021, §4.3): the rows are an MLP's output, P' (P x k) ->
  Linear(k, hidden) -> tanh -> Linear(hidden, width). They found optimizing the rows directly
  unstable and sensitive to initialization; the MLP smooths it. On a soft prompt this is
  P-tuning's prompt encoder (Liu et al. 2021): the prompt is produced by a small network.

After training only the rows are needed: `merge()` swaps the MLP for a `DirectPrefix` holding
its output, and gives the same logits.
"""

import torch
import torch.nn as nn

from .model import GPT, Generator

MLP_HIDDEN = 512  # hidden width of the reparameterization MLP, as in Li & Liang's code
INITS = ("zero", "random", "vocab", "text")  # how a direct prefix can start; the MLP: zero or random


class DirectPrefix(nn.Module):
    """P trainable rows, stored as they are. forward() -> (P, width)."""

    def __init__(self, rows: torch.Tensor):
        super().__init__()
        self.rows = nn.Parameter(rows.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.rows


class MLPPrefix(nn.Module):
    """P rows made by an MLP from a smaller P' (Li & Liang §4.3). forward() -> (P, width).

    P' is (P, k); the MLP is Linear(k, hidden) -> tanh -> Linear(hidden, width), row by row.
    zero_last=True starts the last layer at zero (as PEFT does), so the rows start at 0 while
    every weight still gets a gradient.
    """

    def __init__(self, prefix_len: int, k: int, hidden: int, width: int, seed: int = 0, zero_last: bool = False):
        super().__init__()
        with torch.random.fork_rng():  # seeded, and the caller's random state untouched
            torch.manual_seed(seed)
            self.input = nn.Parameter(torch.randn(prefix_len, k))  # P'
            self.mlp = nn.Sequential(nn.Linear(k, hidden), nn.Tanh(), nn.Linear(hidden, width))
        if zero_last:
            nn.init.zeros_(self.mlp[2].weight)
            nn.init.zeros_(self.mlp[2].bias)

    def forward(self) -> torch.Tensor:
        return self.mlp(self.input)


class PromptedGPT(nn.Module, Generator):
    """A frozen base and P trainable rows. Subclasses say where the rows enter.

    reparam_dim=None: a `DirectPrefix`, started by init: "zero"; "random" (normal noise at the
    scale of the rows real tokens give); "vocab" (the rows of P randomly drawn token ids);
    "text" (the rows of init_ids, repeated or cut to P: e.g. an instruction, Li & Liang's
    real-word init). reparam_dim=k: an `MLPPrefix` with P' of width k, started by init "random"
    or "zero" (the MLP's last layer at zero). Text and vocab init are refused with the MLP:
    its output is not free to set, and fitting the MLP to given rows is a training run of its own.
    Token ids, not text: the caller encodes with whatever tokenizer the base was trained with.
    """

    default_init = "random"

    def __init__(self, base: GPT, prompt_len: int, reparam_dim: int | None = None, hidden: int = MLP_HIDDEN,
                 init: str | None = None, init_ids: list[int] | None = None, seed: int = 0):
        super().__init__()
        if not 0 <= prompt_len < base.config.block_size:
            raise ValueError(f"prompt length {prompt_len} must be in [0, block_size={base.config.block_size})")
        self.base = base.freeze()
        self.prompt_len = prompt_len
        init = init or (self.default_init if reparam_dim is None else "random")
        like = {"device": base.wte.weight.device, "dtype": base.wte.weight.dtype}
        if reparam_dim is None:
            self.rows = DirectPrefix(self._initial_rows(init, init_ids, seed)).to(**like)
        elif init in ("zero", "random"):
            width = self.width(base.config)
            self.rows = MLPPrefix(prompt_len, reparam_dim, hidden, width, seed, zero_last=init == "zero").to(**like)
        else:
            raise ValueError(f"init {init!r} sets the rows themselves, but with the MLP they are its output: "
                             "use a direct method for it, or init 'random' or 'zero'")

    def _initial_rows(self, init: str, init_ids, seed: int) -> torch.Tensor:
        """The starting (P, width) rows of a direct prefix."""
        P, V = self.prompt_len, self.config.vocab_size
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose from {', '.join(INITS)}")
        if init == "text":
            if not init_ids:
                raise ValueError("init 'text' needs the token ids of a non-empty text")
            if min(init_ids) < 0 or max(init_ids) >= V:
                raise ValueError(f"init text has token ids outside the base's vocabulary [0, {V})")
            return self.rows_of_ids((list(init_ids) * (P // len(init_ids) + 1))[:P])
        if init == "zero" or P == 0:
            return torch.zeros(P, self.width(self.config))
        g = torch.Generator().manual_seed(seed)
        rows = self.rows_of_ids(torch.randint(V, (P,), generator=g).tolist())  # P random tokens' rows
        if init == "random":  # noise at the scale of those rows
            return torch.randn(rows.shape, generator=g).to(rows) * rows.std()
        return rows

    @classmethod
    def from_rows(cls, base: GPT, rows: torch.Tensor, **kwargs):
        """A direct prefix holding the given (P, width) rows (kwargs: the subclass's own, e.g. layers)."""
        width = cls.width(base.config)
        if rows.dim() != 2 or rows.size(1) != width:
            raise ValueError(f"{cls.__name__} rows must be (P, {width}), got {tuple(rows.shape)}")
        model = cls(base, rows.size(0), init="zero", **kwargs)
        model.rows = DirectPrefix(rows.to(model.rows.rows))
        return model

    def merge(self):
        """The stored form: the MLP (if any) swapped for a DirectPrefix holding its output. Same logits."""
        return self.from_rows(self.base, self.rows().detach())

    def train(self, mode: bool = True):
        """Training mode for the method; the frozen base always runs in eval mode (no dropout noise)."""
        super().train(mode)
        self.base.eval()
        return self

    @property
    def config(self):
        return self.base.config

    def prompt_rows(self) -> int:
        return self.prompt_len

    def prompt(self) -> torch.Tensor:
        """The rows in the layout the model uses them (per subclass): what a prompt bank stacks."""
        return self.layout(self.rows())

    def start(self, cache) -> int:
        """Position of the first token: P on the first call, the cache length after that."""
        return self.prompt_len if cache is None or cache.length == 0 else cache.length

    # Each subclass defines: width(config), the numbers in one row; rows_of_ids(ids), the
    # (len(ids), width) rows the base itself computes for real tokens; layout(rows), the rows
    # as the model uses them; to_rows(prompt), its inverse; forward(idx, targets, cache, prompt).
