"""The one training loop: pretraining and every tuning method use it.

`optimize` trains whatever parameters of a model have requires_grad (a soft prompt, a
prefix, P' and its MLP, or every weight) with the same AdamW, schedule, clipping, NaN stop,
checkpoints and resume, so methods differ only in what they train. It knows nothing of
methods, tasks or artifacts: the batches, the evaluation and what to keep are handed in
(`Run`), as minGPT's Trainer is handed a model. tune.py uses it for one downstream task.
"""

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm  # the text bar: in a notebook without ipywidgets, tqdm.auto warns and falls back to it

from . import distributed
from .checkpoint import Checkpoint, run_lock
from .config import arg, validate
from .model import autocast

@dataclass
class LoopConfig:
    """What every training run needs. Pretraining and tuning change the defaults."""

    steps: int = arg(300, "optimizer steps", low=1)
    batch_size: int = arg(32, "examples (tuning) or packed rows (pretraining) per step", low=1, high=4096)
    lr: float | None = arg(None, "peak learning rate, reached after warmup (default: the method's)", above=0,
                           high=1e38)  # float32 max: 3.4e38
    min_lr_ratio: float = arg(0.1, "the cosine schedule ends at lr times this", low=0.0, high=1.0)
    warmup: int = arg(20, "steps of linear warmup", low=0)
    weight_decay: float = arg(0.0, "AdamW weight decay on matrices (not biases or norms)", low=0.0)
    grad_clip: float = arg(1.0, "largest global gradient norm", above=0)
    seed: int = arg(0, "seed of the initialization and of every step's batch", low=0, high=2**31 - 1)
    bf16: bool = arg(False, "bf16 autocast (GPU only; fp32 on CPU)")
    compile: bool = arg(False, "torch.compile the training step's model (fuses element-wise work; the first "
                        "steps pay the compile time, which `minprefix bench` measures)")

    def __post_init__(self):
        validate(self)

    def lr_at(self, step: int, peak: float) -> float:
        """Linear warmup to peak, then cosine decay to peak * min_lr_ratio at the last step."""
        if step < self.warmup:
            return peak * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return peak * (self.min_lr_ratio + 0.5 * (1 - self.min_lr_ratio) * (1 + math.cos(math.pi * progress)))


def make_optimizer(params, lr, weight_decay):
    """AdamW over trainable parameters only; weight decay on matrices, not on biases or norms."""
    params = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


@dataclass
class Run:
    """Where one call of `optimize` runs and whom it tells: all that is not the recipe (`LoopConfig`)."""

    peak_lr: float
    next_batch: Callable  # next_batch(rng) -> (idx, targets), rng seeded by (seed, step) alone
    every: int = 100  # steps between on_eval calls and checkpoints
    run_dir: Path | str | None = None  # checkpoint.safetensors goes here (None: no checkpoints, no resume)
    device: str = "cpu"
    on_eval: Callable | None = None  # on_eval(step, loss) -> a dict for the progress bar, or None
    state: dict = field(default_factory=dict)  # the caller's, saved in every checkpoint and restored
    desc: str = "train"  # the progress bar's label
    progress: bool = True
    on_step: Callable | None = None  # on_step(step, loss) after every step (tests interrupt runs with it)
    depends: dict = field(default_factory=dict)  # what a resume must find unchanged besides the config
    stop: Callable | None = None  # stop() -> True ends the run early (checked after each on_eval)
    check_state: Callable | None = None  # check_state(saved state) -> what is wrong with it, or None (on resume)


def optimize(model, cfg: LoopConfig, run: Run):
    """The one training loop. Trains the parameters of `model` that have requires_grad.

    The batch of a step is next_batch(rng) with rng seeded by (cfg.seed, step) alone: a resumed
    run sees exactly the batches an uninterrupted one would. At step 0 of a fresh run, every
    `run.every` steps and at the end, on_eval(step, loss) runs, then a `Checkpoint` is written
    (with `run.state`). A run resumes from that checkpoint if there is one; Ctrl-C writes it first.
    run_dir is locked meanwhile (`run_lock`): a second run there stops at once.
    """
    with run_lock(run.run_dir):
        return train_loop(model, cfg, run)


def train_loop(model, cfg: LoopConfig, run: Run):
    """The body of `optimize`, once run_dir is ours."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, run.peak_lr, cfg.weight_decay)
    ddp = distributed.world() > 1  # under torchrun: each rank trains on its shard, DDP averages the gradients
    train_model = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    if cfg.compile:  # the same module, its forward (and so backward) compiled; dev scoring stays eager
        train_model = torch.compile(train_model)
    checkpoint = Checkpoint(run.run_dir, cfg, run.depends)
    step = checkpoint.resume(model, opt, run.state, run.device, run.check_state)
    evaluate = run.on_eval or (lambda step, loss: None)
    shown = (evaluate(0, None) or {}) if step == 0 else {}  # the untrained model: where every curve starts
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=run.desc, disable=not run.progress or not distributed.is_main())
    t0, tokens = time.time(), 0
    stopped = run.stop or (lambda: False)
    try:
        while step < cfg.steps and not stopped():
            idx, targets = run.next_batch(random.Random(cfg.seed * 1_000_003 + step))  # this step's batch
            if ddp:
                idx, targets = distributed.shard(idx, targets)  # this rank's rows of it
            for group in opt.param_groups:  # warmup, then cosine decay
                group["lr"] = cfg.lr_at(step, run.peak_lr)
            loss = train_step(train_model, opt, params, idx, targets, cfg, run, step, ddp)
            step, tokens = step + 1, tokens + idx.numel()
            if step % run.every == 0 or step == cfg.steps:
                shown = evaluate(step, loss) or {}
                model.train()
                checkpoint.save(model, opt, step, run.state)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}", **shown)
            if run.on_step is not None:
                run.on_step(step, loss)
    except KeyboardInterrupt:
        checkpoint.save(model, opt, step, run.state)
        raise
    finally:
        bar.close()
    return model


def train_step(model, opt, params, idx, targets, cfg: LoopConfig, run: Run, step: int, ddp: bool) -> float:
    """One optimizer step on one batch; returns its loss. A loss that is not finite stops the run."""
    with autocast(run.device, cfg.bf16):
        _, loss = model(idx, targets)
    to_backward = loss
    if ddp:  # the loss of the whole batch, whatever the shards' sizes
        to_backward, loss = distributed.global_loss(loss, targets)
    if not torch.isfinite(loss):  # stop before a NaN reaches the weights
        raise FloatingPointError(f"loss became {loss.item()} at step {step} (peak lr {run.peak_lr:g}); "
                                 "stopped with the last checkpoint kept: try a lower `lr`")
    opt.zero_grad(set_to_none=True)
    to_backward.backward()  # gradients reach only the trainable parameters
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    return loss.item()
