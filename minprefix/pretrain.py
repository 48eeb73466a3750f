"""Pretraining the base: a GPT trained on the tiny world, loss on the whole text.

`minprefix pretrain` runs it with the one training loop of train.py, so an interrupted run
resumes where it stopped and ends with the same weights; base.py saves the result.
"""

from dataclasses import dataclass, field, replace

import torch

from .config import arg
from .model import GPT, GPTConfig
from .train import LoopConfig, Run, optimize
from .world import Tokenizer, pretrain_batch


@dataclass
class PretrainConfig(LoopConfig):
    steps: int = arg(7200, "optimizer steps (13 to 17 minutes on 2 CPU cores)", low=1)
    batch_size: int = arg(16, "packed rows of 128 characters per step", low=1, high=4096)
    lr: float = arg(5e-3, "peak learning rate, reached after warmup", above=0, high=1e38)  # float32 max: 3.4e38
    warmup: int = arg(100, "steps of linear warmup", low=0)
    weight_decay: float = arg(0.1, "AdamW weight decay on matrices (not biases or norms)", low=0.0)
    checkpoint_every: int = arg(100, "steps between atomic checkpoints", low=1)
    # how often each task is drawn: the lexicon and sorting, the hardest, most
    task_weights: dict = field(
        default_factory=lambda: {"translate": 2.5, "reverse": 1.5, "uppercase": 1.25, "sort": 2.0, "devowel": 1.25}
    )
    model: GPTConfig = field(default_factory=GPTConfig)


def pretrain(cfg: PretrainConfig, run_dir, device="cpu", progress=True, on_step=None) -> GPT:
    """Pretrain a base on the tiny world (loss on every character), resuming from run_dir if it can.

    on_step(step, loss) is called after every step (tests use it to interrupt a run).
    """
    tok = Tokenizer()
    if cfg.model.vocab_size != tok.vocab_size:
        raise ValueError(f"model vocab_size {cfg.model.vocab_size} != tokenizer's {tok.vocab_size}")
    torch.manual_seed(cfg.seed)
    model = GPT(replace(cfg.model, pad_id=tok.pad_id)).to(device)  # the base knows its tokenizer's pad
    model.characters = tok.characters  # and its characters, saved with it

    def next_batch(rng):  # rows of examples packed back to back, tasks drawn by their weights
        return pretrain_batch(tok, rng, cfg.batch_size, cfg.model.block_size, cfg.task_weights, device)

    optimize(model, cfg, Run(cfg.lr, next_batch, cfg.checkpoint_every, run_dir, device, desc="pretrain",
                             progress=progress, on_step=on_step))
    return model.eval()
