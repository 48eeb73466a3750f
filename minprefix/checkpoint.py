"""Checkpoints and run folders: what lets an interrupted run resume, and keeps two runs apart.

`Checkpoint` writes run_dir/checkpoint.safetensors atomically: every tensor (trainable weights,
optimizer state, the caller's) in safetensors, the rest as JSON in its header, with a checksum;
no pickle. A resume checks the configuration and what the run depends on (the base, an init
file) and names each difference. `run_lock` makes a run folder belong to one run at a time.
"""

import fcntl
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError

from . import distributed
from .files import read_tensors, remove_stale_temporaries, short, write_tensors


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class Checkpoint:
    """run_dir/checkpoint.safetensors, written atomically: every tensor (trainable weights, optimizer state, the
    caller's) in safetensors, the rest (step, config, what the run depends on, optimizer settings, the caller's
    state) as JSON in its header, with a checksum of the tensors. No pickle."""

    def __init__(self, run_dir, cfg, depends: dict | None = None):
        self.path = Path(run_dir) / "checkpoint.safetensors" if run_dir is not None else None
        self.config = json.loads(json.dumps(asdict(cfg)))  # as JSON would give it back
        self.depends = depends or {}  # e.g. the base's fingerprint, the sha256 of an init_from file

    def resume(self, model, opt, state: dict, device, check_state=None) -> int:
        """The step to start from: 0, or the saved one with weights, optimizer and state restored.
        check_state(saved state) says what is wrong with the caller's saved state, or None."""
        if self.path is None:
            return 0
        if not self.path.exists():
            return 0
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        # the weights, AdamW's two moments, a copy of the best weights, and small change: a header that declares
        # more is refused before a byte of it is read
        ckpt = read_checkpoint(self.path, device, max_numbers=4 * trainable + 4096)
        differ = differences(ckpt["config"], ckpt["depends"], self.config, self.depends)
        if differ:
            raise ValueError(f"{self.path} was written by another configuration: {'; '.join(differ)}. "
                             "Run with the same ones, pass another `run_dir`, or delete that one to start over")
        if set(ckpt["trainable"]) != set(trainable_state(model)):
            raise ValueError(f"{self.path} holds the weights of another method "
                             f"({', '.join(sorted(ckpt['trainable'])[:3])}, ...); pass another `run_dir`, "
                             "or delete that one to start over")
        mine = {n: p for n, p in model.named_parameters() if p.requires_grad}
        shaped = lambda v, p: isinstance(v, torch.Tensor) and v.shape == p.shape  # noqa: E731
        try:
            wrong = next((n for n, v in ckpt["trainable"].items() if not shaped(v, mine[n])), None)
            if wrong is None:
                opt.load_state_dict(ckpt["optimizer"])  # AdamW: moments of their weight's shape, a step count
                wrong = next((f"the optimizer's {k} of {n}" for n, p in mine.items() for k, v in opt.state[p].items()
                              if (v.dim() != 0 if k == "step" else not shaped(v, p))), None)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as e:
            wrong = f"its optimizer state ({short(e)})"
        if wrong is not None:
            raise ValueError(f"{self.path} is damaged or of another model: {wrong} does not fit this run; delete "
                             "it to start over (best.safetensors, if any, is kept)")
        wrong = check_state(ckpt["state"]) if check_state is not None else None
        if wrong is not None:
            raise ValueError(f"{self.path} is damaged or of another run: {wrong}; delete it to start over "
                             "(best.safetensors, if any, is kept)")
        model.load_state_dict(ckpt["trainable"], strict=False)
        state.update(ckpt["state"])
        return ckpt["step"]

    def save(self, model, opt, step: int, state: dict):
        if self.path is not None and distributed.is_main():  # every rank holds the same weights
            tensors = {}
            info = pack({"trainable": trainable_state(model), "optimizer": opt.state_dict(), "state": state},
                        "", tensors)
            write_tensors(tensors, {"format": CHECKPOINT_FORMAT, "step": step, "config": self.config,
                                    "depends": self.depends, **info}, self.path)


CHECKPOINT_FORMAT = "minprefix-checkpoint-1"


