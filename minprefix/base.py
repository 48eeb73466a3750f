"""The shipped base model: how it is saved and loaded (pretrain.py makes it).

The base ships inside the package (`minprefix/weights/`), so `load_base()` is instant; a
missing, corrupt or mismatched file is a clear error, found before the weights are read.
"""

import json
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from .files import (atomic_save, atomic_write_text, fingerprint, mismatched, read_json, read_tensors, short,
                    weight_shapes)
from .model import GPT, GPTConfig, is_device_name
from .world import CHARACTERS, SPECIAL_TOKENS, Tokenizer

SHIPPED_DIR = Path(__file__).parent / "weights"


def save_base(model: GPT, out_dir, meta: dict | None = None):
    """Weights as safetensors and config (+ meta) as JSON, both written atomically."""
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    atomic_save(state, out_dir / "model.safetensors", saver=lambda s, p: save_file(s, str(p)))
    info = {"config": asdict(model.config), "fingerprint": fingerprint(model),
            **({"tokenizer": model.characters} if model.characters is not None else {}), **(meta or {})}
    atomic_write_text(out_dir / "config.json", json.dumps(info, indent=2))


def load_model(path, device="cpu") -> GPT:
    """A GPT from a directory written by save_base; a missing, corrupt or mismatched file is a clear error, found
    before the weights are read."""
    path = Path(path)
    if not (path / "config.json").exists() and not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"no base model at {path} (run `minprefix pretrain` to build one)")
    info = read_json(path / "config.json", "base config")
    if not isinstance(info, dict) or not isinstance(info.get("config"), dict):
        raise ValueError(f"{path / 'config.json'}: its field 'config' is missing or not an object")
    try:  # saved before pad_id: pretrain made it, on the world
        config = GPTConfig(**{"pad_id": Tokenizer().pad_id, **info["config"]})
        with torch.device("meta"):  # the shapes alone: a config the file does not match allocates nothing
            want = weight_shapes(GPT(config))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path / 'config.json'}: field 'config': {short(e)}") from None
    characters = tokenizer_characters(path / "config.json", info, config.vocab_size)

    def check(_, shapes):
        wrong = mismatched(want, shapes)
        if wrong:
            raise ValueError(f"{path / 'model.safetensors'}: its tensors are not this config's weights ({wrong})")

    try:
        _, state = read_tensors(path / "model.safetensors", check)
    except SafetensorError as e:
        raise ValueError(f"corrupt base model in {path}: {short(e)}") from None
    model = GPT(config)
    model.characters = characters
    model.load_state_dict(state, strict=False)  # every key checked above; lm_head.weight is wte's
    if info.get("fingerprint") not in (None, fingerprint(model)):
        raise ValueError(f"corrupt base model in {path}: weights do not match the recorded fingerprint")
    return model.to(device)


def tokenizer_characters(path, info: dict, vocab_size: int) -> str:
    """The characters a base's config.json records (a base saved before the field: the world's), checked."""
    chars = info.get("tokenizer", CHARACTERS)
    if not isinstance(chars, str) or len(set(chars)) != len(chars) or len(chars) + len(SPECIAL_TOKENS) != vocab_size:
        raise ValueError(f"{path}: field 'tokenizer' must be a string of {vocab_size - len(SPECIAL_TOKENS)} distinct "
                         f"characters (vocab_size {vocab_size} less <pad> and <eos>), got {short(repr(chars))}")
    return chars


def load_base(device="cpu", path=SHIPPED_DIR) -> tuple[GPT, Tokenizer]:
    """The shipped base (or the one saved at `path`), frozen and in eval mode, with its tokenizer.

    load_base("/a/dir") is read as load_base(path="/a/dir"), on the CPU.
    """
    device = str(device) if isinstance(device, torch.device) else device
    if not is_device_name(device) and isinstance(device, (str, Path)) and Path(device).is_dir():
        device, path = "cpu", device  # a directory given first: the base meant, not a device
    elif not is_device_name(device):
        raise ValueError(f"load_base: {device!r} is neither a device (cpu, cuda, cuda:N, mps) nor a directory; "
                         "call load_base(device) or load_base(path=DIR) or load_base(device, DIR)")
    model = load_model(path, device).freeze()
    return model, Tokenizer(model.characters)
