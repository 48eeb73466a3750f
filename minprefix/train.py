"""The one training loop: pretraining and every tuning method use it.

`optimize` trains whatever parameters of a model have requires_grad (a soft prompt, a
prefix, P' and its MLP, or every weight) with the same AdamW, schedule, clipping, NaN stop,
checkpoints and resume, so methods differ only in what they train. `tune` is that loop on
one downstream task, with dev evaluation and the best artifact kept.
"""

import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm  # the text bar: in a notebook without ipywidgets, tqdm.auto warns and falls back to it

from . import distributed
from .artifacts import load_into, save_prompt
from .checkpoint import Checkpoint, run_lock, trainable_state
from .config import arg, validate
from .files import file_sha256, fingerprint
from .methods import DEFAULT_METHOD, METHODS, RENAMED
from .model import GPT, autocast
from .prefix import LAYERS
from .prompted import MLP_FORMS
from .scoring import score
from .world import DOWNSTREAM_TASKS, PRETRAIN_TASKS, TUNE_TRAIN_SIZE, Tokenizer, answer_batch, examples

# ---------------------------------------------------------------------------- the training loop


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
                        "steps pay the compile time: see `minprefix bench --compile`)")

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
    step = checkpoint.resume(model, opt, run.state, run.device)
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
                                 "stopped with the last checkpoint kept: try a lower --lr")
    opt.zero_grad(set_to_none=True)
    to_backward.backward()  # gradients reach only the trainable parameters
    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    return loss.item()


# ---------------------------------------------------------------------------- tuning


@dataclass
class TuneConfig(LoopConfig):
    steps: int | None = arg(None, "optimizer steps (default: the method's, from the table below)", low=1)
    method: str = arg(DEFAULT_METHOD, "the method to train (see the table below)", choices=tuple(METHODS))
    task: str = arg("bare-reverse", "a task of the tiny world", choices=PRETRAIN_TASKS + DOWNSTREAM_TASKS)
    prompt_len: int = arg(10, "P: soft-prompt rows or prefix positions", low=1)
    reparam_dim: int | None = arg(None, "k, the width of P' (MLP methods only; default d_model)", low=1, high=65536)
    hidden: int | None = arg(None, "hidden width of the MLP (MLP methods only; default 512)", low=1, high=65536)
    mlp_form: str = arg("shared", "Li & Liang's MLP: shared (one MLP makes a position's key and value), separate "
                        "(keys and values from their own P' and MLP), linear (no tanh), separate-linear (neither)",
                        choices=MLP_FORMS)
    init: str | None = arg(None, "how the rows start (default: the method's; see the table below)")
    init_text: str | None = arg(None, "start the rows from this text, repeated or cut to P tokens (means --init text)")
    eval_every: int = arg(50, "steps between dev evaluations (the best is kept)", low=1)
    n_train: int = arg(TUNE_TRAIN_SIZE, "training examples (at most: every downstream task has this many)", low=1,
                       high=100_000)
    n_dev: int = arg(200, "dev examples (at most, likewise)", low=1, high=10_000)
    prefix_layers: str = arg("all", "the layers that wear a prefix: all, bottom or top half (prefix methods only)",
                             choices=LAYERS)
    grad_checkpointing: bool = arg(False, "recompute blocks in backward instead of storing them (saves memory)")
    stop_at: float | None = arg(None, "end the run at the first dev evaluation whose exact match reaches this "
                                "(1.0: nothing is left to learn on dev)", above=0, high=1.0)

    def __post_init__(self):
        if isinstance(self.method, str) and self.method in RENAMED:
            raise ValueError(f"--method {self.method} is now called {RENAMED[self.method]} (and a method trained "
                             "through an MLP is its direct method's name plus -mlp, e.g. prefix-mlp)")
        if self.steps is None:  # the method's own; for an unknown method a placeholder, and validate names the method
            self.steps = METHODS[self.method].steps if isinstance(self.method, str) and self.method in METHODS else 1
        super().__post_init__()
        m = METHODS[self.method]
        m.check_options(self.prefix_layers, self.reparam_dim, self.hidden, self.mlp_form)
        if self.init_text is not None:
            if "text" not in m.inits:
                raise ValueError(f"--init-text: {self.method} cannot start from a text (its inits: "
                                 f"{', '.join(m.inits) or 'none'}); use a direct method such as {m.direct.name}")
            if self.init not in (None, "text"):
                raise ValueError(f"--init-text starts the rows from a text, but --init is {self.init!r}: drop one")
            self.init = "text"
        if self.init is not None and self.init not in m.inits:
            allowed = ", ".join(m.inits) or "none (every weight starts from the base)"
            raise ValueError(f"--init {self.init} is not available for {self.method}; its inits: {allowed}")
        if self.init == "text" and not self.init_text:
            raise ValueError("--init text needs --init-text with a non-empty text")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else METHODS[self.method].lr