def read_checkpoint(path, device="cpu", max_numbers: int | None = None) -> dict:
    """What `Checkpoint.save` wrote at path, tensors on device; a damaged file is a ValueError saying so.
    max_numbers: the most numbers its tensors may hold, checked on the header before any tensor is read."""
    def check(info, shapes):
        declared = sum(math.prod(s) for s in shapes.values())
        if max_numbers is not None and declared > max_numbers:
            raise ValueError(f"its tensors declare {declared:,} numbers, more than this run's weights and optimizer "
                             f"state can hold ({max_numbers:,})")

    try:
        info, tensors = read_tensors(path, check)
        if info.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {info.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        ckpt = unpack(info, {k: v.to(device) for k, v in tensors.items()})
        ckpt["optimizer"]["state"] = {int(k): v for k, v in ckpt["optimizer"]["state"].items()}  # JSON made them str
        for name, kind in (("step", int), ("config", dict), ("depends", dict), ("trainable", dict), ("state", dict)):
            if not isinstance(ckpt[name], kind) or isinstance(ckpt[name], bool):
                raise ValueError(f"its {name!r} is a {type(ckpt[name]).__name__}, not a {kind.__name__}")
        if not 0 <= ckpt["step"] <= ckpt["config"].get("steps", ckpt["step"]):
            raise ValueError(f"its 'step' {ckpt['step']} is not within the run (0 to its steps)")
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{path} is damaged ({short(e)}); delete it to start over "
                         "(best.safetensors, if any, is kept)") from None
    return ckpt


def pack(obj, prefix: str, tensors: dict):
    """obj made JSON-able: each tensor in it goes to tensors[its path] and is left as {"__tensor__": path}."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {str(k): pack(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [pack(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unpack(obj, tensors: dict):
    """The inverse of `pack`."""
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


HOW = {"compile"}  # how a step runs, not what it computes: a run resumes with or without it


def differences(old_config: dict, old_depends: dict, config: dict, depends: dict) -> list[str]:
    """Each field or input in which a checkpoint's run differs from this one, said in one phrase."""
    def shown(v):  # None is "the default" (the method's lr, say), never the word None
        return "the default" if v is None else repr(v)
    said = [f"`{k}` {shown(old_config.get(k))} (checkpoint) vs {shown(config.get(k))} (now)"
            for k in sorted((set(old_config) | set(config)) - HOW) if old_config.get(k) != config.get(k)]
    old, new = old_depends.get("base"), depends.get("base")
    if old != new:
        said.append(f"`base`: fingerprint {old} (checkpoint) vs {new} (now)")
    old, new = old_depends.get("init_from"), depends.get("init_from")
    if old != new:
        said.append("`init_from`: " + ("added" if old is None else "removed" if new is None else
                                       f"sha256 {old[:16]} (checkpoint) vs {new[:16]} (now)"))
    return said


@contextmanager
def run_lock(run_dir):
    """Hold run_dir/lock while a run writes there: an flock on the open file, which the kernel releases when the
    process ends however it ends; the file names the holder's pid. A second run stops at once. Temporary files
    of dead writers are removed once the folder is ours."""
    if run_dir is None or not distributed.is_main():  # under torchrun the main rank holds it for all
        yield
        return
    path = Path(run_dir) / "lock"
    fd = take_lock(path)
    try:
        remove_stale_temporaries(run_dir)
        yield
    finally:
        try:
            if same_file(fd, path):  # only the holder removes it, and only while still holding it
                path.unlink()
        finally:
            os.close(fd)  # releases the flock


def take_lock(path: Path) -> int:
    """An open descriptor of `path` holding its exclusive flock, with our pid written in it."""
    for _ in range(100):  # only a lock file removed between our open and our flock makes us go round again
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise ValueError(f"cannot take the run folder's lock {path}: {e.strerror}; pass another `run_dir` "
                             "(a writable folder)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            holder = holder if holder.isdigit() else "?"  # not yet written (or not a pid: never shown raw)
            raise ValueError(f"{path.parent} is in use by pid {holder} (its lock file is {path}); wait "
                             "for that run to end, or pass another `run_dir`") from None
        if same_file(fd, path):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # its holder removed it before we held it: take the one now at path
    raise ValueError(f"could not take the lock {path}: it keeps being replaced; is another program removing it?")


def same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open at fd."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
