"""Saved prompts: one safetensors file, its JSON metadata in the header, written atomically.

The metadata names the method, the shapes and the base's fingerprint, so an artifact loaded
onto another base, or a damaged file, is a clear error instead of silently wrong logits.
"""

import copy
import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .methods import method_named, method_of
from .model import GPT
from .prefix import LAYERS
from .prompted import DirectPrefix

FORMAT = "minprefix-artifact-1"


def atomic_save(obj, path, saver=torch.save):
    """Write to a temporary file, then rename: a crash never leaves half a file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: two writers never share it
    try:
        saver(obj, tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # as a plain open() would make it (some savers make 0600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path, text: str):
    """`atomic_save` for a text file (JSON, markdown)."""
    atomic_save(text, path, saver=lambda t, p: Path(p).write_text(t))


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes, in name order: one flipped byte changes it."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_tensors(tensors: dict[str, torch.Tensor], info: dict, path):
    """One safetensors file: the tensors, and `info` plus their checksum as JSON in its header, written atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    info = {**info, "sha256": tensor_checksum(tensors)}
    atomic_save(tensors, path, lambda t, p: save_file(t, str(p), metadata={"minprefix": json.dumps(info)}))


def read_tensors(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(info, tensors) of a file written by `write_tensors`, on the CPU; SafetensorError, KeyError or
    JSONDecodeError if it cannot be read, a ValueError if its bytes do not match a recorded checksum."""
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {})["minprefix"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if not isinstance(info, dict):
        raise ValueError(f"{path}: its metadata is a {type(info).__name__}, not a JSON object")
    if "sha256" in info and info["sha256"] != tensor_checksum(tensors):  # files from before checksums have none
        raise ValueError(f"{path}: tensor data does not match its checksum: the file is damaged")
    return info, tensors


def fingerprint(model: GPT) -> str:
    """Short SHA-256 of the config and every weight: artifacts record it to name their base."""
    config = {k: v for k, v in asdict(model.config).items() if k != "pad_id"}  # names a token, changes no number:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())  # bases from before the field keep their name
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def stored_tensors(model) -> dict[str, torch.Tensor]:
    """What an artifact keeps: the merged prompt (no MLP), or every weight for full fine-tuning."""
    if method_of(model).trains_base:
        return {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return {"prompt": model.merge().prompt()}


def save_prompt(model, path, base: GPT, meta: dict | None = None):
    """Save a tuned method to `path` (.safetensors): its stored tensors and JSON metadata."""
    if not isinstance(base, GPT) or type(base) is not GPT:
        raise ValueError(f"base must be the frozen GPT the prompt was tuned on, not a {type(base).__name__}")
    if getattr(model, "base", base) is not base and fingerprint(model.base) != fingerprint(base):
        raise ValueError("base is not the GPT this model wears: its artifact could never be loaded onto it")
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in stored_tensors(model).items()}
    info = {
        "format": FORMAT,
        "method": method_of(model).name,
        "shapes": {k: list(v.shape) for k, v in tensors.items()},
        "base_fingerprint": fingerprint(base),
        "base_config": asdict(base.config),
        **({"layers": model.layers} if getattr(model, "layers", "all") != "all" else {}),
        **(meta or {}),
    }
    write_tensors(tensors, info, path)


def read_artifact(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of an artifact file; a missing or damaged file is a clear error."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no artifact at {path}")
    try:
        info, tensors = read_tensors(path)
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise ValueError(f"{path} is not a readable minprefix artifact (corrupt or another format): {e}") from None
    if info.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown artifact format {info.get('format')!r}, expected {FORMAT!r}")
    check_info(path, info, tensors)
    return info, tensors


def check_info(path, info: dict, tensors: dict[str, torch.Tensor]):
    """Every metadata field the loader reads, checked: a hand-edited header is an error naming its field."""
    for name in ("method", "base_fingerprint"):
        if not isinstance(info.get(name), str):
            raise ValueError(f"{path}: metadata field {name!r} is missing or not a string ({info.get(name)!r})")
    if not isinstance(info.get("base_config"), dict):
        raise ValueError(f"{path}: metadata field 'base_config' is missing or not an object")
    shapes = {k: list(v.shape) for k, v in tensors.items()}
    if info.get("shapes") != shapes:
        raise ValueError(f"{path}: metadata field 'shapes' ({info.get('shapes')!r}) does not match the tensors "
                         f"the file holds ({shapes})")
    if "layers" in info and info["layers"] not in LAYERS:
        raise ValueError(f"{path}: metadata field 'layers' is {info['layers']!r}, not one of {', '.join(LAYERS)}")


def load_prompt(path, base: GPT):
    """The tuned model saved at `path`, worn by `base` (which must be the base it was tuned on)."""
    info, tensors = read_artifact(path)
    fp = fingerprint(base)
    if info["base_fingerprint"] != fp:
        raise ValueError(
            f"{path} was tuned on base {info['base_fingerprint']} (config {info['base_config']}), "
            f"but this base is {fp} (config {asdict(base.config)}): load it onto the base it was tuned on"
        )
    try:
        wearer = method_named(info["method"]).model  # an old name is read under its new one
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    device, dtype = base.wte.weight.device, base.wte.weight.dtype
    if wearer is None:
        model = copy.deepcopy(base)
        model.load_state_dict({k: v.to(device, dtype) for k, v in tensors.items()}, strict=False)
        return model
    if "prompt" not in tensors:
        raise ValueError(f"{path}: no 'prompt' tensor for method {info['method']!r}")
    try:
        kwargs = {"layers": info["layers"]} if "layers" in info else {}
        return wearer.from_rows(base, wearer.to_rows(tensors["prompt"].to(device, dtype)), **kwargs)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{path}: {e}") from None


def load_into(model, path, base: GPT):
    """Continue training `model` from the artifact at `path`: same kind of rows, same length, direct."""
    loaded = load_prompt(path, base)
    want, got = method_of(model).name, method_of(loaded).name
    if hasattr(model, "rows") and not isinstance(model.rows, DirectPrefix):
        raise ValueError(f"{path} holds merged rows, without the MLP: continue with {want}, the direct method")
    if got != want:
        raise ValueError(f"{path} holds a {got} artifact; this run trains {want}")
    if not method_of(model).trains_base and loaded.prompt().shape != model.prompt().shape:
        raise ValueError(f"{path} holds a prompt of shape {tuple(loaded.prompt().shape)}, "
                         f"this run wants {tuple(model.prompt().shape)}: match --prompt-len")
    model.load_state_dict(loaded.state_dict())
