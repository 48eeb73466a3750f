"""Parameter accounting (minprefix/params.py): the GPT-2 family's counts, closed form against the modules."""

import torch

from minprefix.methods import count_table
from minprefix.model import GPT, GPTConfig
from minprefix.params import base_params, gpt2_config


def test_gpt2_family_counts():
    """GPT-2 small has 124,439,808 parameters (tied head), the published count of HF's gpt2."""
    assert base_params(gpt2_config("gpt2")) == 124_439_808
    for config in (gpt2_config("gpt2"), GPTConfig(n_layer=3, d_model=24, n_head=2, bias=False), GPTConfig()):
        with torch.device("meta"):  # the closed form against the module built (no memory, no weights)
            assert base_params(config) == GPT(config).num_params()
    medium = {r["method"]: r for r in count_table(gpt2_config("gpt2-medium"), P=10, h=512)}
    assert medium["soft"]["trainable"] == 10 * 1024  # one P x d matrix: 10 x 1024 = 10,240
    assert medium["block-prefix"]["stored"] == 245_760  # 24 such matrices, one per block
    assert medium["prefix"]["stored"] == 491_520  # 2 * 24 * 10 * 1024
    assert medium["prefix-mlp"]["trainable"] == 25_750_016  # Li & Liang's training-time MLP
