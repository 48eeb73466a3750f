"""Parameter accounting: what each method trains, what it stores, and the closed forms.

With P prompt/prefix rows, L layers, width d, bottleneck k and MLP hidden size h:

    soft prompt               P*d
    block-input prefix        L*P*d
    key/value prefix          2*L*P*d
    reparameterization MLP    P*k + k*h + h + h*(2*L*d) + 2*L*d     (P' + two Linear layers)

The MLP exists only while training; `merge` keeps the 2*L*P*d prefix it produces.
"""

import torch

from .model import GPT, GPTConfig

# GPT-2 family shapes (Radford et al. 2019): (n_layer, d_model, n_head)
GPT2_FAMILY = {
    "gpt2": (12, 768, 12),
    "gpt2-medium": (24, 1024, 16),
    "gpt2-large": (36, 1280, 20),
    "gpt2-xl": (48, 1600, 25),
}


def gpt2_config(name: str) -> GPTConfig:
    n_layer, d_model, n_head = GPT2_FAMILY[name]
    return GPTConfig(vocab_size=50257, block_size=1024, n_layer=n_layer, n_head=n_head, d_model=d_model)


def soft_prompt_params(P: int, d: int) -> int:
    return P * d


def block_prefix_params(L: int, P: int, d: int) -> int:
    return L * P * d


def kv_prefix_params(L: int, P: int, d: int) -> int:
    return 2 * L * P * d


def reparam_params(P: int, k: int, h: int, width: int) -> int:
    """P' plus Linear(k, h) plus Linear(h, width); width is 2*L*d (key/value) or L*d (block input)."""
    return P * k + k * h + h + h * width + width


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_frozen(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if not p.requires_grad)


def count_stored(model: torch.nn.Module) -> int:
    """Numbers in the saved artifact: the merged prefix, the soft prompt, or every weight (full)."""
    if hasattr(model, "merge"):
        model = model.merge()
    if hasattr(model, "base"):
        return count_trainable(model)
    return sum(p.numel() for p in model.parameters())


def base_params(config: GPTConfig) -> int:
    """Parameters of a GPT with this config, built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        return GPT(config).num_params()


def method_table(config: GPTConfig, P: int = 10, k: int | None = None, h: int = 512) -> list[dict]:
    """Trainable and stored numbers of every method on one base, and their share of the base.

    k defaults to d_model, as in Li & Liang's code (P' is a P x d embedding).
    """
    L, d = config.n_layer, config.d_model
    k = d if k is None else k
    n_base = base_params(config)
    rows = [
        ("full fine-tuning", n_base, n_base),
        ("soft prompt", soft_prompt_params(P, d), soft_prompt_params(P, d)),
        ("block-input prefix", block_prefix_params(L, P, d), block_prefix_params(L, P, d)),
        ("key/value prefix", kv_prefix_params(L, P, d), kv_prefix_params(L, P, d)),
        ("key/value prefix + MLP", reparam_params(P, k, h, 2 * L * d), kv_prefix_params(L, P, d)),
    ]
    return [
        {"method": m, "trainable": t, "trainable_share": t / n_base, "stored": s, "stored_share": s / n_base}
        for m, t, s in rows
    ]


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain-text table; floats named *share* print as percentages."""
    def cell(row, c):
        v = row[c]
        if isinstance(v, float):
            return f"{100 * v:.3f} %" if "share" in c else f"{v:.3f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    cells = [[cell(r, c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths)))  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(r) for r in cells])
