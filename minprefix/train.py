"""Scoring, and the one training loop: pretraining and every tuning method use it.

`optimize` trains whatever parameters of a model have requires_grad (a soft prompt, a
prefix, P' and its MLP, or every weight) with the same AdamW, schedule, clipping, NaN stop,
checkpoints and resume, so methods differ only in what they train. `tune` is that loop on
one downstream task, with dev evaluation and the best artifact kept.
"""

import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import distributed
from .artifacts import atomic_save, load_into, save_prompt
from .config import arg, validate
from .methods import METHODS
from .model import GPT, autocast
from .world import DOWNSTREAM_TASKS, PRETRAIN_TASKS, Example, Tokenizer, answer_batch, examples

# ---------------------------------------------------------------------------- scoring


@torch.no_grad()
def score(model, tok: Tokenizer, exs: list[Example], batch_size: int = 256, whole_text=False, **kw) -> dict:
    """Answer loss and greedy exact match of a model on examples.

    Exact match is read off one teacher-forced pass: greedy decoding reproduces the answer
    (and then <eos>) exactly when, at every answer position, the argmax given the correct
    text so far is the correct next token. So no token-by-token decoding is needed, and
    padding never matters (the model is causal and padding sits at the end).
    whole_text=True scores every character (the pretraining loss). Extra keyword arguments go
    to the model (e.g. `tasks=` for a prompt bank).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n_correct, loss_sum, n_tokens = 0, 0.0, 0
    for i in range(0, len(exs), batch_size):
        chunk = exs[i : i + batch_size]
        idx, targets = answer_batch(tok, chunk, device, whole_text)
        chunk_kw = {k: v[i : i + batch_size] if isinstance(v, (list, tuple)) else v for k, v in kw.items()}
        logits, _ = model(idx, **chunk_kw)
        scored = targets != -1
        n_correct += exact_match(logits, targets).sum().item()
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        loss_sum += nll[scored].sum().item()
        n_tokens += scored.sum().item()
    model.train(was_training)
    return {"exact_match": n_correct / max(1, len(exs)), "loss": loss_sum / max(1, n_tokens), "n": len(exs)}


def exact_match(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) bool: would greedy decoding reproduce each row's answer? logits (B, T, V), targets (B, T), -1 = unscored.

    Yes exactly when, at every scored position, the argmax given the correct text so far is the target.
    """
    return ((logits.argmax(-1) == targets) | (targets == -1)).all(dim=1)


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion p measured on n examples (good at small n and p near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def percent(p: float, n: int) -> str:
    """A score as a percentage, with its 95 % interval when it rests on fewer than 100 examples."""
    if n >= 100:
        return f"{100 * p:.1f} %"
    low, high = wilson_interval(p, n)
    return f"{100 * p:.1f} % [{100 * low:.0f}, {100 * high:.0f}]"


# ---------------------------------------------------------------------------- the training loop


@dataclass
class LoopConfig:
    """What every training run needs. Pretraining and tuning change the defaults."""

    steps: int = arg(300, "optimizer steps", low=1)
    batch_size: int = arg(32, "examples (tuning) or packed rows (pretraining) per step", low=1, high=4096)
    lr: float | None = arg(None, "peak learning rate, reached after warmup (default: the method's)", above=0)
    min_lr_ratio: float = arg(0.1, "the cosine schedule ends at lr times this", low=0.0, high=1.0)
    warmup: int = arg(20, "steps of linear warmup", low=0)
    weight_decay: float = arg(0.0, "AdamW weight decay on matrices (not biases or norms)", low=0.0)
    grad_clip: float = arg(1.0, "largest global gradient norm", above=0)
    seed: int = arg(0, "seed of the initialization and of every step's batch", low=0, high=2**31 - 1)
    bf16: bool = arg(False, "bf16 autocast (GPU only; fp32 on CPU)")

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


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class Checkpoint:
    """run_dir/checkpoint.pt: trainable weights, optimizer, step, config and the caller's state, written atomically."""

    def __init__(self, run_dir, cfg: LoopConfig):
        self.path = Path(run_dir) / "checkpoint.pt" if run_dir is not None else None
        self.config = json.loads(json.dumps(asdict(cfg)))  # as JSON would give it back

    def resume(self, model, opt, state: dict, device) -> int:
        """The step to start from: 0, or the saved one with weights, optimizer and state restored."""
        if self.path is None or not self.path.exists():
            return 0
        ckpt = torch.load(self.path, map_location=device, weights_only=True)
        if ckpt["config"] != self.config:
            raise ValueError(f"{self.path} was written by another configuration; "
                             "pass another --run-dir, or delete that one to start over")
        model.load_state_dict(ckpt["trainable"], strict=False)
        opt.load_state_dict(ckpt["optimizer"])
        state.update(ckpt["state"])
        return ckpt["step"]

    def save(self, model, opt, step: int, state: dict):
        if self.path is not None and distributed.is_main():  # every rank holds the same weights
            atomic_save({"trainable": trainable_state(model), "optimizer": opt.state_dict(), "step": step,
                         "config": self.config, "state": state}, self.path)


def optimize(model, cfg: LoopConfig, peak_lr: float, next_batch, every: int, run_dir=None, device="cpu",
             on_eval=None, state: dict | None = None, desc: str = "train", progress=True, on_step=None):
    """The one training loop. Trains the parameters of `model` that have requires_grad.

    next_batch(rng) -> (idx, targets), where rng is seeded by (cfg.seed, step) alone: a
    resumed run sees exactly the batches an uninterrupted one would. At step 0 of a fresh run,
    every `every` steps and at the end, on_eval(step, loss) runs (it may return a dict to show
    on the progress bar), then a `Checkpoint` is written to run_dir, with `state` (a dict the
    caller owns). A run resumes from that checkpoint if there is one; Ctrl-C writes it first.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, peak_lr, cfg.weight_decay)
    ddp = distributed.world() > 1  # under torchrun: each rank trains on its shard, DDP averages the gradients
    train_model = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    state = {} if state is None else state
    checkpoint = Checkpoint(run_dir, cfg)
    step = checkpoint.resume(model, opt, state, device)
    evaluate = on_eval or (lambda step, loss: None)
    shown = {}
    if step == 0:  # the untrained model: where every curve starts
        shown = evaluate(0, None) or {}
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=desc, disable=not progress or not distributed.is_main())
    t0, tokens = time.time(), 0
    try:
        while step < cfg.steps:
            idx, targets = next_batch(random.Random(cfg.seed * 1_000_003 + step))  # this step's batch
            if ddp:
                idx, targets = distributed.shard(idx, targets)  # this rank's rows of it
            for group in opt.param_groups:  # warmup, then cosine decay
                group["lr"] = cfg.lr_at(step, peak_lr)
            with autocast(device, cfg.bf16):
                _, loss = train_model(idx, targets)
            if ddp:  # the loss of the whole batch, whatever the shards' sizes
                loss_to_backward, loss = distributed.global_loss(loss, targets)
            else:
                loss_to_backward = loss
            if not torch.isfinite(loss):  # stop before a NaN reaches the weights
                raise FloatingPointError(f"loss became {loss.item()} at step {step} (peak lr {peak_lr:g}); "
                                         "stopped with the last checkpoint kept: try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss_to_backward.backward()  # gradients reach only the trainable parameters
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step, tokens = step + 1, tokens + idx.numel()
            if step % every == 0 or step == cfg.steps:
                shown = evaluate(step, loss.item()) or {}
                model.train()
                checkpoint.save(model, opt, step, state)
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}", **shown)
            if on_step is not None:
                on_step(step, loss.item())
    except KeyboardInterrupt:
        checkpoint.save(model, opt, step, state)
        raise
    finally:
        bar.close()
    return model


# ---------------------------------------------------------------------------- tuning


@dataclass
class TuneConfig(LoopConfig):
    method: str = arg("prefix", "the method to train (see the table below)", choices=tuple(METHODS))
    task: str = arg("bare-reverse", "a task of the tiny world", choices=PRETRAIN_TASKS + DOWNSTREAM_TASKS)
    prompt_len: int = arg(10, "P: soft-prompt rows or prefix positions", low=1)
    reparam_dim: int | None = arg(None, "k, the width of P' (MLP methods only; default d_model)", low=1, high=65536)
    hidden: int | None = arg(None, "hidden width of the MLP (MLP methods only; default 512)", low=1, high=65536)
    init: str | None = arg(None, "how the rows start (default: the method's; see the table below)")
    init_text: str | None = arg(None, "start the rows from this text, repeated or cut to P tokens (means --init text)")
    eval_every: int = arg(50, "steps between dev evaluations (the best is kept)", low=1)
    n_train: int = arg(2000, "training examples (at most: a lexicon split may be smaller)", low=1, high=100_000)
    n_dev: int = arg(200, "dev examples (at most, likewise)", low=1, high=10_000)
    prefix_layers: str = arg("all", "the layers that wear a prefix: all, bottom or top half (prefix methods only)",
                             choices=("all", "bottom", "top"))
    grad_checkpointing: bool = arg(False, "recompute blocks in backward instead of storing them (saves memory)")

    def __post_init__(self):
        super().__post_init__()
        m = METHODS[self.method]
        if not m.mlp:
            for name in ("reparam_dim", "hidden"):
                if getattr(self, name) is not None:
                    mlp = ", ".join(n for n, x in METHODS.items() if x.mlp)
                    raise ValueError(f"--{name.replace('_', '-')} sets the MLP of {mlp}; {self.method} has none")
        if self.init_text is not None:
            if self.init not in (None, "text"):
                raise ValueError(f"--init-text starts the rows from a text, but --init is {self.init!r}: drop one")
            self.init = "text"
        if self.init is not None and self.init not in m.inits:
            allowed = ", ".join(m.inits) or "none (every weight starts from the base)"
            raise ValueError(f"--init {self.init} is not available for {self.method}; its inits: {allowed}")
        if self.prefix_layers != "all" and not m.is_prefix:
            raise ValueError(f"--prefix-layers {self.prefix_layers}: {self.method} has no rows at every block; "
                             "use a prefix method")
        if self.init == "text" and not self.init_text:
            raise ValueError("--init text needs --init-text with a non-empty text")

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else METHODS[self.method].lr


def build_method(base: GPT, tok: Tokenizer, cfg: TuneConfig):
    """The model to train: the frozen base wearing cfg.method (or a trainable copy for full)."""
    if cfg.prompt_len >= base.config.block_size:
        raise ValueError(f"--prompt-len {cfg.prompt_len} leaves no room in the base's context "
                         f"of {base.config.block_size} positions")
    ids = tok.encode(cfg.init_text) if cfg.init_text is not None else None
    return METHODS[cfg.method].build(base, cfg.prompt_len, cfg.reparam_dim, cfg.hidden, cfg.init, ids, cfg.seed,
                                     cfg.prefix_layers)


def tune(base: GPT, tok: Tokenizer, cfg: TuneConfig, run_dir=None, device="cpu", progress=True,
         init_from=None, on_step=None):
    """Train cfg.method on cfg.task; returns (model with the best dev weights, history).

    run_dir: where checkpoint.pt (for resuming) and best.safetensors (the artifact) go.
    init_from: a saved artifact of the same method to continue from.
    """
    base = base.to(device)
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    model = build_method(base, tok, cfg).to(device)
    if init_from is not None:
        load_into(model, init_from, base)
    train_exs = examples(cfg.task, "train", cfg.n_train, seed=cfg.seed)
    dev_exs = examples(cfg.task, "dev", cfg.n_dev)  # the same dev sample for every seed
    run_dir = Path(run_dir) if run_dir is not None else None
    state, t0 = {"history": [], "best": None}, time.time()

    def on_eval(step, loss):  # dev score; the best weights are kept, and saved as the artifact
        dev = score(model, tok, dev_exs)
        state["history"].append({"step": step, "dev_exact_match": dev["exact_match"], "dev_loss": dev["loss"],
                                 "train_loss": loss, "time": time.time() - t0})
        best = state["best"]
        if best is None or (dev["exact_match"], -dev["loss"]) > (best["dev"]["exact_match"], -best["dev"]["loss"]):
            state["best"] = {"step": step, "dev": dev, "weights": trainable_state(model)}
            if run_dir is not None and distributed.is_main():
                save_prompt(model, run_dir / "best.safetensors", base, {"task": cfg.task, "dev": dev, "step": step})
        return {"dev_em": f"{state['best']['dev']['exact_match']:.2f}"}

    gpt = model if cfg.method == "full" else base  # the GPT whose blocks run (and are checkpointed)
    gpt.grad_checkpointing = cfg.grad_checkpointing
    try:
        optimize(model, cfg, cfg.peak_lr, lambda rng: answer_batch(tok, rng.choices(train_exs, k=cfg.batch_size),
                 device), cfg.eval_every, run_dir, device, on_eval, state, f"{cfg.method} on {cfg.task}",
                 progress, on_step)
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
