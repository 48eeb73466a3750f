"""What every prompt method shares: a frozen GPT wearing P trainable rows.

The rows are a (P, width) matrix. Where they enter is what tells the methods apart (a soft
prompt before the token embeddings, a prefix at every block); how they are made is one of
three small modules, the row makers, the same for every method (`model.row_maker`; a network
that makes them while training is the method's `reparam`):

- `DirectPrefix`: the rows themselves are the parameter.
- `MLPPrefix` (Li & Liang 2021, §4.3): the rows are an MLP's output, P' (P x k) ->
  Linear(k, hidden) -> tanh -> Linear(hidden, width). They found optimizing the rows directly
  unstable and sensitive to initialization; the MLP smooths it.
- `PTuningEncoder` (Liu et al. 2021, P-tuning's prompt encoder as PEFT builds it): a (P, width)
  embedding table -> Linear(width, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU ->
  Linear(hidden, width). Same idea, another network: no narrower P' of width k, two hidden layers, ReLU.

After training only the rows are needed: `merge()` swaps the network for a `DirectPrefix` holding
its output, and gives the same logits.
"""

import torch
import torch.nn as nn

from .generate import Generator  # the base is a GPT (model.py), typed nn.Module here: this floor is below it

MLP_HIDDEN = 512  # hidden width of the reparameterization MLP, as in Li & Liang's code
INITS = ("zero", "random", "normal", "vocab", "text")  # how a direct prefix can start
NETWORK_INITS = ("random", "zero")  # how a network that makes the rows can start (zero: its last layer)
REPARAMS = ("mlp", "ptuning")  # the networks that can make the rows while training (`reparam`)
MLP_FORMS = ("shared", "separate", "linear", "separate-linear")  # MLPPrefix: Li & Liang's, lesson 5's ablations


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
    every weight still gets a gradient. Three forms exist for lesson 5's ablations, each removing
    one candidate reason the MLP helps:
    form="separate" makes the two halves of every 2 * `chunk` numbers of a row from two
    (P', MLP) pairs that share nothing: on a key/value prefix with chunk = d_model, the keys
    and the values of each layer, where the shared MLP makes both from one row of P' (the
    sharing of Le et al. 2025, removed);
    form="linear" drops the tanh: the rows are a linear map of P' (sharing kept, only
    over-parameterization left, Arora et al. 2018);
    form="separate-linear" drops both: keys and values from two linear maps.
    """

    def __init__(self, prompt_len: int, k: int, hidden: int, width: int, seed: int = 0, zero_last: bool = False,
                 form: str = "shared", chunk: int | None = None):
        super().__init__()
        self.check_form(form, width, chunk)
        self.chunk = chunk if form.startswith("separate") else None
        nets, out = (2, width // 2) if self.chunk else (1, width)
        act = nn.Identity() if form.endswith("linear") else nn.Tanh()
        with torch.random.fork_rng():  # seeded, and the caller's random state untouched
            torch.manual_seed(seed)
            self.input = nn.Parameter(torch.randn(prompt_len, k))  # P'
            self.mlp = nn.Sequential(nn.Linear(k, hidden), act, nn.Linear(hidden, out))
            if nets == 2:  # the second half's own P' and MLP
                self.input_2 = nn.Parameter(torch.randn(prompt_len, k))
                self.mlp_2 = nn.Sequential(nn.Linear(k, hidden), act, nn.Linear(hidden, out))
        for last in [self.mlp[2]] + ([self.mlp_2[2]] if nets == 2 else []):
            if zero_last:
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)

    def forward(self) -> torch.Tensor:
        rows = self.mlp(self.input)
        if self.chunk is None:
            return rows
        P, c = rows.size(0), self.chunk  # interleave: chunk numbers of the first, chunk of the second, ...
        return torch.stack((rows.view(P, -1, c), self.mlp_2(self.input_2).view(P, -1, c)), 2).reshape(P, -1)

    @staticmethod
    def check_form(form: str, width: int, chunk: int | None):
        if form not in MLP_FORMS:
            raise ValueError(f"`mlp_form` {form!r} is not one of: {', '.join(MLP_FORMS)}")
        if form.startswith("separate") and (chunk is None or width % (2 * chunk)):
            raise ValueError(f"form {form!r} splits rows of width {width} into halves of chunk {chunk} numbers: "
                             "it needs a chunk that divides width / 2 (a key/value prefix: chunk = d_model)")


class PTuningEncoder(nn.Module):
    """P rows made by P-tuning's prompt encoder, MLP variant (Liu et al. 2021, §3.2). forward() -> (P, width).

    An embedding table E of the P virtual tokens, (P, width), goes row by row through
    Linear(width, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU -> Linear(hidden, width):
    PEFT's PromptEncoder with encoder_reparameterization_type="MLP", no dropout (the paper's 2021
    encoder, a BiLSTM before a ReLU MLP, is PEFT's "LSTM" variant, not this). Unlike Li & Liang's
    MLP (`MLPPrefix`) the input is as wide as the output (no narrower P' of width k), with two hidden layers,
    ReLU not tanh. Starts as PEFT does: E ~ N(0, 1), PyTorch's default Linear init. zero_last=True
    starts the last layer at zero, as in MLPPrefix. Numbers that train: P*width
    + (width*hidden + hidden) + (hidden*hidden + hidden) + (hidden*width + width).
    """

    def __init__(self, prompt_len: int, hidden: int, width: int, seed: int = 0, zero_last: bool = False):
        super().__init__()
        with torch.random.fork_rng():  # seeded, and the caller's random state untouched
            torch.manual_seed(seed)
            self.embedding = nn.Parameter(torch.randn(prompt_len, width))  # E, as nn.Embedding starts
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                     nn.Linear(hidden, width))
        if zero_last:
            nn.init.zeros_(self.mlp[4].weight)
            nn.init.zeros_(self.mlp[4].bias)

    def forward(self) -> torch.Tensor:
        return self.mlp(self.embedding)  # the P virtual tokens are ids 0..P-1: E itself, in order


class PromptedGPT(nn.Module, Generator):
    """A frozen base and P trainable rows. Subclasses say where the rows enter.

    reparam=None: a `DirectPrefix`, started by init: "zero"; "random" (normal noise at the
    scale of the rows real tokens give); "normal" (standard normal noise, whatever that scale: how
    PEFT starts a soft prompt's embedding); "vocab" (the rows of P randomly drawn token ids);
    "text" (the rows of init_ids, repeated or cut to P: e.g. an instruction, Li & Liang's
    real-word init). reparam="mlp": the rows are an `MLPPrefix`'s output, P' of width reparam_dim
    (default d_model) through a hidden layer of `hidden` (default 512); reparam="ptuning": a
    `PTuningEncoder`'s, whose table is as wide as the rows. A network starts by init "random" or
    "zero" (its last layer at zero).
    Token ids, not text: the caller encodes with whatever tokenizer the base was trained with.
    """

    default_init = "random"
    at_every_block = False  # True for a prefix: rows at every block, so a subset of layers can wear them
    keys_and_values = False  # True for a key/value prefix: each layer's d_model keys, then d_model values

    def __init__(self, base: nn.Module, prompt_len: int, *, reparam: str | None = None, reparam_dim: int | None = None,
                 hidden: int | None = None, init: str | None = None, init_ids: list[int] | None = None, seed: int = 0,
                 mlp_form: str = "shared"):
        super().__init__()
        self.check_options(reparam, reparam_dim, hidden, init, mlp_form)
        self.check_prompt_len(base.config, prompt_len)
        self.base = base.freeze()
        self.prompt_len = prompt_len
        init, width, hidden = init or self.inits(reparam)[0], self.width(base.config), hidden or MLP_HIDDEN
        if reparam is None:
            maker = DirectPrefix(self._initial_rows(init, init_ids, seed))
        elif reparam == "ptuning":
            maker = PTuningEncoder(prompt_len, hidden, width, seed, zero_last=init == "zero")
        else:
            maker = MLPPrefix(prompt_len, reparam_dim or base.config.d_model, hidden, width, seed,
                              zero_last=init == "zero", form=mlp_form, chunk=base.config.d_model)
        self.row_maker = maker.to(device=base.wte.weight.device, dtype=base.wte.weight.dtype)

    def rows(self) -> torch.Tensor:
        """The (P, width) rows, as the row maker makes them now."""
        return self.row_maker()

    def _initial_rows(self, init: str, init_ids, seed: int) -> torch.Tensor:
        """The starting (P, width) rows of a direct prefix."""
        P, V = self.prompt_len, self.config.vocab_size
        if init == "text":
            if not init_ids:
                raise ValueError("`init` 'text' needs `init_ids`, the token ids of a non-empty text")
            if min(init_ids) < 0 or max(init_ids) >= V:
                raise ValueError(f"`init_ids` has token ids outside the base's vocabulary [0, {V})")
            return self.rows_of_ids((list(init_ids) * (P // len(init_ids) + 1))[:P])
        if init == "zero" or P == 0:
            return torch.zeros(P, self.width(self.config))
        g = torch.Generator().manual_seed(seed)
        if init == "normal":
            return torch.randn(P, self.width(self.config), generator=g)
        rows = self.rows_of_ids(torch.randint(V, (P,), generator=g).tolist())  # P random tokens' rows
        if init == "random":  # noise at the scale of those rows
            return torch.randn(rows.shape, generator=g).to(rows) * rows.std()
        return rows

    @classmethod
    def from_rows(cls, base: nn.Module, rows: torch.Tensor, **kwargs):
        """A direct prefix holding the given (P, width) rows (kwargs: the subclass's own, e.g. layers)."""
        width = cls.width(base.config)
        if rows.dim() != 2 or rows.size(1) != width:
            raise ValueError(f"{cls.__name__} rows must be (P, {width}), got {tuple(rows.shape)}")
        model = cls(base, rows.size(0), init="zero", **kwargs)
        model.row_maker = DirectPrefix(rows.to(model.row_maker.rows))
        return model

    def merge(self):
        """The stored form: the network (if any) swapped for a DirectPrefix holding its output. Same logits."""
        return self.from_rows(self.base, self.rows().detach())

    def train(self, mode: bool = True):
        """Training mode for the method; the frozen base always runs in eval mode (no dropout noise)."""
        super().train(mode)
        self.base.eval()
        return self

    @property
    def config(self):
        return self.base.config

    def prompt(self) -> torch.Tensor:
        """The rows in the layout the model uses them (per subclass): what a prompt bank stacks."""
        return self.layout(self.rows())

    def start(self, cache) -> int:
        """Position of the first token: P on the first call, the cache length after that."""
        return self.prompt_len if cache is None or cache.length == 0 else cache.length

    # ------------------------------------------------------------ what each subclass defines

    @staticmethod
    def width(config) -> int:
        """The numbers in one row: d_model (soft prompt), n_layer * d_model, 2 * n_layer * d_model (prefixes)."""
        raise NotImplementedError

    def rows_of_ids(self, ids: list[int]) -> torch.Tensor:
        """The (len(ids), width) rows the frozen base itself computes for real tokens (text and vocab init)."""
        raise NotImplementedError

    def layout(self, rows: torch.Tensor) -> torch.Tensor:
        """The (P, width) rows in the shape the forward pass uses them."""
        raise NotImplementedError

    @staticmethod
    def to_rows(prompt: torch.Tensor) -> torch.Tensor:
        """The inverse of `layout`: back to (P, width)."""
        raise NotImplementedError

    def forward(self, idx, targets=None, cache=None, prompt=None):
        """idx (B, T) -> (logits (B, T, vocab), loss): the base wearing the rows, or `prompt` (one per row)."""
        raise NotImplementedError

    # ------------------------------------------------------------ the options, each checked here once

    @classmethod
    def inits(cls, reparam: str | None = None) -> tuple[str, ...]:
        """The init values these rows accept, the default first."""
        if reparam is not None:  # a network's output is not free to set: fitting it to given rows is a run of its own
            return NETWORK_INITS
        return (cls.default_init,) + tuple(i for i in INITS if i != cls.default_init)

    @classmethod
    def check_options(cls, reparam: str | None = None, reparam_dim: int | None = None, hidden: int | None = None,
                      init: str | None = None, mlp_form: str = "shared", layers: str = "all"):
        """The options only some rows have. TuneConfig and Method.build ask this too, so each is refused here."""
        name = cls.__name__
        if reparam is not None and reparam not in REPARAMS:
            raise ValueError(f"`reparam` {reparam!r} is none of: None (the rows are the parameter), "
                             f"{', '.join(REPARAMS)}")
        if layers != "all" and not cls.at_every_block:
            raise ValueError(f"`layers` {layers!r}: {name} has no rows at every block; use a prefix")
        for field, value in (("reparam_dim", reparam_dim), ("hidden", hidden)):
            if value is not None and reparam is None:
                raise ValueError(f"`{field}` shapes the network that makes the rows; {name} without one has none")
        if reparam_dim is not None and reparam == "ptuning":
            raise ValueError("`reparam_dim`: the P-tuning encoder has no P' width k (its table is as wide as the rows)")
        if mlp_form != "shared" and reparam != "mlp":
            network = "without a network" if reparam is None else "with P-tuning's encoder"
            raise ValueError(f"`mlp_form` {mlp_form!r} is a form of Li & Liang's MLP; {name} {network} has none")
        if mlp_form.startswith("separate") and not cls.keys_and_values:
            raise ValueError(f"`mlp_form` {mlp_form!r} makes keys and values with separate MLPs; {name} has no keys "
                             "and values of its own: only a key/value prefix does")
        if init is not None and init not in cls.inits(reparam):
            raise ValueError(f"`init` {init!r} is not one of {name}'s" + (" with a network" if reparam else "")
                             + f": {', '.join(cls.inits(reparam))}")

    @staticmethod
    def check_prompt_len(config, prompt_len: int):
        """P rows and at least one token share the base's context."""
        if not isinstance(prompt_len, int) or isinstance(prompt_len, bool) or prompt_len < 0:
            raise ValueError(f"`prompt_len` must be an integer of at least 0, got {prompt_len!r}")
        if prompt_len >= config.block_size:
            raise ValueError(f"`prompt_len` {prompt_len} leaves no room for tokens in the base's context of "
                             f"{config.block_size} positions: at most {config.block_size - 1}")
