"""Bad inputs and faults, one test per class: the lock, signals, silent wrong loads, hangs and unbounded reads,
raw tracebacks for paths and structure, temporary files. tests/fault_trial.py runs many more cases of each."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TOK, quick, tiny_base
from safetensors.torch import save_file

import minprefix.cli
from minprefix import distributed, files
from minprefix.artifacts import load_prompt, read_artifact, save_prompt
from minprefix.files import fingerprint, read_tensors, write_tensors
from minprefix.base import load_model, save_base
from minprefix.checkpoint import read_checkpoint, run_lock
from minprefix.lab.grid import ResultStore, adopt, read_results
from minprefix.lab.report import write_report
from minprefix.model import GPT, GPTConfig
from minprefix.prefix import PrefixGPT
from minprefix.tune import tune
from test_cli import run


def refused(fn, *args, match=".", **kwargs) -> str:
    """The one-line ValueError (or FileNotFoundError) that fn(*args) raises."""
    with pytest.raises((ValueError, FileNotFoundError), match=match) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------------- the lock


def lock_race(tmp_path, trials: int, processes: int = 4):
    """Forked processes enter run_lock at once on a stale (or empty) lock; each logs +pid on entering and -pid on
    leaving: the log must alternate, one holder at a time."""
    for trial in range(trials):
        folder = tmp_path / str(trial)
        folder.mkdir()
        (folder / "lock").write_text("" if trial % 2 else "999999999\n")  # just created, or a dead holder's
        log = os.open(folder / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        pids = []
        for _ in range(processes):
            pid = os.fork()
            if pid == 0:  # the child: no pytest, no torch, only the lock
                code = 1
                try:
                    with run_lock(folder):
                        os.write(log, f"+{os.getpid()}\n".encode())
                        time.sleep(0.002)
                        os.write(log, f"-{os.getpid()}\n".encode())
                    code = 0
                except ValueError:
                    code = 2
                finally:
                    os._exit(code)
            pids.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
        os.close(log)
        lines = (folder / "log").read_text().split()
        assert all(c in (0, 2) for c in codes) and codes.count(0) >= 1, codes
        assert lines == [x for p in lines[::2] for x in (p, "-" + p[1:])], f"two holders at once: {lines}"
        assert not (folder / "lock").exists()


def test_one_holder_at_every_moment(tmp_path):
    lock_race(tmp_path, trials=4)


@pytest.mark.slow
def test_one_holder_at_every_moment_over_100_trials(tmp_path):
    lock_race(tmp_path, trials=100)


def test_a_killed_holders_lock_is_released_by_the_kernel_and_a_live_one_is_kept(tmp_path):
    holds = (f"import fcntl, os, time; fd = os.open({str(tmp_path / 'lock')!r}, os.O_RDWR | os.O_CREAT); "
             "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d' % os.getpid()); print(flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", holds], stdout=subprocess.PIPE)  # as run_lock holds it
    try:
        child.stdout.readline()
        refused(lambda: run_lock(tmp_path).__enter__(), match=f"in use by pid {child.pid}")
        assert (tmp_path / "lock").read_text().strip() == str(child.pid), "another run's lock was touched"
    finally:
        child.kill()
        child.wait()
    with run_lock(tmp_path):  # SIGKILL ran no cleanup, but the kernel let go of the flock
        assert (tmp_path / "lock").read_text().strip() == str(os.getpid())


def test_stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f"checkpoint.safetensors.{dead.pid}.tmp", tmp_path / f"best.safetensors.{dead.pid}.a_b1.tmp"]
    live = tmp_path / f"best.safetensors.{os.getpid()}.x.tmp"
    for p in stale + [live]:
        p.write_bytes(b"x" * 100)
    with run_lock(tmp_path):
        pass
    assert not any(p.exists() for p in stale) and live.exists()


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_says_interrupted_as_ctrl_c_does(tmp_path, tiny_base_dir):
    proc = subprocess.Popen([sys.executable, "-m", "minprefix", "tune", "--base", tiny_base_dir, "--steps", "100000",
                             "--run-dir", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300  # the first checkpoint comes after the first steps: slow on a busy machine
    while not (tmp_path / "run" / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "run" / "checkpoint.safetensors").exists(), "no checkpoint within 300 s: cannot test SIGTERM"
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
    assert read_checkpoint(tmp_path / "run" / "checkpoint.safetensors")["step"] > 0
    assert not (tmp_path / "run" / "lock").exists()


@pytest.mark.slow
def test_sigterm_to_a_grid_and_its_workers_keeps_finished_cells_and_says_interrupted(tmp_path, tiny_base_dir):
    """`kill` of the process group (what a scheduler does) reaches the workers too: the main process keeps every
    finished cell and says "interrupted", as for Ctrl-C."""
    proc = subprocess.Popen([sys.executable, "-m", "minprefix", "sweep", "--quick", "--workers", "2", "--base",
                             tiny_base_dir, "--out", str(tmp_path), "--run-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    results = tmp_path / "results.json"
    deadline = time.time() + 300
    while not results.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert results.exists() and proc.poll() is None, "no finished cell within 300 s: cannot test SIGTERM"
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err
    assert len(json.loads(results.read_text())) >= 1


@pytest.fixture(scope="module")
def tiny_base_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("base")
    save_base(tiny_base(n_layer=1, block_size=128), path)
    return str(path)


def test_artifact_is_printed_only_if_it_exists(tmp_path, tiny_base_dir, monkeypatch):
    history = [{"step": 1, "dev_exact_match": 0.0, "dev_loss": 1.0}]
    monkeypatch.setattr(minprefix.cli, "tune", lambda base, *a, **k: (base, history))  # a run whose folder was removed
    monkeypatch.setattr(minprefix.cli, "score", lambda *a, **k: {"exact_match": 0.0, "n": 1})
    code, out, err = run("tune", "--base", tiny_base_dir, "--run-dir", tmp_path / "run")
    assert code == 1 and "artifact:" not in out and "is gone" in err, err


# ---------------------------------------------------------------------------- temporary files


def test_temporary_files_are_unpredictable_and_the_umask_is_never_changed(tmp_path, monkeypatch):
    base = tiny_base()
    target = tmp_path / "victim"
    target.write_text("keep")
    old_name = tmp_path / f"p.safetensors.{os.getpid()}.tmp"  # the name a save used to write through
    old_name.symlink_to(target)
    monkeypatch.setattr(os, "umask", lambda *a: pytest.fail("the umask was set during a save"))
    save_prompt(PrefixGPT(base, 4), tmp_path / "p.safetensors", base)
    assert target.read_text() == "keep" and load_prompt(tmp_path / "p.safetensors", base) is not None
    assert oct((tmp_path / "p.safetensors").stat().st_mode & 0o777) == oct(0o666 & ~files.UMASK)


# ---------------------------------------------------------------------------- loads that are right or refused


def test_integer_or_bool_prompts_and_bases_are_refused(tmp_path):
    base = tiny_base()
    save_prompt(PrefixGPT(base, 4), tmp_path / "p.safetensors", base)
    info, tensors = read_artifact(tmp_path / "p.safetensors")
    info.pop("sha256"), info.pop("covers")
    for dtype in (torch.int64, torch.bool):
        write_tensors({"prompt": tensors["prompt"].to(dtype)}, info, tmp_path / "bad.safetensors")  # valid checksum
        refused(load_prompt, tmp_path / "bad.safetensors", base, match="not a floating dtype")
    save_base(base, tmp_path / "base")
    state = {k: v.to(torch.int64) for k, v in base.state_dict().items() if k != "lm_head.weight"}
    save_file(state, str(tmp_path / "base" / "model.safetensors"))
    refused(load_model, tmp_path / "base", match="model.safetensors.*not a floating dtype")


def test_a_full_artifact_missing_or_renaming_a_weight_is_refused(tmp_path):
    base = tiny_base()
    save_prompt(base, tmp_path / "full.safetensors", base)
    info, tensors = read_artifact(tmp_path / "full.safetensors")
    info.pop("sha256"), info.pop("covers")
    for edit in (lambda t: t.pop("blocks.1.mlp.c_fc.weight"),
                 lambda t: t.update({"blocks.1.mlp.c_fc.w": t.pop("blocks.1.mlp.c_fc.weight")})):
        changed = dict(tensors)
        edit(changed)
        write_tensors(changed, {**info, "shapes": {k: list(v.shape) for k, v in changed.items()}},
                      tmp_path / "bad.safetensors")
        refused(load_prompt, tmp_path / "bad.safetensors", base, match="c_fc.* missing, unexpected")


def test_the_checksum_covers_the_header_and_step_is_range_checked(tmp_path):
    tune(tiny_base(), TOK, quick("soft", steps=4, eval_every=4, n_dev=2), run_dir=tmp_path, progress=False)
    good = (tmp_path / "checkpoint.safetensors").read_bytes()
    path = tmp_path / "bad.safetensors"
    data = bytearray(good)
    data[data.index(b'\\"step\\": 4') + 10] = ord("3")  # one flipped byte in the JSON header
    path.write_bytes(bytes(data))
    refused(read_checkpoint, path, match="damaged.*checksum")
    info, tensors = read_tensors(tmp_path / "checkpoint.safetensors")
    info.pop("sha256"), info.pop("covers")
    for step in (-5, True, 13, "4"):  # re-signed: the checksum holds, the field does not
        write_tensors(tensors, {**info, "step": step}, path)
        refused(read_checkpoint, path, match="damaged.*step")


def test_save_prompt_refuses_meta_keys_it_owns(tmp_path):
    base = tiny_base()
    for key in ("layers", "base_fingerprint", "method", "sha256"):
        refused(save_prompt, PrefixGPT(base, 4), tmp_path / "p.safetensors", base, {key: "x"}, match=key)


def test_strings_from_files_are_shown_escaped(tmp_path):
    base = tiny_base()
    save_prompt(PrefixGPT(base, 4), tmp_path / "p.safetensors", base)
    info, tensors = read_artifact(tmp_path / "p.safetensors")
    info.pop("sha256"), info.pop("covers")
    write_tensors(tensors, {**info, "base_fingerprint": "\x1b[2J\x1b]0;owned\x07"}, tmp_path / "p.safetensors")
    message = refused(load_prompt, tmp_path / "p.safetensors", base)
    assert "\x1b" not in message and "\\x1b[2J" in message


# ---------------------------------------------------------------------------- no hangs, bounded reads


def test_fifos_devices_and_folders_are_refused_before_opening(tmp_path, tiny_base_dir):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    base = tiny_base()
    for path in (fifo, Path("/dev/zero"), tmp_path):
        refused(load_prompt, path, base, match=f"{path} is a (FIFO|device|folder)")
        refused(files.file_sha256, path, match=str(path))
    code, _, err = run("tune", "--base", tiny_base_dir, "--init-from", fifo, "--run-dir", tmp_path / "r")
    assert code == 1 and "FIFO" in err
    weights = tmp_path / "base"
    save_base(base, weights)
    (weights / "model.safetensors").unlink()
    os.mkfifo(weights / "model.safetensors")
    refused(load_model, weights, match="FIFO")


def huge_file(path, name: str, meta: dict) -> Path:
    """A sparse safetensors file whose header declares 2 GiB of float32 in tensor `name` (no byte of it written)."""
    n = 2**29
    meta = {**meta, "shapes": {name: [n]}} if "shapes" in meta else meta
    header = json.dumps({name: {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
                         "__metadata__": {"minprefix": json.dumps(meta)}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4 * n)
    return path


def test_a_header_declaring_a_huge_prompt_is_refused_before_reading(tmp_path):
    base = tiny_base()
    path = huge_file(tmp_path / "huge.safetensors", "prompt", {
        "format": "minprefix-artifact-1", "method": "prefix", "shapes": {}, "base_fingerprint": fingerprint(base),
        "base_config": {}})
    t = time.time()
    refused(load_prompt, path, base, match="not one prompt this base can wear")
    assert time.time() - t < 2


def test_a_checkpoint_declaring_huge_tensors_is_refused_before_reading(tmp_path):
    cfg = quick("prefix", steps=2)
    huge_file(tmp_path / "checkpoint.safetensors", "trainable/rows", {"format": "minprefix-checkpoint-1", "step": 1})
    t = time.time()
    refused(tune, tiny_base(), TOK, cfg, tmp_path, progress=False, match="declare 536,870,912 numbers, more than")
    assert time.time() - t < 5


def test_absurd_base_configs_are_refused_before_allocating(tmp_path):
    base = tiny_base()
    for field, value, match in (("d_model", 32768, "parameters"), ("d_model", -128, "`d_model`"),
                                ("block_size", 0, "`block_size`"), ("n_layer", "4", "`n_layer` must be an integer")):
        save_base(base, tmp_path)
        info = json.loads((tmp_path / "config.json").read_text())
        info["config"].update({field: value, **({"n_layer": 64} if value == 32768 else {})})
        (tmp_path / "config.json").write_text(json.dumps(info))
        refused(load_model, tmp_path, match=f"config.json.*{match}")
    (tmp_path / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(load_model, tmp_path, match="config.json is not valid JSON")
    with pytest.raises(ValueError, match="parameters"):
        GPT(GPTConfig(d_model=32768, n_layer=64, n_head=4))


def test_torchrun_variables_are_checked_by_name(monkeypatch):
    for env, match in (({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"), ({"WORLD_SIZE": "-1"}, "WORLD_SIZE='-1'"),
                       ({"WORLD_SIZE": "2"}, "RANK is not set"),
                       ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "29500"}, "MASTER_ADDR is not set")):
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            monkeypatch.delenv(name, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        refused(distributed.setup, "cpu", match=match)


def test_a_lone_rank_stops_with_a_message_instead_of_waiting_forever(monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(distributed, "JOIN_TIMEOUT", 2)
    t = time.time()
    refused(distributed.setup, "cpu", match="could not join the others.*torchrun")
    assert time.time() - t < 30 and not torch.distributed.is_initialized()


# ---------------------------------------------------------------------------- paths and structure


@pytest.mark.parametrize("where", ["run-dir is a file", "run-dir inside a file", "lock is a folder",
                                   "checkpoint is a folder", "best is a folder"])
def test_a_bad_run_folder_is_one_line(tmp_path, tiny_base_dir, where):
    run_dir = tmp_path / "run"
    if where.startswith("run-dir"):
        run_dir.write_text("x")
        run_dir = run_dir / "sub" if "inside" in where else run_dir
    else:
        (run_dir / {"lock": "lock", "checkpoint": "checkpoint.safetensors", "best": "best.safetensors"}[
            where.split()[0]]).mkdir(parents=True)
    code, _, err = run("tune", "--base", tiny_base_dir, "--steps", "2", "--eval-every", "1", "--n-dev", "4",
                       "--run-dir", run_dir)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_results_files_of_the_wrong_structure_are_one_line(tmp_path):
    for name, data in (("compare", {"claims": 5}), ("sweep", []), ("reparam", {"config": 5}),
                       ("reparam", json.loads((Path(__file__).parents[1] / "figures" / "sweep.json").read_text()))):
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        refused(read_results, tmp_path / f"{name}.json", name, match=f"{name}.json")
    (tmp_path / "from.json").write_text(json.dumps({"runs": [{"config": 5, "history": []}]}))
    refused(adopt, tmp_path / "results.json", tmp_path / "from.json", "x", match="from.json.*'config' is 5")
    (tmp_path / "results.json").write_text("[]")
    refused(ResultStore, tmp_path / "results.json", match="not a results file")
    (tmp_path / "compare.json").write_text(json.dumps({"config": {}, "lrs": {}, "steps": {}, "untrained": {},
                                                       "studies": {}, "ensemble": {}, "n_base": 1, "seconds": 1}))
    refused(minprefix.cli.redraw, tmp_path / "compare.json", "compare", lambda data: write_report(data, tmp_path),
            match="compare.json: not a compare results file")  # what `figures` draws from a compare.json


# ---------------------------------------------------------------------------- the tokenizer travels with the base


def test_the_tokenizer_is_recorded_with_the_base_and_another_one_is_refused(tmp_path):
    from minprefix.base import load_base
    from minprefix.scoring import score
    from minprefix.world import Tokenizer, examples
    base = tiny_base()
    base.characters = TOK.characters  # as `pretrain` records it
    save_base(base, tmp_path / "base")
    loaded, tok = load_base(path=tmp_path / "base")
    assert loaded.characters == tok.characters == TOK.characters
    other = Tokenizer(TOK.characters[::-1])  # the same characters, other ids
    with pytest.raises(ValueError, match="not those the base was trained with"):
        tune(loaded, other, quick("prefix"), progress=False)
    with pytest.raises(ValueError, match="not those the base was trained with"):
        score(PrefixGPT(loaded, 2), other, examples("bare-reverse", "dev", 4))
    model, _ = tune(loaded, tok, quick("prefix", steps=2), progress=False)  # the right one trains
    save_prompt(model, tmp_path / "p.safetensors", loaded)
    assert read_artifact(tmp_path / "p.safetensors")[0]["tokenizer"] == TOK.characters
    loaded.characters = TOK.characters[::-1]  # the same weights under other characters (a hand-edited config)
    with pytest.raises(ValueError, match="other tokenizer characters"):
        load_prompt(tmp_path / "p.safetensors", loaded)


@pytest.mark.parametrize("chars", [5, "ab", TOK.characters[:-1] + TOK.characters[0]])  # no string, too few, twice
def test_a_base_whose_tokenizer_field_is_wrong_is_one_error_naming_the_field(tmp_path, chars):
    save_base(tiny_base(), tmp_path)
    info = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**info, "tokenizer": chars}))
    with pytest.raises(ValueError, match="config.json: field 'tokenizer' must be a string of 102 distinct"):
        load_model(tmp_path)


@pytest.mark.parametrize("edit", [
    lambda info, t: info["state"].update(history="x"),
    lambda info, t: info["state"].update(best=None),
    lambda info, t: info["state"]["best"].update(dev={"exact_match": "all"}),
    lambda info, t: t.update({k: torch.zeros(3) for k in t if k.startswith("/state/best/weights/")}),
], ids=["history not a list", "no best", "best's dev score not a number", "best weights of another shape"])
def test_a_checkpoint_whose_tuning_state_is_damaged_is_refused_on_resume(tmp_path, edit):
    """A checkpoint edited and signed again (its checksum right): the dev history and best weights a resumed run
    reads are checked on resume, not found broken at its next evaluation or its end."""
    cfg = quick("prefix", steps=4, eval_every=2)
    tune(tiny_base(), TOK, cfg, tmp_path, progress=False)
    path = tmp_path / "checkpoint.safetensors"
    info, tensors = read_tensors(path)
    info.pop("sha256"), info.pop("covers", None)
    tensors = dict(tensors)
    edit(info, tensors)
    write_tensors(tensors, info, path)
    refused(tune, tiny_base(), TOK, cfg, tmp_path, progress=False, match="damaged or of another run: its")
