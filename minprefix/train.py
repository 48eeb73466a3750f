"""Scoring, and one training loop for every method.

`tune` trains whatever the method exposes as trainable (a soft prompt, a prefix, P' and its
MLP, or every weight for full fine-tuning) with the same AdamW, schedule, clipping, dev
evaluation and checkpointing, so methods differ only in what they train.
"""

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .model import GPT, autocast
from .world import Example, Tokenizer, answer_batch, examples

METHODS = ("soft", "prefix", "prefix-direct", "block-prefix", "full")


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
        right = (logits.argmax(-1) == targets) | ~scored
        n_correct += right.all(dim=1).sum().item()
        logp = torch.log_softmax(logits.float(), dim=-1)
        nll = -logp.gather(-1, targets.clamp(min=0)[..., None])[..., 0]
        loss_sum += nll[scored].sum().item()
        n_tokens += scored.sum().item()
    model.train(was_training)
    return {"exact_match": n_correct / max(1, len(exs)), "loss": loss_sum / max(1, n_tokens), "n": len(exs)}


# ---------------------------------------------------------------------------- optimization


def lr_at(step: int, steps: int, warmup: int, lr: float, min_lr: float) -> float:
    """Linear warmup to lr, then cosine decay to min_lr at the last step."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def make_optimizer(params, lr, weight_decay):
    """AdamW over trainable parameters only; weight decay on matrices, not on biases or norms."""
    params = [p for p in params if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


@dataclass
class TuneConfig:
    method: str = "prefix"  # soft | prefix (with MLP) | prefix-direct | block-prefix | full
    task: str = "bare-reverse"  # a task of minprefix.world
    prompt_len: int = 10  # P: soft-prompt rows or prefix positions
    reparam_dim: int | None = None  # k of P' (prefix: default d_model; block-prefix: None = direct)
    hidden: int = 256  # hidden width of the reparameterization MLP
    init: str | None = None  # soft: random|vocab|text; prefix: zero|random|text (None: method default)
    init_text: str | None = None  # text for init="text"
    steps: int = 300  # optimizer steps
    batch_size: int = 32  # examples per step
    lr: float | None = None  # peak learning rate (None: the method's default below)
    min_lr_ratio: float = 0.1  # cosine decays to lr * this
    warmup: int = 20  # linear warmup steps
    weight_decay: float = 0.0  # AdamW weight decay on matrices
    grad_clip: float = 1.0  # max global gradient norm
    eval_every: int = 50  # steps between dev evaluations (the best is kept)
    n_train: int = 2000  # training examples (at most: a lexicon task's split may be smaller)
    n_dev: int = 200  # dev examples (at most, likewise)
    seed: int = 0  # initialization and the batches of every step
    grad_checkpointing: bool = False  # recompute blocks in backward (saves activation memory)
    bf16: bool = False  # bf16 autocast on a GPU (ignored on CPU: fp32 there)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")

    @property
    def peak_lr(self) -> float:
        default = {"full": 1e-3, "soft": 1e-1, "block-prefix": 5e-2, "prefix-direct": 5e-2, "prefix": 3e-3}
        return self.lr if self.lr is not None else default[self.method]

    @property
    def min_lr(self) -> float:
        return self.peak_lr * self.min_lr_ratio


def build_method(base: GPT, cfg: TuneConfig):
    """The model to train: the frozen base wearing the method (or a trainable copy for full)."""
    from .prefix import BlockInputPrefixGPT, PrefixGPT
    from .soft_prompt import SoftPromptGPT

    kw = {"text": cfg.init_text, "seed": cfg.seed}
    if cfg.init is not None:
        kw["init"] = cfg.init
    if cfg.method == "full":
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if cfg.method == "soft":
        return SoftPromptGPT(base, cfg.prompt_len, **kw)
    if cfg.method == "prefix":
        return PrefixGPT(base, cfg.prompt_len, cfg.reparam_dim or base.config.d_model, cfg.hidden, **kw)
    if cfg.method == "prefix-direct":
        return PrefixGPT(base, cfg.prompt_len, None, **kw)
    return BlockInputPrefixGPT(base, cfg.prompt_len, cfg.reparam_dim, cfg.hidden, **kw)


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def tune(base: GPT, tok: Tokenizer, cfg: TuneConfig, run_dir=None, device="cpu", progress=True,
         init_from=None, on_step=None):
    """Train cfg.method on cfg.task; returns (model with the best dev weights, history).

    run_dir: where checkpoint.pt (for resuming) and best.safetensors (the artifact) go.
    init_from: a saved artifact of the same method to continue from.
    The batch of step s depends only on (seed, s), so a resumed run repeats an uninterrupted one.
    """
    from .artifacts import atomic_save, load_prompt, save_prompt

    base = base.to(device)
    base_before = {k: v.clone() for k, v in base.state_dict().items()} if cfg.method != "full" else None
    model = build_method(base, cfg).to(device)
    if init_from is not None:  # start from a saved artifact: its stored (direct, merged) form
        loaded = load_prompt(init_from, base)
        if type(loaded) is not type(model):
            raise ValueError(f"{init_from} holds a {type(loaded).__name__}, not a {type(model).__name__}")
        if getattr(model, "reparam_dim", None) is not None:
            raise ValueError("continuing needs the direct form: use prefix-direct (or block-prefix "
                             "without --reparam-dim); the stored artifact holds no MLP")
        if hasattr(model, "prompt") and loaded.prompt().shape != model.prompt().shape:
            raise ValueError(f"{init_from} holds a prompt of shape {tuple(loaded.prompt().shape)}, "
                             f"this run wants {tuple(model.prompt().shape)}: match --prompt-len")
        model.load_state_dict(loaded.state_dict())
    base.grad_checkpointing = cfg.grad_checkpointing
    train_exs = examples(cfg.task, "train", cfg.n_train, seed=cfg.seed)
    dev_exs = examples(cfg.task, "dev", cfg.n_dev, seed=cfg.seed)
    opt = make_optimizer(model.parameters(), cfg.peak_lr, cfg.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    run_dir = Path(run_dir) if run_dir is not None else None
    ckpt_path = run_dir / "checkpoint.pt" if run_dir else None
    step, best, history = 0, None, []
    if ckpt_path is not None and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt["config"] != json.loads(json.dumps(asdict(cfg))):
            raise ValueError(f"{ckpt_path} was written by another configuration; "
                             "pass another --run-dir, or delete that one to start over")
        model.load_state_dict(ckpt["trainable"], strict=False)
        opt.load_state_dict(ckpt["optimizer"])
        step, history = ckpt["step"], ckpt["history"]
        best = {"dev": ckpt["best_dev"], "state": ckpt["best"]}

    def save_best():
        if run_dir is not None and best is not None:
            current = trainable_state(model)
            model.load_state_dict(best["state"], strict=False)
            save_prompt(model, run_dir / "best.safetensors", base, {"task": cfg.task, "dev": best["dev"]})
            model.load_state_dict(current, strict=False)

    def checkpoint():
        if ckpt_path is not None:
            state = {"trainable": trainable_state(model), "optimizer": opt.state_dict(), "step": step,
                     "history": history, "best": best["state"], "best_dev": best["dev"],
                     "config": json.loads(json.dumps(asdict(cfg)))}
            atomic_save(state, ckpt_path)

    def evaluate():
        nonlocal best
        dev = score(model, tok, dev_exs)
        history.append({"step": step, "dev_exact_match": dev["exact_match"], "dev_loss": dev["loss"],
                        "train_loss": last_loss, "time": time.time() - t0})
        if best is None or dev["exact_match"] > best["dev"]["exact_match"] or (
            dev["exact_match"] == best["dev"]["exact_match"] and dev["loss"] < best["dev"]["loss"]
        ):
            best = {"dev": dev, "state": trainable_state(model)}
            save_best()
        return dev

    t0, last_loss = time.time(), None
    if best is None:
        evaluate()  # step 0: the untrained method, the baseline every curve starts from
    def train_mode():
        model.train()
        if cfg.method != "full":
            base.eval()  # the frozen base runs without dropout noise

    train_mode()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"{cfg.method} on {cfg.task}", disable=not progress)
    try:
        while step < cfg.steps:
            rng = random.Random(cfg.seed * 1_000_003 + step)
            idx, targets = answer_batch(tok, rng.choices(train_exs, k=cfg.batch_size), device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, cfg.warmup, cfg.peak_lr, cfg.min_lr)
            with autocast(device, cfg.bf16):
                _, loss = model(idx, targets)
            if not torch.isfinite(loss):
                save_best()
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step} ({cfg.method}, lr={cfg.peak_lr:g}); "
                    f"stopped. The best artifact so far is kept"
                    f"{' in ' + str(run_dir / 'best.safetensors') if run_dir else ''}; try a lower --lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step, last_loss = step + 1, loss.item()
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.3f}", dev_em=f"{best['dev']['exact_match']:.2f}")
            if step % cfg.eval_every == 0 or step == cfg.steps:
                evaluate()
                train_mode()
                checkpoint()
            if on_step is not None:
                on_step(step, last_loss)
    except KeyboardInterrupt:
        checkpoint()
        raise
    finally:
        bar.close()
        base.grad_checkpointing = False
    if base_before is not None:  # the promise of every method here: the base is never modified
        for k, v in base.state_dict().items():
            if not torch.equal(v, base_before[k]):
                raise RuntimeError(f"base weight {k} changed during tuning: this is a bug, please report it")
    model.load_state_dict(best["state"], strict=False)
    return model.eval(), history
