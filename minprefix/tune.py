"""Tuning: one method on one downstream task, with dev evaluation and the best artifact kept.

`TuneConfig` is the recipe (the loop's fields plus the method, the task and the method's
options); `tune` builds the method on the frozen base, hands the loop of train.py its batches
and its dev evaluation, and saves the best weights as an artifact.
"""

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from . import distributed
from .artifacts import load_into, save_prompt
from .checkpoint import trainable_state
from .config import arg
from .files import file_sha256, fingerprint
from .methods import DEFAULT_METHOD, METHODS
from .model import GPT
from .prefix import LAYERS
from .prompted import MLP_FORMS
from .scoring import score
from .train import LoopConfig, Run, optimize
from .world import (DOWNSTREAM_TASKS, PRETRAIN_TASKS, TUNE_TRAIN_SIZE, Tokenizer, answer_batch, check_tokenizer,
                    examples)


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
    init_text: str | None = arg(None, "start the rows from this text, repeated or cut to P tokens (means `init` text)")
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
        if self.steps is None:  # the method's own; for an unknown method a placeholder, and validate names the method
            self.steps = METHODS[self.method].steps if isinstance(self.method, str) and self.method in METHODS else 1
        super().__post_init__()
        if self.init_text is not None:  # a text to start from is init "text"
            if self.init not in (None, "text"):
                raise ValueError(f"`init_text` starts the rows from a text, but `init` is {self.init!r}: drop one")
            self.init = "text"
        if self.init == "text" and not self.init_text:
            raise ValueError("`init` text needs `init_text`, a non-empty text")
        try:
            METHODS[self.method].check_options(self.prefix_layers, self.reparam_dim, self.hidden, self.mlp_form,
                                               self.init)
        except ValueError as e:  # the refusal is the class's; say which of our fields asked for a text
            if self.init_text is None or "`init`" not in str(e):
                raise
            raise ValueError(f"`init_text` means {e}") from None

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
    check_tokenizer(tok, base)
    ids = tok.encode(cfg.init_text) if cfg.init_text is not None else None
    return METHODS[cfg.method].build(base, cfg.prompt_len, reparam_dim=cfg.reparam_dim, hidden=cfg.hidden,
                                     init=cfg.init, init_ids=ids, seed=cfg.seed, layers=cfg.prefix_layers,
                                     mlp_form=cfg.mlp_form)


def damaged_state(saved: dict, model) -> str | None:
    """What is wrong with the tuning state a checkpoint brings back (the dev history, the best weights so far), or
    None: a resumed run reads both at its next evaluation and at the end."""
    numbers = (int, float)
    history, best = saved.get("history"), saved.get("best")
    if not isinstance(history, list) or not all(
            isinstance(h, dict) and isinstance(h.get("step"), int) and isinstance(h.get("dev_exact_match"), numbers)
            and isinstance(h.get("dev_loss"), numbers) for h in history):
        return "its dev history is not a list of evaluations"
    if not (isinstance(best, dict) and isinstance(best.get("step"), int) and isinstance(best.get("dev"), dict)
            and all(isinstance(best["dev"].get(k), numbers) for k in ("exact_match", "loss"))):
        return "its best step is missing or not a step with its dev score"
    want = {k: v.shape for k, v in trainable_state(model).items()}
    weights = best.get("weights")
    if not isinstance(weights, dict) or {k: getattr(v, "shape", None) for k, v in weights.items()} != want:
        return "its best weights are not this model's trainable weights"
    return None


def tune(base: GPT, tok: Tokenizer, cfg: TuneConfig, run_dir=None, device="cpu", progress=True,
         init_from=None, on_step=None):
    """Train cfg.method on cfg.task; returns (model with the best dev weights, history).

    run_dir: where checkpoint.safetensors (for resuming) and best.safetensors (the artifact) go.
    init_from: a saved artifact of the same method to continue from.
    """
    base = base.to(device)
    init_sha = file_sha256(init_from, "artifact (`init_from`)") if init_from is not None else None
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
                                 stop=lambda: state.get("stop", False), check_state=lambda s: damaged_state(s, model)))
    finally:
        gpt.grad_checkpointing = False
    for k, v in base.state_dict().items():  # the promise of every method here: the base is never modified
        if not torch.equal(v, base_before[k]):
            raise RuntimeError(f"base weight {k} changed during tuning: this is a bug, please report it")
    if state["best"]["step"] == 0:
        warnings.warn(f"{cfg.method} on {cfg.task}: no step beat the untrained start on dev, so the best "
                      "(and saved) weights are the untrained ones; try more `steps` or another `lr`", stacklevel=2)
    model.load_state_dict(state["best"]["weights"], strict=False)
    return model.eval(), state["history"]
