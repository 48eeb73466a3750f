"""Saved prompts: one safetensors file, its JSON metadata in the header, written atomically.

The metadata names the method, the shapes and the base's fingerprint, so an artifact loaded
onto another base, or a damaged file, is a clear error instead of silently wrong logits.
"""

import copy
import math
from dataclasses import asdict

import torch
from safetensors import SafetensorError

from .files import fingerprint, mismatched, read_tensors, regular_file, short, weight_shapes, write_tensors
from .methods import method_named, method_of
from .model import GPT
from .prefix import LAYERS
from .prompted import DirectPrefix

FORMAT = "minprefix-artifact-1"


def stored_tensors(model) -> dict[str, torch.Tensor]:
    """What an artifact keeps: the prompt the rows make (the merged form: no network), or every weight for full
    fine-tuning."""
    if method_of(model).trains_base:
        return {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    return {"prompt": model.prompt().detach()}  # what merge() would hold, without building the merged model


def save_prompt(model, path, base: GPT, meta: dict | None = None):
    """Save a tuned method to `path` (.safetensors): its stored tensors and JSON metadata (plus `meta`'s fields)."""
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
        **({"tokenizer": base.characters} if base.characters is not None else {}),
        **({"layers": model.layers} if getattr(model, "layers", "all") != "all" else {}),
    }
    owned = sorted((set(info) | {"layers", "covers", "sha256"}) & set(meta or {}))
    if owned:
        raise ValueError(f"save_prompt: meta may not set {', '.join(owned)}: the artifact's own fields")
    write_tensors(tensors, {**info, **(meta or {})}, path)


def read_artifact(path, base: GPT | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of an artifact file; a missing or damaged file, or (given `base`) one tuned on another
    base or declaring tensors that base cannot wear, is a clear error, before any tensor is read."""
    path = regular_file(path, "artifact")

    def check(info, shapes):
        if info.get("format") != FORMAT:
            raise ValueError(f"{path}: unknown artifact format {info.get('format')!r}, expected {FORMAT!r}")
        check_info(path, info, shapes)
        if base is not None:
            check_base(path, info, shapes, base)

    try:
        return read_tensors(path, check)
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable minprefix artifact (corrupt or another format): "
                         f"{short(e)}") from None


def check_info(path, info: dict, shapes: dict[str, list[int]]):
    """Every metadata field the loader reads, checked: a hand-edited header is an error naming its field."""
    for name in ("method", "base_fingerprint"):
        if not isinstance(info.get(name), str):
            raise ValueError(f"{path}: metadata field {name!r} is missing or not a string ({info.get(name)!r})")
    if not isinstance(info.get("base_config"), dict):
        raise ValueError(f"{path}: metadata field 'base_config' is missing or not an object")
    if info.get("shapes") != shapes:
        raise ValueError(f"{path}: metadata field 'shapes' ({info.get('shapes')!r}) does not match the tensors "
                         f"the file holds ({shapes})")
    if "layers" in info and info["layers"] not in LAYERS:
        raise ValueError(f"{path}: metadata field 'layers' is {info['layers']!r}, not one of {', '.join(LAYERS)}")
    try:
        method_named(info["method"])
    except ValueError as e:
        raise ValueError(f"{path}: metadata field 'method': {e}") from None


def check_base(path, info: dict, shapes: dict[str, list[int]], base: GPT):
    """The artifact was tuned on `base`, and its declared tensors fit it (strictly: every weight for full)."""
    fp = fingerprint(base)
    if info["base_fingerprint"] != fp:
        same = info["base_config"] == asdict(base.config)
        raise ValueError(
            f"{path} was tuned on base {info['base_fingerprint']!r}, but this base is {fp!r} "
            + ("(the same config, other weights)" if same else
               f"(config {info['base_config']!r} vs {asdict(base.config)})")
            + ": load it onto the base it was tuned on")
    if None not in (info.get("tokenizer"), base.characters) and info["tokenizer"] != base.characters:
        raise ValueError(f"{path} was tuned with other tokenizer characters than this base's: its ids would mean "
                         "other characters here; load it onto the base it was tuned on")
    if method_named(info["method"]).model is None:  # full fine-tuning: every weight of the base, by name and shape
        wrong = mismatched(weight_shapes(base), shapes)
        if wrong:
            raise ValueError(f"{path}: its tensors are not the base's weights ({wrong}): the file is damaged")
        return
    c = base.config
    if list(shapes) != ["prompt"] or math.prod(shapes["prompt"]) > 2 * c.n_layer * c.block_size * c.d_model:
        raise ValueError(f"{path}: its tensors {shapes} are not one prompt this base can wear (at most 2 x n_layer "
                         "x block_size x d_model numbers): the file is damaged")


def load_prompt(path, base: GPT):
    """The tuned model saved at `path`, worn by `base` (which must be the base it was tuned on)."""
    info, tensors = read_artifact(path, base)
    wearer = method_named(info["method"]).model
    device, dtype = base.wte.weight.device, base.wte.weight.dtype
    if wearer is None:
        model = copy.deepcopy(base)
        model.load_state_dict({k: v.to(device, dtype) for k, v in tensors.items()}, strict=False)  # lm_head: tied
        return model
    try:
        kwargs = {"layers": info["layers"]} if "layers" in info else {}
        return wearer.from_rows(base, wearer.to_rows(tensors["prompt"].to(device, dtype)), **kwargs)
    except (ValueError, RuntimeError, IndexError) as e:  # IndexError: a tensor of fewer dimensions than its layout
        raise ValueError(f"{path}: {short(e)}") from None


def load_into(model, path, base: GPT):
    """Continue training `model` from the artifact at `path`: same kind of rows, same length, direct."""
    loaded = load_prompt(path, base)
    want, got = method_of(model).name, method_of(loaded).name
    if hasattr(model, "row_maker") and not isinstance(model.row_maker, DirectPrefix):
        raise ValueError(f"{path} holds merged rows, without the MLP: continue with {want}, the direct method")
    if got != want:
        raise ValueError(f"{path} holds a {got} artifact; this run trains {want}")
    if not method_of(model).trains_base and loaded.prompt().shape != model.prompt().shape:
        raise ValueError(f"{path} holds a prompt of shape {tuple(loaded.prompt().shape)}, "
                         f"this run wants {tuple(model.prompt().shape)}: match `prompt_len`")
    model.load_state_dict(loaded.state_dict())
