"""The one table of methods: what each trains, how it starts, how it is counted and stored.

Every other module (training, the command line, counting, saving, the demo, the lab) reads
this table, so adding a method is adding a row. Names follow one scheme: a method whose rows
are made by a network while training (its `reparam`: Li & Liang's MLP, or P-tuning's encoder)
is its direct method's name plus "-mlp"; it is stored in its direct method's form (merged).
"""

import copy
from dataclasses import dataclass

from .model import GPT, GPTConfig
from .params import base_params, ptuning_params, reparam_params
from .prefix import BlockInputPrefixGPT, PrefixGPT
from .prompted import MLP_HIDDEN, PromptedGPT
from .scoring import table
from .soft_prompt import SoftPromptGPT


@dataclass(frozen=True)
class Method:
    name: str  # as on the command line
    label: str  # as in tables
    model: type[PromptedGPT] | None  # the wearer of the frozen base; None: every weight trains
    reparam: str | None  # how the rows are made while training: None (directly), "mlp" (Li & Liang §4.3),
    #                      "ptuning" (P-tuning's prompt encoder, Liu et al. 2021)
    lr: float  # default peak learning rate: the best of `minprefix sweep` (figures/sweep.md)
    steps: int = 800  # that sweep's step count for it: where its best converged, or the sweep's longest

    @property
    def trains_base(self) -> bool:
        """Full fine-tuning: a trainable copy of the base, no rows."""
        return self.model is None

    @property
    def is_prefix(self) -> bool:
        """Rows at every block (key/value or block-input), so `layers` can confine them."""
        return self.model is not None and self.model.at_every_block

    @property
    def direct(self) -> "Method":
        """The direct method this one is stored as (itself, if it is direct)."""
        return METHODS[self.name.removesuffix("-mlp")]

    @property
    def inits(self) -> tuple[str, ...]:
        """The init values this method accepts, its default first (its wearer's: see PromptedGPT.inits)."""
        return () if self.trains_base else self.model.inits(self.reparam)

    def trainable(self, config: GPTConfig, P: int, k: int | None = None, h: int = MLP_HIDDEN,
                  mlp_form: str = "shared") -> int:
        """Numbers that train (closed form; tests check it against the modules built)."""
        if self.trains_base:
            return base_params(config)
        width = self.model.width(config)
        if self.reparam == "ptuning":
            return ptuning_params(P, width, h)
        nets = 2 if mlp_form.startswith("separate") else 1
        return reparam_params(P, k or config.d_model, h, width, nets) if self.reparam else P * width

    def stored(self, config: GPTConfig, P: int) -> int:
        """Numbers in the saved artifact: the rows alone (merged), or every weight."""
        return base_params(config) if self.trains_base else P * self.model.width(config)

    def build(self, base: GPT, prompt_len: int, *, reparam_dim: int | None = None, hidden: int | None = None,
              init: str | None = None, init_ids: list[int] | None = None, seed: int = 0, layers: str = "all",
              mlp_form: str = "shared"):
        """The model to train: the frozen base wearing this method (full: a trainable copy of the base)."""
        self.check_options(layers, reparam_dim, hidden, mlp_form, init)
        self.check_size(base.config, prompt_len, reparam_dim, hidden, mlp_form)
        if self.trains_base:
            model = copy.deepcopy(base)
            for p in model.parameters():
                p.requires_grad_(True)
            return model
        extra = {"layers": layers} if self.is_prefix else {}
        return self.model(base, prompt_len, reparam=self.reparam, reparam_dim=reparam_dim, hidden=hidden, init=init,
                          init_ids=init_ids, seed=seed, mlp_form=mlp_form, **extra)

    # ------------------------------------------------------------ checks

    def check_options(self, layers: str = "all", reparam_dim: int | None = None, hidden: int | None = None,
                      mlp_form: str = "shared", init: str | None = None):
        """Whether this method has these options: its wearer's check (`PromptedGPT.check_options`) with its network."""
        if not self.trains_base:
            return self.model.check_options(self.reparam, reparam_dim, hidden, init, mlp_form, layers)
        given = [field for field, value, default in (("layers", layers, "all"), ("reparam_dim", reparam_dim, None),
                                                     ("hidden", hidden, None), ("mlp_form", mlp_form, "shared"),
                                                     ("init", init, None)) if value != default]
        if given:
            raise ValueError(f"`{given[0]}`: full fine-tuning trains every weight of the base from where it is; it "
                             "has no rows")

    def check_size(self, config: GPTConfig, P: int, reparam_dim: int | None = None, hidden: int | None = None,
                   mlp_form: str = "shared"):
        """Refuse, before allocating, more than MAX_TRAINABLE numbers (and, by the wearer's check, a P too long)."""
        if not self.trains_base:
            self.model.check_prompt_len(config, P)
        n = self.trainable(config, P, reparam_dim, hidden or MLP_HIDDEN, mlp_form)
        if n > MAX_TRAINABLE:
            raise ValueError(f"{self.name} would train {n:,} numbers ({4 * n / 2**30:,.0f} GiB in float32, about "
                             f"4 times that with the gradient and AdamW's moments), over the cap of 2**31: "
                             "lower `prompt_len`, `reparam_dim` or `hidden`")


