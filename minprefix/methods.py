"""The one table of methods: what each trains, how it starts, how it is counted and stored.

Every other module (training, the command line, counting, saving, the demo) reads this
table, so adding a method is adding a row.
"""

import copy
from dataclasses import dataclass

from .model import GPT, GPTConfig
from .params import base_params, reparam_params
from .prefix import BlockInputPrefixGPT, PrefixGPT
from .prompted import INITS, MLP_HIDDEN, PromptedGPT
from .soft_prompt import SoftPromptGPT


@dataclass(frozen=True)
class Method:
    name: str  # as on the command line
    label: str  # as in tables
    model: type[PromptedGPT] | None  # the wearer of the frozen base; None: every weight trains
    mlp: bool  # rows made by the MLP of Li & Liang §4.3 (stored merged, without it)
    lr: float  # default peak learning rate

    @property
    def inits(self) -> tuple[str, ...]:
        """The init values this method accepts, its default first."""
        if self.model is None:
            return ()
        if self.mlp:
            return ("random", "zero")
        return (self.model.default_init,) + tuple(i for i in INITS if i != self.model.default_init)

    def trainable(self, config: GPTConfig, P: int, k: int | None = None, h: int = MLP_HIDDEN) -> int:
        """Numbers that train (closed form; tests check it against the modules built)."""
        if self.model is None:
            return base_params(config)
        width = self.model.width(config)
        return reparam_params(P, k or config.d_model, h, width) if self.mlp else P * width

    def stored(self, config: GPTConfig, P: int) -> int:
        """Numbers in the saved artifact: the rows alone (merged), or every weight."""
        return base_params(config) if self.model is None else P * self.model.width(config)

    @property
    def is_prefix(self) -> bool:
        """Rows at every block (key/value or block-input), so `layers` can confine them."""
        return self.model in (PrefixGPT, BlockInputPrefixGPT)

    def build(self, base: GPT, prompt_len: int, reparam_dim: int | None = None, hidden: int | None = None,
              init: str | None = None, init_ids: list[int] | None = None, seed: int = 0, layers: str = "all"):
        """The model to train: the frozen base wearing this method (full: a trainable copy of the base)."""
        if layers != "all" and not self.is_prefix:
            raise ValueError(f"layers {layers!r}: only a prefix method has rows at every block, not {self.name}")
        if self.model is None:
            model = copy.deepcopy(base)
            for p in model.parameters():
                p.requires_grad_(True)
            return model
        k = (reparam_dim or base.config.d_model) if self.mlp else None
        extra = {"layers": layers} if self.is_prefix else {}
        return self.model(base, prompt_len, k, hidden or MLP_HIDDEN, init, init_ids, seed, **extra)


METHODS = {m.name: m for m in (
    Method("full", "full fine-tuning", None, False, 1e-3),
    Method("soft", "soft prompt", SoftPromptGPT, False, 1e-1),
    Method("soft-mlp", "soft prompt + MLP (P-tuning)", SoftPromptGPT, True, 3e-3),
    Method("block-prefix", "block-input prefix", BlockInputPrefixGPT, False, 5e-2),
    Method("block-prefix-mlp", "block-input prefix + MLP", BlockInputPrefixGPT, True, 3e-3),
    Method("prefix-direct", "key/value prefix", PrefixGPT, False, 5e-2),
    Method("prefix", "key/value prefix + MLP", PrefixGPT, True, 3e-3),
)}


def method_of(model) -> Method:
    """The direct method of a model (what its merged, stored form is)."""
    for m in METHODS.values():
        if m.model is not None and not m.mlp and isinstance(model, m.model):
            return m
    if isinstance(model, GPT):
        return METHODS["full"]
    raise TypeError(f"{type(model).__name__} is none of the methods {', '.join(METHODS)}")


def count_table(config: GPTConfig, P: int = 10, k: int | None = None, h: int = MLP_HIDDEN) -> list[dict]:
    """Trainable and stored numbers of every method on one base, and their share of the base.

    k defaults to d_model, as in Li & Liang's code (P' is a P x d embedding).
    """
    n_base = base_params(config)
    rows = [(m.label, m.trainable(config, P, k, h), m.stored(config, P)) for m in METHODS.values()]
    return [{"method": label, "trainable": t, "trainable_share": t / n_base, "stored": s, "stored_share": s / n_base}
            for label, t, s in rows]
