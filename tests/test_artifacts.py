"""Saved prompts (minprefix/artifacts.py): the round trip, and clear errors for another base or a corrupt file."""

import json

import pytest
import torch
from helpers import TOK, tiny_base
from safetensors import safe_open
from safetensors.torch import save_file

from minprefix.artifacts import load_prompt, save_prompt
from minprefix.files import read_tensors, write_tensors
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.soft_prompt import SoftPromptGPT


@pytest.mark.parametrize("make", [
    lambda b: SoftPromptGPT(b, 4, init="random"),
    lambda b: PrefixGPT(b, 4, reparam="mlp", reparam_dim=8, hidden=16),
    lambda b: BlockInputPrefixGPT(b, 4, reparam="mlp", reparam_dim=8, hidden=16),
])
def test_artifact_round_trip_gives_the_same_logits(tmp_path, make):
    base = tiny_base()
    model = make(base)
    save_prompt(model, tmp_path / "p.safetensors", base)
    idx = torch.randint(2, TOK.vocab_size, (2, 6))
    torch.testing.assert_close(load_prompt(tmp_path / "p.safetensors", base)(idx)[0], model(idx)[0])
    assert not list(tmp_path.glob("*.tmp")), "a temporary file was left behind"


def test_artifact_on_another_base_is_a_clear_error(tmp_path):
    save_prompt(PrefixGPT(tiny_base(0), 4), tmp_path / "p.safetensors", tiny_base(0))
    with pytest.raises(ValueError, match="was tuned on base"):
        load_prompt(tmp_path / "p.safetensors", tiny_base(1))


def test_corrupt_artifact_is_a_clear_error(tmp_path):
    path = tmp_path / "p.safetensors"
    save_prompt(SoftPromptGPT(tiny_base(), 4), path, tiny_base())
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="not a readable minprefix artifact"):
        load_prompt(path, tiny_base())


def test_an_artifact_saved_under_an_old_method_name_is_a_clear_error(tmp_path):
    """Before 0.1.0 the direct key/value prefix was `prefix-direct`: no alias reads it, one error names the field."""
    base = tiny_base()
    save_prompt(PrefixGPT(base, 4, init="random"), tmp_path / "old.safetensors", base)
    resign(tmp_path / "old.safetensors", lambda info: info.update(method="prefix-direct"))  # as an old release wrote it
    with pytest.raises(ValueError, match="metadata field 'method': unknown method 'prefix-direct'"):
        load_prompt(tmp_path / "old.safetensors", base)


def test_an_artifact_of_an_unknown_method_is_a_clear_error(tmp_path):
    base = tiny_base()
    save_prompt(PrefixGPT(base, 4), tmp_path / "p.safetensors", base)
    resign(tmp_path / "p.safetensors", lambda info: info.update(method="lora"))
    with pytest.raises(ValueError, match="unknown method 'lora'; choose from full, soft"):
        load_prompt(tmp_path / "p.safetensors", base)


# ---------------------------------------------------------------------------- integrity


def test_a_flipped_byte_in_an_artifact_is_caught_by_its_checksum(tmp_path):
    path = tmp_path / "p.safetensors"
    save_prompt(SoftPromptGPT(tiny_base(), 4), path, tiny_base())
    data = path.read_bytes()
    path.write_bytes(data[:-5] + bytes([data[-5] ^ 0x01]) + data[-4:])  # one bit of the prompt's last number
    with pytest.raises(ValueError, match="p.safetensors: tensor data or header does not match its checksum"):
        load_prompt(path, tiny_base())


def resign(path, edit):
    """The artifact at path with its JSON header edited and signed again, as an older release could have written it."""
    info, tensors = read_tensors(path)
    info.pop("sha256"), info.pop("covers")
    edit(info)
    write_tensors(tensors, info, path)


def rewrite_metadata(path, edit):
    """The artifact at path with its JSON header edited by hand (the tensors and their checksum untouched)."""
    with safe_open(str(path), framework="pt") as f:
        info, tensors = json.loads(f.metadata()["minprefix"]), {k: f.get_tensor(k) for k in f.keys()}
    edit(info)
    save_file(tensors, str(path), metadata={"minprefix": json.dumps(info)})


@pytest.mark.parametrize("field, edit", [
    ("shapes", lambda info: info.update(shapes={"prompt": [2, 3, 4]})),
    ("base_fingerprint", lambda info: info.pop("base_fingerprint")),
    ("layers", lambda info: info.update(layers="middle")),
    ("method", lambda info: info.update(method=7)),
    ("base_config", lambda info: info.pop("base_config")),
])
def test_each_hand_edited_metadata_field_is_named(tmp_path, field, edit):
    base = tiny_base()
    path = tmp_path / "p.safetensors"
    save_prompt(PrefixGPT(base, 4, layers="top"), path, base)
    rewrite_metadata(path, edit)
    with pytest.raises(ValueError, match=f"metadata field '{field}'"):
        load_prompt(path, base)


def test_saving_with_a_base_that_is_not_the_models_is_refused(tmp_path):
    base = tiny_base()
    model = PrefixGPT(base, 4)
    with pytest.raises(ValueError, match="base must be the frozen GPT"):
        save_prompt(model, tmp_path / "p.safetensors", model)  # the wearer itself, not its base
    with pytest.raises(ValueError, match="is not the GPT this model wears"):
        save_prompt(model, tmp_path / "p.safetensors", tiny_base(seed=1))
    assert not list(tmp_path.iterdir()), "nothing is written"
