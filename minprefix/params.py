"""Parameter accounting: what each method trains, what it stores, and the closed forms.

With P prompt/prefix rows, L layers, width d, P' width k and MLP hidden width h (the bottleneck is whichever of
the two is narrower than d; in Li & Liang's code, h):

    soft prompt               P*d
    block-input prefix        L*P*d
    key/value prefix          2*L*P*d
    reparameterization MLP    P*k + k*h + h + h*w + w      (P' + two Linear layers; w = 2*L*d or L*d)
    P-tuning encoder          P*d + d*h + h + h*h + h + h*d + d     (P' + three Linear layers)

The MLP exists only while training; `merge` keeps the P*width rows it produces. The table of
every method's counts is `methods.count_table`, built from these formulas.
"""

import torch

from .model import GPTConfig

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


def reparam_params(P: int, k: int, h: int, width: int, nets: int = 1) -> int:
    """P' plus Linear(k, h) plus Linear(h, width); width is 2*L*d (key/value) or L*d (block input).

    nets=2: MLPPrefix's "separate" form, two (P', MLP) pairs each making half of every row.
    """
    return nets * (P * k + k * h + h) + h * width + width


def ptuning_params(P: int, width: int, h: int) -> int:
    """P' (P x width) plus Linear(width, h), Linear(h, h), Linear(h, width): P-tuning's MLP encoder."""
    return P * width + width * h + h + h * h + h + h * width + width


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
    """Parameters of a GPT with this config (the output head is tied to the token table).

    Per block: q/k/v (3d^2), the attention output (d^2) and the MLP (4d^2 + 4d^2): 12d^2 weights;
    two LayerNorm scales (2d); with biases (b = 1, as in GPT-2) 3d + d + 4d + d Linear biases and
    two LayerNorm shifts, 11d more. Then tokens V*d, positions T*d, and the final LayerNorm.
    """
    V, T, L, d, b = config.vocab_size, config.block_size, config.n_layer, config.d_model, int(config.bias)
    return V * d + T * d + L * (12 * d * d + 2 * d + 11 * b * d) + (1 + b) * d
