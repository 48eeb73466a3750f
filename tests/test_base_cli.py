"""Pretraining (resume after interruption), the shipped base, and the command line."""

import json

import pytest
import torch

from minprefix.artifacts import fingerprint
from minprefix.base import SHIPPED_DIR, PretrainConfig, load_base, load_model, pretrain, save_base
from minprefix.cli import main
from minprefix.model import GPTConfig
from minprefix.world import Tokenizer


def tiny_pretrain_config():
    model = GPTConfig(vocab_size=Tokenizer().vocab_size, block_size=32, n_layer=1, n_head=2, d_model=16)
    return PretrainConfig(steps=8, batch_size=4, warmup=2, checkpoint_every=3, model=model)


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path):
    cfg = tiny_pretrain_config()
    straight = pretrain(cfg, tmp_path / "a", progress=False)

    def interrupt(step, loss):
        if step == 5:  # after the checkpoint at step 3: steps 4 and 5 are redone from the Ctrl-C save
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "b", progress=False, on_step=interrupt)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 5
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


def test_shipped_base_follows_an_instruction():
    model, tok = load_base()
    prompt = "Spell 'kram' backwards: "
    idx = torch.tensor([tok.encode(prompt)])
    out = model.generate(idx, 10, top_k=1, stop_id=tok.eos_id)
    assert tok.decode(out[0, idx.size(1):].tolist()) == "mark"


# ---------------------------------------------------------------------------- command line


def run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    return e.value.code, capsys.readouterr()


def test_cli_generate(capsys):
    main(["generate", "--prompt", "Write 'abc' in capital letters: "])
    assert capsys.readouterr().out.strip().endswith("ABC")


def test_cli_info_prints_the_counts(capsys):
    main(["info"])
    out = capsys.readouterr().out
    assert "491,520" in out  # GPT-2 medium key/value prefix, P=10
    assert "10,240" in out  # GPT-2 medium soft prompt, P=10


def test_cli_errors_are_one_line(capsys):
    code, out = run(capsys, "generate", "--prompt", "price in €")
    assert code == 1 and "unknown character '€'" in out.err and "Traceback" not in out.err
    code, out = run(capsys, "tune", "--method", "lora", "--task", "bare-reverse")
    assert code == 1 and len(out.err.strip().splitlines()) == 1
    code, out = run(capsys, "generate", "--prompt", "x" * 200)
    assert code == 1 and "context of 128 positions" in out.err


def test_cli_tune_then_generate_with_the_artifact(capsys, tmp_path):
    """generate --artifact wears the tuned prefix: its continuation is the loaded model's own greedy one,
    and not the base's."""
    from minprefix.artifacts import load_prompt

    main(["tune", "--method", "prefix", "--task", "bare-uppercase", "--steps", "30", "--eval-every", "10",
          "--n-dev", "50", "--run-dir", str(tmp_path)])
    assert "test exact match" in capsys.readouterr().out
    prompt = "'quiz': "
    main(["generate", "--prompt", prompt, "--artifact", str(tmp_path / "best.safetensors")])
    worn = capsys.readouterr().out.strip().removeprefix(prompt)
    main(["generate", "--prompt", prompt])
    bare = capsys.readouterr().out.strip().removeprefix(prompt)
    base, tok = load_base()
    ids = torch.tensor([tok.encode(prompt)])
    tuned = load_prompt(tmp_path / "best.safetensors", base)
    assert worn == tok.decode(tuned.generate(ids, 40, top_k=1, stop_id=tok.eos_id)[0, ids.size(1):].tolist())
    assert worn != bare


def test_cli_search_prompt_prints_before_and_after(capsys):
    main(["search-prompt", "--task", "reverse", "--steps", "2", "--top-k", "2"])
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "Spell '{x}' backwards: " in out and "**********" in out


def test_demo_runs_end_to_end_and_draws_its_figure(tmp_path, capsys):
    from minprefix.lab.demo import run_demo

    rows = run_demo(load_base(), figure=tmp_path / "demo.png", steps=2, tasks=("bare-reverse",),
                    methods=("soft", "prefix-mlp"), progress=False)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert [r["method"] for r in rows] == ["soft", "prefix-mlp"]
    assert "| base, no tuning |" in capsys.readouterr().out


def test_a_built_wheel_carries_the_shipped_base(tmp_path):
    """`pip install .` (not editable) must be able to load_base(): the weights travel in the wheel."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"  # a copy, so that building leaves nothing in the source tree
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "minprefix", src / "minprefix", ignore=shutil.ignore_patterns("__pycache__"))
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
