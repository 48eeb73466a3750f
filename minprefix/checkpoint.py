"""Checkpoints and run folders: what lets an interrupted run resume, and keeps two runs apart.

`Checkpoint` writes run_dir/checkpoint.safetensors atomically: every tensor (trainable weights,
optimizer state, the caller's) in safetensors, the rest as JSON in its header, with a checksum;
no pickle. A resume checks the configuration and what the run depends on (the base, an init
file) and names each difference. `run_lock` makes a run folder belong to one run at a time.
"""

import json
import os
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError

from . import distributed
from .artifacts import read_tensors, write_tensors
from .config import flag


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

    def resume(self, model, opt, state: dict, device) -> int:
        """The step to start from: 0, or the saved one with weights, optimizer and state restored."""
        if self.path is None:
            return 0
        if not self.path.exists():
            old = self.path.with_name("checkpoint.pt")
            if old.exists():  # an older minprefix's pickle: never unpickled, never silently ignored
                raise ValueError(f"{old} is a checkpoint of an older minprefix; delete it to start over "
                                 "(best.safetensors, if any, is kept)")
            return 0
        ckpt = read_checkpoint(self.path, device)
        differ = differences(ckpt["config"], ckpt["depends"], self.config, self.depends)
        if differ:
            raise ValueError(f"{self.path} was written by another configuration: {'; '.join(differ)}. "
                             "Run with the same ones, pass another --run-dir, or delete that one to start over")
        if set(ckpt["trainable"]) != set(trainable_state(model)):
            raise ValueError(f"{self.path} holds the weights of another method "
                             f"({', '.join(sorted(ckpt['trainable'])[:3])}, ...); pass another --run-dir, "
                             "or delete that one to start over")
        model.load_state_dict(ckpt["trainable"], strict=False)
        opt.load_state_dict(ckpt["optimizer"])
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


def read_checkpoint(path, device="cpu") -> dict:
    """What `Checkpoint.save` wrote at path, tensors on device; a damaged file is a ValueError saying so."""
    try:
        info, tensors = read_tensors(path)
        if info.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"format {info.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        ckpt = unpack(info, {k: v.to(device) for k, v in tensors.items()})
        ckpt["optimizer"]["state"] = {int(k): v for k, v in ckpt["optimizer"]["state"].items()}  # JSON made them str
        for name, kind in (("step", int), ("config", dict), ("depends", dict), ("trainable", dict), ("state", dict)):
            if not isinstance(ckpt[name], kind):
                raise ValueError(f"its {name!r} is a {type(ckpt[name]).__name__}, not a {kind.__name__}")
    except (SafetensorError, KeyError, TypeError, ValueError, AttributeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is damaged ({e}); delete it to start over "
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


HOW = {"compile"}  # how a step runs, not what it computes: a run resumes with or without it (older ones lack it)


def differences(old_config: dict, old_depends: dict, config: dict, depends: dict) -> list[str]:
    """Each flag or input in which a checkpoint's run differs from this one, said in one phrase."""
    said = [f"{flag(k)} {old_config.get(k)!r} (checkpoint) vs {config.get(k)!r} (now)"
            for k in sorted((set(old_config) | set(config)) - HOW) if old_config.get(k) != config.get(k)]
    old, new = old_depends.get("base"), depends.get("base")
    if old != new:
        said.append(f"--base: fingerprint {old} (checkpoint) vs {new} (now)")
    old, new = old_depends.get("init_from"), depends.get("init_from")
    if old != new:
        said.append("--init-from: " + ("added" if old is None else "removed" if new is None else
                                       f"sha256 {old[:16]} (checkpoint) vs {new[:16]} (now)"))
    return said


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


@contextmanager
def run_lock(run_dir):
    """Hold run_dir/lock (our pid) while a run writes there; a live holder's lock stops us, a dead one's is taken."""
    if run_dir is None or not distributed.is_main():  # under torchrun the main rank holds it for all
        yield
        return
    path = Path(run_dir) / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # a stale lock is removed, then taken on the next try
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # atomic: only one creator wins
        except FileExistsError:
            text = path.read_text().strip() if path.exists() else ""
            holder = int(text) if text.isdigit() else None
            if holder is not None and pid_alive(holder):
                raise ValueError(f"{run_dir} is in use by pid {holder} (its lock file is {path}); wait for that "
                                 "run to end, or pass another --run-dir") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        break
    else:
        raise ValueError(f"{run_dir}: could not take the lock {path}; delete it if no run uses that folder")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