def rank(exact_match: float, loss: float) -> tuple:
    """How dev scores are ordered: exact match first, then the lower loss (the first of equals wins)."""
    return exact_match, -loss


def best_of(history: list[dict]) -> dict:
    """The history entry `tune` kept as best (and saved as the artifact)."""
    return max(history, key=lambda h: rank(h["dev_exact_match"], h["dev_loss"]))


def build_method(base: GPT, tok: Tokenizer, cfg: TuneConfig):
    """The model to train: the frozen base wearing cfg.method (or a trainable copy for full)."""
    ids = tok.encode(cfg.init_text) if cfg.init_text is not None else None
    return METHODS[cfg.method].build(base, cfg.prompt_len, reparam_dim=cfg.reparam_dim, hidden=cfg.hidden,
                                     init=cfg.init, init_ids=ids, seed=cfg.seed, layers=cfg.prefix_layers,
                                     mlp_form=cfg.mlp_form)


def tune(base: GPT, tok: Tokenizer, cfg: TuneConfig, run_dir=None, device="cpu", progress=True,
         init_from=None, on_step=None):
    """Train cfg.method on cfg.task; returns (model with the best dev weights, history).

    run_dir: where checkpoint.safetensors (for resuming) and best.safetensors (the artifact) go.
    init_from: a saved artifact of the same method to continue from.
    """
    base = base.to(device)
    init_sha = file_sha256(init_from, "artifact (--init-from)") if init_from is not None else None
    depends = {"base": fingerprint(base), "init_from": init_sha}
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    model = build_method(base, tok, cfg).to(device)
    if init_from is not None:
        load_into(model, init_from, base)
    train_exs = examples(cfg.task, "train", cfg.n_train, seed=cfg.seed)
    dev_exs = examples(cfg.task, "dev", cfg.n_dev)  # the same dev sample for every seed
    run_dir = Path(run_dir) if run_dir is not None else None
    state, t0 = {"history": [], "best": None}, time.time()

    def on_eval(step, loss):  # dev score; the best weights are kept, and saved as the artifact
        t = time.time()
        dev = score(model, tok, dev_exs)
        scoring = time.time() - t + (state["history"][-1].get("scoring_time", 0.0) if state["history"] else 0.0)
        state["history"].append({"step": step, "dev_exact_match": dev["exact_match"], "dev_loss": dev["loss"],
                                 "train_loss": loss, "time": time.time() - t0, "scoring_time": scoring})
        best = state["best"] and state["best"]["dev"]
        if best is None or rank(dev["exact_match"], dev["loss"]) > rank(best["exact_match"], best["loss"]):
            state["best"] = {"step": step, "dev": dev, "weights": trainable_state(model)}
            if run_dir is not None and distributed.is_main():
                save_prompt(model, run_dir / "best.safetensors", base, {"task": cfg.task, "dev": dev, "step": step})
        state["stop"] = cfg.stop_at is not None and dev["exact_match"] >= cfg.stop_at
        return {"dev_em": f"{state['best']['dev']['exact_match']:.2f}"}

    gpt = model if METHODS[cfg.method].trains_base else base  # the GPT whose blocks run (and are checkpointed)
    gpt.grad_checkpointing = cfg.grad_checkpointing
    batch = lambda rng: answer_batch(tok, rng.choices(train_exs, k=cfg.batch_size), device)  # noqa: E731
    try:
        optimize(model, cfg, Run(cfg.peak_lr, batch, cfg.eval_every, run_dir, device, on_eval, state,
                                 f"{cfg.method} on {cfg.task}", progress, on_step, depends,
                                 stop=lambda: state.get("stop", False)))
    finally:
        gpt.grad_checkpointing = False
    for k, v in base.state_dict().items():  # the promise of every method here: the base is never modified
        if not torch.equal(v, base_before[k]):
            raise RuntimeError(f"base weight {k} changed during tuning: this is a bug, please report it")
    if state["best"]["step"] == 0:
        warnings.warn(f"{cfg.method} on {cfg.task}: no step beat the untrained start on dev, so the best "
                      "(and saved) weights are the untrained ones; try more --steps or another --lr", stacklevel=2)
    model.load_state_dict(state["best"]["weights"], strict=False)
    return model.eval(), state["history"]
