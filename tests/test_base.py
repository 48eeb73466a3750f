"""The base (minprefix/base.py): pretraining and resuming, saving and loading, the shipped base, the wheel."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_base, tiny_config

import minprefix.files
from minprefix.artifacts import save_prompt
from minprefix.files import fingerprint
from minprefix.base import SHIPPED_DIR, load_base, load_model, save_base
from minprefix.pretrain import PretrainConfig, pretrain
from minprefix.scoring import score
from minprefix.soft_prompt import SoftPromptGPT
from minprefix.world import DOWNSTREAM_TASKS, PRETRAIN_TASKS, examples
from minprefix.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def tiny_pretrain_config():
    return PretrainConfig(steps=8, batch_size=4, warmup=2, checkpoint_every=3, model=tiny_config(n_layer=1))


# ---------------------------------------------------------------------------- pretraining


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path):
    cfg = tiny_pretrain_config()
    straight = pretrain(cfg, tmp_path / "a", progress=False)

    def interrupt(step, loss):
        if step == 5:  # after the checkpoint at step 3: steps 4 and 5 are redone from the Ctrl-C save
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "b", progress=False, on_step=interrupt)
    assert read_checkpoint(tmp_path / "b" / "checkpoint.safetensors")["step"] == 5
    resumed = pretrain(cfg, tmp_path / "b", progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_resuming_with_another_config_is_refused(tmp_path):
    cfg = tiny_pretrain_config()
    pretrain(cfg, tmp_path, progress=False)
    cfg.lr = 1.0
    with pytest.raises(ValueError, match="another configuration"):
        pretrain(cfg, tmp_path, progress=False)


def test_pretraining_loss_falls(tmp_path):
    cfg = tiny_pretrain_config()
    losses = []
    cfg.steps, cfg.checkpoint_every, cfg.lr = 40, 100, 1e-2
    pretrain(cfg, tmp_path, progress=False, on_step=lambda s, loss: losses.append(loss))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5


def test_save_and_load_base_round_trip(tmp_path):
    model = pretrain(tiny_pretrain_config(), tmp_path / "run", progress=False)
    save_base(model, tmp_path / "base")
    loaded = load_model(tmp_path / "base")
    assert fingerprint(loaded) == fingerprint(model)
    (tmp_path / "base" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load_model(tmp_path / "base")
    with pytest.raises(FileNotFoundError, match="minprefix pretrain"):
        load_model(tmp_path / "nowhere")


# ---------------------------------------------------------------------------- the shipped base


def test_shipped_base_loads_frozen_small_and_as_recorded():
    model, tok = load_base()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert model.config.vocab_size == tok.vocab_size
    files = list(SHIPPED_DIR.iterdir())
    assert sum(f.stat().st_size for f in files) < 10 * 2**20
    assert json.loads((SHIPPED_DIR / "config.json").read_text())["fingerprint"] == fingerprint(model)


@pytest.mark.parametrize("task", PRETRAIN_TASKS + DOWNSTREAM_TASKS)
def test_the_shipped_base_knows_its_skills_and_guesses_none_without_an_instruction(task):
    """Each pretraining task at least 98 % from its own templates; each downstream task, with no
    instruction, at most 5 % (a skill the base falls back on would be a head start for that task).
    On 200 test examples, with one example of slack either way for another CPU's rounding."""
    model, tok = load_base()
    got = score(model, tok, examples(task, "test", 200))["exact_match"]
    assert got >= 0.98 - 1 / 200 if task in PRETRAIN_TASKS else got <= 0.05 + 1 / 200, (task, got)


def test_shipped_base_follows_an_instruction():
    model, tok = load_base()
    prompt = "Spell 'kram' backwards: "
    idx = torch.tensor([tok.encode(prompt)])
    out = model.generate(idx, 10, top_k=1, stop_id=tok.eos_id)
    assert tok.decode(out[0, idx.size(1):].tolist()) == "mark"


# ---------------------------------------------------------------------------- the package


def test_a_built_wheel_carries_the_shipped_base(tmp_path):
    """`pip install .` (not editable) must be able to load_base(): the weights travel in the wheel."""
    src = tmp_path / "src"  # a copy, so that building leaves nothing in the source tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "minprefix", src / "minprefix", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src], check=True)
    wheel = next((tmp_path / "dist").glob("minprefix-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", tmp_path / "site", wheel], check=True)
    code = ("import minprefix; from minprefix import load_base; base, tok = load_base(); "
            "print(minprefix.__file__); print(base.num_params())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    where, n_params = out.stdout.split()
    assert where.startswith(str(tmp_path / "site")) and int(n_params) == load_base()[0].num_params()


def test_package_ships_a_license():
    assert "MIT License" in (ROOT / "LICENSE").read_text()


# ---------------------------------------------------------------------------- the environment


def test_load_base_takes_a_directory_first_or_says_how_to_call_it(tmp_path):
    save_base(tiny_base(), tmp_path / "base")
    model, _ = load_base(str(tmp_path / "base"))
    assert fingerprint(model) == fingerprint(tiny_base()) and str(model.wte.weight.device) == "cpu"
    assert fingerprint(load_base(tmp_path / "base")[0]) == fingerprint(model)
    with pytest.raises(ValueError, match="neither a device .* nor a directory; call load_base"):
        load_base(str(tmp_path / "nowhere"))


def test_written_files_have_a_normal_saves_mode(tmp_path):
    base = tiny_base()
    save_base(base, tmp_path / "base")
    save_prompt(SoftPromptGPT(base, 4), tmp_path / "p.safetensors", base)
    pretrain(tiny_pretrain_config(), tmp_path / "run", progress=False)
    old = os.umask(0o027)
    try:
        save_prompt(SoftPromptGPT(base, 4), tmp_path / "q.safetensors", base)
    finally:
        os.umask(old)
    want = 0o666 & ~minprefix.files.UMASK  # the umask as the process started: read once, at import
    files = [tmp_path / "base" / "model.safetensors", tmp_path / "base" / "config.json", tmp_path / "p.safetensors",
             tmp_path / "run" / "checkpoint.safetensors", tmp_path / "q.safetensors"]
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(want) for f in files}