MAX_TRAINABLE = 2**31  # numbers: 8 GiB of float32 weights, 32 GiB with the gradient and AdamW's two moments
METHODS = {m.name: m for m in (
    Method("full", "full fine-tuning", None, None, 3e-4),
    Method("soft", "soft prompt", SoftPromptGPT, None, 10.0),
    Method("soft-mlp", "soft prompt + P-tuning encoder", SoftPromptGPT, "ptuning", 1e-2),
    Method("block-prefix", "block-input prefix", BlockInputPrefixGPT, None, 3e-2, 1600),
    Method("block-prefix-mlp", "block-input prefix + MLP", BlockInputPrefixGPT, "mlp", 1e-2, 1600),
    Method("prefix", "key/value prefix", PrefixGPT, None, 3e-2, 1600),
    Method("prefix-mlp", "key/value prefix + MLP", PrefixGPT, "mlp", 1e-3),
)}
FULL, SOFT, PREFIX, PREFIX_MLP = (METHODS[n] for n in ("full", "soft", "prefix", "prefix-mlp"))  # named by studies
DEFAULT_METHOD = PREFIX_MLP.name  # Li & Liang's prefix tuning as they ran it


def method_named(name: str) -> Method:
    """The method of a name; an unknown name is a clear error."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def method_of(model) -> Method:
    """The direct method of a model (what its merged, stored form is)."""
    for m in METHODS.values():
        if m.model is not None and not m.reparam and isinstance(model, m.model):
            return m
    if isinstance(model, GPT):
        return METHODS["full"]
    raise TypeError(f"{type(model).__name__} is none of the methods {', '.join(METHODS)}")


def count_table(config: GPTConfig, P: int = 10, k: int | None = None, h: int = MLP_HIDDEN) -> list[dict]:
    """Trainable and stored numbers of every method on one base, and their share of the base.

    k defaults to d_model, as in Li & Liang's code (P' is a P x d embedding).
    """
    n_base = base_params(config)
    return [{"method": m.name, "label": m.label, "trainable": t, "trainable_share": t / n_base, "stored": s,
             "stored_share": s / n_base}
            for m in METHODS.values() for t, s in [(m.trainable(config, P, k, h), m.stored(config, P))]]


def count_markdown(config: GPTConfig, P: int = 10, k: int | None = None, h: int = MLP_HIDDEN) -> str:
    """`count_table` as a markdown table."""
    rows = [[f"{r['label']} (`{r['method']}`)", f"{r['trainable']:,}", f"{100 * r['trainable_share']:.3f} %",
             f"{r['stored']:,}", f"{100 * r['stored_share']:.3f} %"] for r in count_table(config, P, k, h)]
    return table(["method", "trains while tuning", "share of base", "stored", "share of base"], rows)
