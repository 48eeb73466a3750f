"""Checkpoints and run folders (minprefix/checkpoint.py), via `tune`: one run per folder, resume checks, no pickle."""

import dataclasses
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from helpers import TOK, quick, tiny_base
from hypothesis import given, settings
from hypothesis import strategies as st

from minprefix.artifacts import save_prompt
from minprefix.files import fingerprint, write_tensors
from minprefix.prefix import PrefixGPT
from minprefix.train import make_optimizer
from minprefix.tune import build_method, tune



def test_a_checkpoint_holding_another_methods_weights_is_refused(tmp_path):
    """The same configuration, another set of trainable weights (e.g. a checkpoint from before a rename)."""
    from minprefix.checkpoint import Checkpoint
    base, cfg = tiny_base(), quick("prefix")
    other = build_method(base, TOK, quick("prefix-mlp"))
    depends = {"base": fingerprint(base), "init_from": None}  # what tune records: only the weights differ
    Checkpoint(tmp_path, cfg, depends).save(other, make_optimizer(other.parameters(), 1e-3, 0.0), 4, {})
    with pytest.raises(ValueError, match="holds the weights of another method"):
        tune(base, TOK, cfg, run_dir=tmp_path, progress=False)


# ---------------------------------------------------------------------------- one run per folder


def test_a_run_folder_in_use_by_a_live_process_is_refused(tmp_path):
    holds = (f"import fcntl, os, time; fd = os.open({str(tmp_path / 'lock')!r}, os.O_RDWR | os.O_CREAT); "
             "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid()); print(flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", holds], stdout=subprocess.PIPE)  # as a run of it would hold it
    try:
        child.stdout.readline()
        with pytest.raises(ValueError, match=f"{tmp_path} is in use by pid {child.pid}"):
            tune(tiny_base(), TOK, quick("soft", steps=2), run_dir=tmp_path, progress=False)
        assert (tmp_path / "lock").read_text().strip() == str(child.pid), "another run's lock was touched"
    finally:
        child.kill()
        child.wait()
    assert not os.path.exists(tmp_path / "checkpoint.pt")


def test_a_stale_lock_is_taken_over_and_every_lock_is_released(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is free now
    (tmp_path / "lock").write_text(f"{dead.pid}\n")
    seen = []
    tune(tiny_base(), TOK, quick("soft", steps=2), run_dir=tmp_path, progress=False,
         on_step=lambda s, loss: seen.append((tmp_path / "lock").read_text().strip()))
    assert seen == [str(os.getpid())] * 2 and not (tmp_path / "lock").exists()

    def interrupt(step, loss):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tune(tiny_base(), TOK, quick("soft", steps=4), run_dir=tmp_path / "b", progress=False, on_step=interrupt)
    assert not (tmp_path / "b" / "lock").exists()


# ---------------------------------------------------------------------------- resume checks, no pickle


def test_a_resume_that_differs_names_each_difference(tmp_path):
    base = tiny_base()
    save_prompt(PrefixGPT(base, 4), tmp_path / "p.safetensors", base)
    tune(base, TOK, quick("prefix", steps=2, lr=0.01), run_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"`lr` 0.01 \(checkpoint\) vs 0.02 \(now\); `seed` 0 \(checkpoint\) vs 1"):
        tune(base, TOK, quick("prefix", steps=2, lr=0.02, seed=1), run_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=f"`base`: fingerprint {fingerprint(base)} \\(checkpoint\\) vs "
                                         f"{fingerprint(tiny_base(1))} \\(now\\)"):
        tune(tiny_base(1), TOK, quick("prefix", steps=2, lr=0.01), run_dir=tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="`init_from`: added"):
        tune(base, TOK, quick("prefix", steps=2, lr=0.01), run_dir=tmp_path / "run", progress=False,
             init_from=tmp_path / "p.safetensors")


def test_the_checkpoint_is_safetensors_with_json_and_no_pickle(tmp_path):
    from safetensors import safe_open
    tune(tiny_base(), TOK, quick("soft", steps=4, eval_every=2), run_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "checkpoint.safetensors"]
    with safe_open(str(tmp_path / "checkpoint.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert {"/trainable/row_maker.rows", "/state/best/weights/row_maker.rows"} <= names
    assert any(n.startswith("/optimizer/state/0/exp_avg") for n in names)


@pytest.mark.parametrize("damage", ["truncate", "text", "flip"])
def test_a_damaged_checkpoint_says_so(tmp_path, damage):
    cfg = quick("soft", steps=2)
    tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False)
    path = tmp_path / "checkpoint.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "text":
        path.write_text("not a checkpoint\n")
    else:  # one byte of the last tensor's data
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    with pytest.raises(ValueError, match=r"checkpoint.safetensors is damaged \(.+\); delete it to start over"):
        tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False)
    assert (tmp_path / "best.safetensors").exists()


def test_a_checkpoint_in_another_format_is_one_clear_error(tmp_path):
    """No reader for older files: a checkpoint.safetensors of another format is refused, naming the format."""
    cfg = quick("soft", steps=2)
    tune(tiny_base(), TOK, cfg, run_dir=tmp_path, progress=False)
    write_tensors({"x": torch.zeros(1)}, {"format": "minprefix-checkpoint-0"}, tmp_path / "checkpoint.safetensors")
    with pytest.raises(ValueError, match="checkpoint.safetensors is damaged .*format 'minprefix-checkpoint-0', "
                                         "expected 'minprefix-checkpoint-1'"):
        tune(tiny_base(), TOK, dataclasses.replace(cfg, steps=3), run_dir=tmp_path, progress=False)


# ---------------------------------------------------------------------------- properties over many runs


@settings(max_examples=6, deadline=None)
@given(method=st.sampled_from(["soft", "prefix", "prefix-mlp"]), stop_at=st.integers(1, 5), every=st.integers(1, 4))
def test_any_interrupted_run_resumes_to_the_uninterrupted_one(method, stop_at, every):
    """Interrupted at any step, with any checkpoint spacing, then resumed: the same history and weights."""
    cfg = quick(method, steps=6, eval_every=every)
    with tempfile.TemporaryDirectory() as tmp:
        whole, whole_history = tune(tiny_base(), TOK, cfg, run_dir=f"{tmp}/a", progress=False)

        def interrupt(step, loss):
            if step == stop_at:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            tune(tiny_base(), TOK, cfg, run_dir=f"{tmp}/b", progress=False, on_step=interrupt)
        resumed, history = tune(tiny_base(), TOK, cfg, run_dir=f"{tmp}/b", progress=False)
    strip = lambda hs: [{k: v for k, v in h.items() if k not in ("time", "scoring_time")} for h in hs]  # noqa: E731
    assert strip(history) == strip(whole_history)
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.state_dict().values()))


def test_compile_is_how_a_step_runs_so_a_resume_may_switch_it_or_find_it_missing():
    from minprefix.checkpoint import differences

    old = {"steps": 10, "lr": 0.1}  # a checkpoint written before --compile existed
    assert differences(old, {}, {**old, "compile": True}, {}) == []
    assert differences({**old, "compile": False}, {}, {**old, "compile": True}, {}) == []
    assert differences(old, {}, {**old, "lr": 0.2, "compile": False}, {}) != []  # a real difference is still named
