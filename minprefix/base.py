"""The shipped base model: how it is pretrained, saved, fingerprinted and loaded.

`minprefix pretrain` trains a GPT on the tiny world (loss on the whole text), checkpointing
atomically so an interrupted run resumes where it stopped and ends with the same weights.
The result ships inside the package (`minprefix/weights/`), so `load_base()` is instant.
"""

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .artifacts import atomic_save, fingerprint
from .model import GPT, GPTConfig, autocast
from .train import lr_at, make_optimizer
from .world import PRETRAIN_TASKS, Tokenizer, pretrain_batch

SHIPPED_DIR = Path(__file__).parent / "weights"


@dataclass
class PretrainConfig:
    steps: int = 1700  # optimizer steps (8 to 9 minutes on 2 CPU cores)
    batch_size: int = 32  # packed rows per step
    lr: float = 2e-3  # peak learning rate, after warmup
    min_lr: float = 2e-4  # end of the cosine decay
    warmup: int = 100  # linear warmup steps
    weight_decay: float = 0.1  # AdamW, on matrices only
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0  # initial weights and the data of every step
    checkpoint_every: int = 100  # steps between atomic checkpoints
    bf16: bool = False  # bf16 autocast on a GPU (ignored on CPU: fp32 there)
    # how often each task is drawn: sorting and the 180-word lexicon need the most practice
    task_weights: dict = field(
        default_factory=lambda: {**dict.fromkeys(PRETRAIN_TASKS, 1.0), "translate": 1.5, "sort": 2.0}
    )
    model: GPTConfig = field(default_factory=GPTConfig)


def pretrain(cfg: PretrainConfig, run_dir, device="cpu", progress=True, on_step=None) -> GPT:
    """Pretrain a base on the tiny world, resuming from `run_dir/checkpoint.pt` if present.

    The data of step s depends only on (seed, s), so a resumed run sees exactly the batches
    an uninterrupted one would. on_step(step, loss) is called after every step (tests use it
    to interrupt a run).
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / "checkpoint.pt"
    tok = Tokenizer()
    if cfg.model.vocab_size != tok.vocab_size:
        raise ValueError(f"model vocab_size {cfg.model.vocab_size} != tokenizer's {tok.vocab_size}")
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model).to(device)
    opt = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay)
    step = 0
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        if ckpt["config"] != json.loads(json.dumps(asdict(cfg))):
            raise ValueError(f"{ckpt_path} was written with another configuration; use a new run dir")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]

    def checkpoint():
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                 "config": json.loads(json.dumps(asdict(cfg)))}
        atomic_save(state, ckpt_path)

    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", disable=not progress)
    t0, tokens = time.time(), 0
    try:
        while step < cfg.steps:
            rng = random.Random(cfg.seed * 1_000_003 + step)
            x, y = pretrain_batch(tok, rng, cfg.batch_size, cfg.model.block_size, cfg.task_weights, device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg.steps, cfg.warmup, cfg.lr, cfg.min_lr)
            with autocast(device, cfg.bf16):
                _, loss = model(x, y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; last checkpoint kept")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            tokens += x.numel()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tokens / (time.time() - t0):.0f}")
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint()
            if on_step is not None:
                on_step(step, loss.item())
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        raise
    bar.close()
    return model.eval()


# ---------------------------------------------------------------------------- saving, loading


def save_base(model: GPT, out_dir, meta: dict | None = None):
    """Weights as safetensors and config (+ meta) as JSON, both written atomically."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    atomic_save(state, out_dir / "model.safetensors", saver=lambda s, p: save_file(s, str(p)))
    info = {"config": asdict(model.config), "fingerprint": fingerprint(model), **(meta or {})}
    atomic_save(json.dumps(info, indent=2), out_dir / "config.json", saver=lambda s, p: Path(p).write_text(s))


def load_model(path, device="cpu") -> GPT:
    """A GPT from a directory written by save_base; a missing or corrupt file is a clear error."""
    path = Path(path)
    try:
        info = json.loads((path / "config.json").read_text())
        model = GPT(GPTConfig(**info["config"]))
        state = load_file(str(path / "model.safetensors"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"no base model at {path}: {e.filename} is missing "
                                "(run `minprefix pretrain` to build one)") from None
    except (json.JSONDecodeError, KeyError, TypeError, SafetensorError) as e:
        raise ValueError(f"corrupt base model files in {path}: {e}") from None
    missing = set(model.state_dict()) - set(state) - {"lm_head.weight"}
    if missing:
        raise ValueError(f"corrupt base model in {path}: missing tensors {sorted(missing)}")
    model.load_state_dict(state, strict=False)
    if info.get("fingerprint") not in (None, fingerprint(model)):
        raise ValueError(f"corrupt base model in {path}: weights do not match the recorded fingerprint")
    return model.to(device)


def load_base(device="cpu", path=SHIPPED_DIR) -> tuple[GPT, Tokenizer]:
    """The shipped base, frozen and in eval mode, with its tokenizer."""
    return load_model(path, device).freeze(), Tokenizer()
