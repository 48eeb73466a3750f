"""What the test files share besides fixtures: the tokenizer, the one tiny base, and a quick tuning config.

Fixtures built from these are in conftest.py. This file is imported as `helpers`: pytest puts tests/ on
sys.path (the directory of a conftest.py or test file outside any package); a script run from here, like
ddp_run.py, inserts it itself.
"""

import torch

from minprefix.methods import METHODS
from minprefix.model import GPT, GPTConfig
from minprefix.tune import TuneConfig
from minprefix.world import Tokenizer

TOK = Tokenizer()


def tiny_config(**overrides) -> GPTConfig:
    """The tiny world's vocabulary (104 ids, its pad id), a context of 32, 2 layers, 2 heads, width 16; overrides:
    any field."""
    return GPTConfig(**{**dict(vocab_size=TOK.vocab_size, block_size=32, n_layer=2, n_head=2, d_model=16,
                               pad_id=TOK.pad_id),
                        **overrides})


def tiny_base(seed: int = 0, **overrides) -> GPT:
    """A random frozen GPT of `tiny_config(**overrides)`: the same weights for the same seed and config."""
    torch.manual_seed(seed)
    return GPT(tiny_config(**overrides)).freeze()


def quick(method, **kw) -> TuneConfig:
    """A tuning run of a few seconds on the tiny base: 12 steps of batch 8 on bare-reverse."""
    small = dict(task="bare-reverse", prompt_len=4, steps=12, batch_size=8, eval_every=4, n_train=64, n_dev=16)
    if METHODS[method].reparam:
        small["hidden"] = 16
    return TuneConfig(method=method, **{**small, **kw})
