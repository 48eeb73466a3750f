"""A trial of bad inputs and faults, as a hostile or unlucky user would try them: `python tests/fault_trial.py`.

Every case runs in this process under a 20-second alarm, and ends as one of:
  refused    a one-line ValueError or FileNotFoundError (what the command line prints as one line)
  ok         a fault that must change nothing, and changed nothing
  hang       the alarm went off
  silent     a bad input was accepted (a silent wrong answer)
  lost       a result that should have survived the fault is gone or changed
  traceback  any other exception (the command line would print a raw traceback), or a refusal of several lines
A refusal that does not name the file it is about is counted apart, as `unnamed`. Prints the counts; exits 1
unless hangs, silent, lost and tracebacks are all 0. -v prints every case.
"""

import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers.py
import torch  # noqa: E402
from helpers import TOK, quick, tiny_base  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

import minprefix.cli  # noqa: E402
from minprefix import distributed, files  # noqa: E402
from minprefix.artifacts import load_prompt, save_prompt  # noqa: E402
from minprefix.files import fingerprint, read_tensors, write_tensors  # noqa: E402
from minprefix.base import load_model, save_base  # noqa: E402
from minprefix.checkpoint import read_checkpoint, run_lock  # noqa: E402
from minprefix.lab.grid import ResultStore, adopt, read_results  # noqa: E402
from minprefix.lab.report import write_report  # noqa: E402
from minprefix.prefix import PrefixGPT  # noqa: E402
from minprefix.tune import tune  # noqa: E402

CASES = []  # (name, fn): fn() returns an outcome, or raises (a refusal or a traceback)


def case(name):
    def add(fn):
        CASES.append((name, fn))
        return fn
    return add


class Alarm(Exception):
    pass


def on_alarm(signum, frame):
    raise Alarm


def outcome(fn, names: str | None) -> str:
    """Run one case under the alarm and say how it ended."""
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    try:
        result = fn()
    except Alarm:
        return "hang"
    except (ValueError, FileNotFoundError) as e:
        text = str(e)
        if "\n" in text.strip():
            return "traceback"
        return "refused" if names is None or names in text else "unnamed"
    except Exception as e:  # noqa: BLE001 - what a raw traceback would show
        return f"traceback ({type(e).__name__}: {str(e)[:80]!r})"
    finally:
        signal.alarm(0)
    return result or "silent"


def cli(*argv) -> str:
    """`minprefix ARGV` in this process: refused (one line, exit 1), silent (exit 0) or traceback."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            minprefix.cli.main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code
    lines = err.getvalue().strip().splitlines()
    if code == 0:  # every command line case is a bad input: success is a silent wrong answer
        return "silent"
    if len(lines) == 1 and lines[0].startswith("minprefix ") and ": error: " in lines[0]:
        raise ValueError(lines[0])
    return "traceback"


# ---------------------------------------------------------------------------- fixtures of the trial

ROOT = Path(tempfile.mkdtemp(prefix="fault-trial-"))
BASE = tiny_base()
BASE_128 = tiny_base(n_layer=1, block_size=128)
BASE_DIR = ROOT / "base"
save_base(BASE_128, BASE_DIR)
GOOD = ROOT / "good.safetensors"
save_prompt(PrefixGPT(BASE, 4), GOOD, BASE)
FULL = ROOT / "full.safetensors"
save_prompt(BASE, FULL, BASE)
RUN = ROOT / "run"
tune(BASE, TOK, quick("soft", steps=4), run_dir=RUN, progress=False)
CKPT = RUN / "checkpoint.safetensors"
n = 0


def fresh(suffix="") -> Path:
    global n
    n += 1
    return ROOT / f"case{n}{suffix}"


def signed(src: Path, edit) -> Path:
    """A copy of a minprefix file with edit(info, tensors) applied and the checksum made right again."""
    info, tensors = read_tensors(src)
    info.pop("sha256"), info.pop("covers", None)
    tensors = dict(tensors)
    edit(info, tensors)
    path = fresh(".safetensors")
    write_tensors(tensors, info, path)
    return path


def flipped(src: Path, offset: int, bit: int = 1) -> Path:
    data = bytearray(src.read_bytes())
    data[offset % len(data)] ^= bit
    path = fresh(".safetensors")
    path.write_bytes(bytes(data))
    return path


def special(kind: str) -> Path:
    """A FIFO, a folder, a symlink to /dev/zero, or /dev/zero itself."""
    path = fresh()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        return Path("/dev/zero")
    return path


def sparse_header(declared: int, meta: dict) -> Path:
    """A safetensors file whose header declares a float32 prompt of `declared` numbers (a sparse file)."""
    header = json.dumps({"prompt": {"dtype": "F32", "shape": [declared], "data_offsets": [0, 4 * declared]},
                         "__metadata__": {"minprefix": json.dumps(meta)}}).encode()
    header += b" " * (-len(header) % 8)
    path = fresh(".safetensors")
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + 4 * declared)
    return path


def loads(fn, path):
    """A case that must refuse path and name it."""
    return lambda: fn(path), path.name


# ---------------------------------------------------------------------------- artifacts

SPECIALS = ("fifo", "folder", "link to /dev/zero", "/dev/zero")
size = GOOD.stat().st_size
for kind in SPECIALS:
    case(f"artifact: {kind}")(loads(lambda p: load_prompt(p, BASE), special(kind)))
for i in range(6):
    p = fresh(".safetensors")
    p.write_bytes(random.Random(i).randbytes([0, 1, 8, 100, 5000, size][i]))
    case(f"artifact: {p.stat().st_size} random bytes")(loads(lambda p: load_prompt(p, BASE), p))
for cut in (7, 8, 50, size // 2, size - 1):
    p = fresh(".safetensors")
    p.write_bytes(GOOD.read_bytes()[:cut])
    case(f"artifact: cut at {cut} bytes")(loads(lambda p: load_prompt(p, BASE), p))
for i in range(12):  # bytes all over the file, header and data
    offset = 8 + i * (size - 9) // 11
    case(f"artifact: bit flipped at byte {offset}")(loads(lambda p: load_prompt(p, BASE), flipped(GOOD, offset)))
for label, edit in (
        ("prompt as int64", lambda i, t: t.update(prompt=t["prompt"].long())),
        ("prompt as bool", lambda i, t: t.update(prompt=t["prompt"] > 0)),
        ("another base's fingerprint", lambda i, t: i.update(base_fingerprint="0123456789abcdef")),
        ("unknown method", lambda i, t: i.update(method="lora")),
        ("method a number", lambda i, t: i.update(method=5)),
        ("layers 'middle'", lambda i, t: i.update(layers="middle")),
        ("shapes wrong", lambda i, t: i.update(shapes={"prompt": [1]})),
        ("format wrong", lambda i, t: i.update(format="x")),
        ("base_config a list", lambda i, t: i.update(base_config=[])),
        ("escape codes in the fingerprint", lambda i, t: i.update(base_fingerprint="\x1b[2J\x1b]0;owned\x07")),
        ("prompt of the wrong shape", lambda i, t: (t.update(prompt=torch.zeros(3, 5)),
                                                    i.update(shapes={"prompt": [3, 5]}))),
        ("a second tensor", lambda i, t: (t.update(extra=torch.zeros(2)),
                                          i.update(shapes={**i["shapes"], "extra": [2]}))),
):
    case(f"artifact: {label}")(loads(lambda p: load_prompt(p, BASE), signed(GOOD, edit)))
for label, edit in (
        ("full: a block weight removed", lambda i, t: t.pop("blocks.1.mlp.c_fc.weight")),
        ("full: a block weight renamed", lambda i, t: t.update({"blocks.1.x": t.pop("blocks.1.mlp.c_fc.weight")})),
        ("full: a weight of another shape", lambda i, t: t.update({"wpe.weight": torch.zeros(3, 16)})),
        ("full: weights as int64", lambda i, t: t.update({k: v.long() for k, v in t.items()})),
):
    def resigned(i, t, edit=edit):
        edit(i, t)
        i["shapes"] = {k: list(v.shape) for k, v in t.items()}
    case(f"artifact: {label}")(loads(lambda p: load_prompt(p, BASE), signed(FULL, resigned)))
meta = {"format": "minprefix-artifact-1", "method": "prefix", "base_fingerprint": fingerprint(BASE),
        "base_config": {}, "shapes": {"prompt": [2**29]}}
case("artifact: a sparse 2 GiB prompt declared")(loads(lambda p: load_prompt(p, BASE), sparse_header(2**29, meta)))
deep = fresh(".safetensors")
save_file({"prompt": torch.zeros(2)}, str(deep), metadata={"minprefix": "[" * 100_000 + "]" * 100_000})
case("artifact: metadata nested 100,000 deep")(loads(lambda p: load_prompt(p, BASE), deep))
for key in ("layers", "base_fingerprint", "method", "sha256", "covers"):
    case(f"save_prompt: meta sets {key!r}")(
        (lambda key=key: save_prompt(PrefixGPT(BASE, 4), fresh(".safetensors"), BASE, {key: "x"}), None))

# ---------------------------------------------------------------------------- checkpoints

size = CKPT.stat().st_size
for kind in SPECIALS:
    case(f"checkpoint: {kind}")(loads(read_checkpoint, special(kind)))
for i in range(10):
    offset = 8 + i * (size - 9) // 9
    case(f"checkpoint: bit flipped at byte {offset}")(loads(read_checkpoint, flipped(CKPT, offset)))
at = CKPT.read_bytes().index(b'\\"step\\": 4') + 10
case("checkpoint: header step 4 -> 5, unsigned")(loads(read_checkpoint, flipped(CKPT, at, 1)))
for label, edit in (
        ("step -5", lambda i, t: i.update(step=-5)), ("step true", lambda i, t: i.update(step=True)),
        ("step past the run", lambda i, t: i.update(step=10**9)), ("step '4'", lambda i, t: i.update(step="4")),
        ("step null", lambda i, t: i.update(step=None)), ("config 5", lambda i, t: i.update(config=5)),
        ("format wrong", lambda i, t: i.update(format="minprefix-artifact-1")),
        ("weights as int64", lambda i, t: t.update({k: v.long() for k, v in t.items()})),
        ("trainable missing", lambda i, t: i.pop("trainable")),
        ("a tensor reference to nothing", lambda i, t: i.update(trainable={"x": {"__tensor__": "nothing"}})),
):
    case(f"checkpoint: {label}")(loads(read_checkpoint, signed(CKPT, edit)))

ckpt_meta = {"format": "minprefix-checkpoint-1", "step": 1}
case("checkpoint: a sparse 2 GiB tensor declared (tune resumes)")(
    (lambda: tune(BASE, TOK, quick("soft", steps=4), run_dir=huge_run(), progress=False), None))


def huge_run() -> Path:
    folder = fresh()
    folder.mkdir()
    sparse_header(2**29, ckpt_meta).rename(folder / "checkpoint.safetensors")
    return folder


# ---------------------------------------------------------------------------- base models


def base_dir(edit_config=None, edit_weights=None, config_text=None) -> Path:
    path = fresh()
    save_base(BASE, path)
    if config_text is not None or edit_config is not None:
        info = json.loads((path / "config.json").read_text())
        if edit_config is not None:
            edit_config(info)
        (path / "config.json").write_text(config_text if config_text is not None else json.dumps(info))
    if edit_weights is not None:
        state = {k: v for k, v in BASE.state_dict().items() if k != "lm_head.weight"}
        edit_weights(state)
        save_file(state, str(path / "model.safetensors"))
    return path


def config_field(**fields):
    return lambda info: info["config"].update(fields)


for label, kw in (
        ("d_model 32768 x 64 layers", dict(edit_config=config_field(d_model=32768, n_layer=64, n_head=4))),
        ("d_model -128", dict(edit_config=config_field(d_model=-128))),
        ("block_size 0", dict(edit_config=config_field(block_size=0))),
        ("n_layer '4'", dict(edit_config=config_field(n_layer="4"))),
        ("n_head 0", dict(edit_config=config_field(n_head=0))),
        ("dropout 5", dict(edit_config=config_field(dropout=5.0))),
        ("bias 'yes'", dict(edit_config=config_field(bias="yes"))),
        ("an unknown field", dict(edit_config=config_field(n_expert=4))),
        ("vocab_size 10**12", dict(edit_config=config_field(vocab_size=10**12))),
        ("config a list", dict(edit_config=lambda info: info.update(config=[]))),
        ("config.json nested 100,000 deep", dict(config_text="[" * 100_000 + "]" * 100_000)),
        ("config.json not JSON", dict(config_text="{cut")),
        ("config.json a number", dict(config_text="5")),
        ("config.json not UTF-8", dict(config_text="\udcff")),
        ("weights as int64", dict(edit_weights=lambda s: s.update({k: v.long() for k, v in s.items()}))),
        ("a weight missing", dict(edit_weights=lambda s: s.pop("blocks.0.attn.c_attn.weight"))),
        ("a weight renamed", dict(edit_weights=lambda s: s.update({"x": s.pop("wpe.weight")}))),
        ("an extra weight", dict(edit_weights=lambda s: s.update({"extra": torch.zeros(1)}))),
        ("a weight of another shape", dict(edit_weights=lambda s: s.update({"wpe.weight": torch.zeros(3, 16)}))),
        ("weights changed (fingerprint)", dict(edit_weights=lambda s: s.update({"wpe.weight": s["wpe.weight"] + 1}))),
):
    try:
        path = base_dir(**kw)
    except UnicodeEncodeError:  # the text cannot even be written as UTF-8: write its bytes
        path = base_dir()
        (path / "config.json").write_bytes(b"\xff\xfe{")
    case(f"base: {label}")(loads(load_model, path))
for label, chars in (("a number", 5), ("too short", "abc"), ("a character twice", TOK.characters[:-1] + "a")):
    case(f"base: tokenizer {label}")(loads(load_model, base_dir(edit_config=lambda info, c=chars: info.update(
        tokenizer=c))))
for kind in ("fifo", "folder", "link to /dev/zero"):
    for name in ("config.json", "model.safetensors"):
        path = base_dir()
        (path / name).unlink()
        target = special(kind)
        (path / name).symlink_to(target) if kind != "folder" else (path / name).mkdir()
        case(f"base: {name} is a {kind}")(loads(load_model, path))
case("base: no such folder")(loads(load_model, ROOT / "nowhere"))

# ---------------------------------------------------------------------------- results files

SWEEP = json.loads((Path(__file__).resolve().parents[1] / "figures" / "sweep.json").read_text())
for name, label, data in (
        ("compare", "{'claims': 5}", {"claims": 5}), ("compare", "[]", []), ("compare", "a string", "x"),
        ("compare", "a sweep.json", SWEEP), ("sweep", "[]", []), ("sweep", "methods a list", {**SWEEP, "methods": []}),
        ("sweep", "config 5", {**SWEEP, "config": 5}), ("sweep", "null", None),
        ("reparam", "the old format", {"config": {}, "d_model": 128, "lrs": {}, "stability": {}}),
        ("reparam", "d_model '128'", {"config": {}, "d_model": "128"}), ("reparam", "a sweep.json", SWEEP),
):
    path = fresh(".json")
    path.write_text(json.dumps(data))
    case(f"results: {name}.json is {label}")(loads(lambda p, name=name: read_results(p, name), path))
for label, text in (("nested 100,000 deep", "[" * 100_000 + "]" * 100_000), ("cut off", '{"config'), ("empty", "")):
    path = fresh(".json")
    path.write_text(text)
    case(f"results: sweep.json {label}")(loads(lambda p: read_results(p, "sweep"), path))
for label, data in (("a run whose config is 5", {"runs": [{"config": 5, "history": []}]}),
                    ("a run whose history is 5", {"runs": [{"config": {}, "history": 5}]}),
                    ("nested 900 deep", json.loads("[" * 900 + "]" * 900))):
    path = fresh(".json")
    path.write_text(json.dumps(data))
    case(f"--from: {label}")(loads(lambda p: adopt(fresh(".json"), p, "x"), path))
for kind in SPECIALS:
    case(f"--from: {kind}")(loads(lambda p: adopt(fresh(".json"), p, "x"), special(kind)))
for label, text in (("[]", "[]"), ("5", "5"), ("cut off", "{")):
    path = fresh(".json")
    path.write_text(text)
    case(f"results store: {label}")(loads(ResultStore, path))
figures_out = fresh()
figures_out.mkdir()
(figures_out / "compare.json").write_text(json.dumps({"config": {}, "lrs": {}, "steps": {}, "untrained": {},
                                                      "studies": {}, "ensemble": {}, "n_base": 1, "seconds": 1}))
case("figures: compare.json empty inside")(  # what `figures` redraws from a compare.json
    (lambda: minprefix.cli.redraw(figures_out / "compare.json", "compare", lambda d: write_report(d, figures_out)),
     "compare.json"))

# ---------------------------------------------------------------------------- run folders, the command line


def tune_cli(run_dir, *more):
    return cli("tune", "--base", BASE_DIR, "--steps", "2", "--eval-every", "1", "--n-dev", "4", "--run-dir", run_dir,
               *more)


def run_folder(where: str) -> Path:
    path = fresh()
    if where == "a file":
        path.write_text("x")
    elif where == "inside a file":
        path.write_text("x")
        path = path / "sub"
    elif where == "on /proc (read-only)":
        path = Path("/proc/minprefix-run")
    else:
        path.mkdir()
        name = {"lock": "lock", "checkpoint": "checkpoint.safetensors", "best": "best.safetensors"}[where.split()[0]]
        (path / name).mkdir() if "folder" in where else (path / name).symlink_to("/dev/zero")
    return path


for where in ("a file", "inside a file", "on /proc (read-only)", "lock is a folder", "checkpoint is a folder",
              "best is a folder", "lock is a link", "checkpoint is a link"):
    case(f"tune: --run-dir {where}")((lambda w=where: tune_cli(run_folder(w)), None))
for kind in SPECIALS:
    case(f"tune: --init-from {kind}")((lambda k=kind: tune_cli(fresh(), "--init-from", special(k)), None))
    case(f"generate: --artifact {kind}")(
        (lambda k=kind: cli("generate", "--base", BASE_DIR, "--prompt", "ab", "--artifact", special(k)), None))
case("tune: --init-from missing")((lambda: tune_cli(fresh(), "--init-from", ROOT / "nothing"), None))
case("tune: --base a FIFO")((lambda: cli("tune", "--base", special("fifo"), "--run-dir", fresh()), None))


def env_case(env: dict, timeout=None):
    def run():
        saved = {k: os.environ.pop(k, None) for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                      "MASTER_PORT")}
        os.environ.update(env)
        before, distributed.JOIN_TIMEOUT = distributed.JOIN_TIMEOUT, timeout or distributed.JOIN_TIMEOUT
        try:
            return tune_cli(fresh())
        finally:
            distributed.JOIN_TIMEOUT = before
            for k, v in saved.items():
                os.environ.pop(k, None)
                if v is not None:
                    os.environ[k] = v
    return run


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


for label, env in (("WORLD_SIZE=abc", {"WORLD_SIZE": "abc"}), ("WORLD_SIZE=-1", {"WORLD_SIZE": "-1"}),
                   ("WORLD_SIZE=0", {"WORLD_SIZE": "0"}), ("WORLD_SIZE=2 alone", {"WORLD_SIZE": "2"}),
                   ("RANK=5 of 2", {"WORLD_SIZE": "2", "RANK": "5"}),
                   ("MASTER_PORT=abc", {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "abc"}),
                   ("no MASTER_ADDR", {"WORLD_SIZE": "2", "RANK": "0", "MASTER_PORT": "29500"})):
    case(f"torchrun: {label}")((env_case(env), None))
case("torchrun: a lone rank 0 of 2 (2 s to join)")(
    (lambda: env_case({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": free_port()},
                      timeout=2)(), None))

# ---------------------------------------------------------------------------- faults that must lose nothing


def lock_race(trials=20, processes=4) -> str:
    for trial in range(trials):
        folder = fresh()
        folder.mkdir()
        (folder / "lock").write_text("" if trial % 2 else "999999999\n")
        log = os.open(folder / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        pids = []
        for _ in range(processes):
            pid = os.fork()
            if pid == 0:
                try:
                    with run_lock(folder):
                        os.write(log, f"+{os.getpid()}\n".encode())
                        time.sleep(0.002)
                        os.write(log, f"-{os.getpid()}\n".encode())
                finally:
                    os._exit(0)
            pids.append(pid)
        for p in pids:
            os.waitpid(p, 0)
        os.close(log)
        lines = (folder / "log").read_text().split()
        if lines != [x for p in lines[::2] for x in (p, "-" + p[1:])] or (folder / "lock").exists():
            return "silent"
    return "ok"


case("lock: 20 races of 4 processes on a stale or empty lock")((lock_race, None))


def interrupted_save() -> str:
    path = fresh(".safetensors")
    save_prompt(PrefixGPT(BASE, 4), path, BASE)
    before = path.read_bytes()

    def saver(obj, tmp):
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt

    try:
        files.atomic_save(None, path, saver)
    except KeyboardInterrupt:
        pass
    left = list(path.parent.glob(f"{path.name}.*.tmp"))
    return "ok" if path.read_bytes() == before and not left else "lost"


case("save: interrupted halfway keeps the old file and no .tmp")((interrupted_save, None))


def orphan_removed() -> str:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = fresh()
    folder.mkdir()
    orphan = folder / f"checkpoint.safetensors.{dead.pid}.abc123.tmp"
    orphan.write_bytes(b"x" * 1000)
    with run_lock(folder):
        pass
    return "ok" if not orphan.exists() else "lost"


case("run folder: a killed save's .tmp is removed at the next start")((orphan_removed, None))


def planted_symlink() -> str:
    target = fresh()
    target.write_text("keep")
    path = fresh(".safetensors")
    Path(f"{path}.{os.getpid()}.tmp").symlink_to(target)
    save_prompt(PrefixGPT(BASE, 4), path, BASE)
    return "ok" if target.read_text() == "keep" else "lost"


case("save: a symlink planted at the old temporary name")((planted_symlink, None))


def removed_during_run() -> str:
    real = minprefix.cli.tune
    folder = fresh()

    def tune_then_remove(*a, **k):
        out = real(*a, **k)
        (folder / "best.safetensors").unlink()
        return out

    minprefix.cli.tune = tune_then_remove
    try:
        return "lost" if tune_cli(folder) == "silent" else "ok"
    except ValueError as e:
        return "ok" if "is gone" in str(e) else "lost"
    finally:
        minprefix.cli.tune = real


case("tune: its artifact removed during the run")((removed_during_run, None))


def sigterm() -> str:
    folder = fresh()
    proc = subprocess.Popen([sys.executable, "-m", "minprefix", "tune", "--base", str(BASE_DIR), "--steps", "100000",
                             "--run-dir", str(folder)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 15
    while not (folder / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate()
    if "Traceback" in err:
        return "traceback"
    saved = read_checkpoint(folder / "checkpoint.safetensors")["step"] > 0
    return "ok" if proc.returncode == 130 and saved and not (folder / "lock").exists() else "lost"


case("tune: SIGTERM saves and says interrupted")((sigterm, None))


def resumed_with(edit):
    """tune resumed from a copy of RUN whose checkpoint's tuning state was edited and signed again."""
    def run() -> str:
        folder = fresh()
        folder.mkdir()
        signed(CKPT, edit).rename(folder / "checkpoint.safetensors")
        tune(BASE, TOK, quick("soft", steps=4), run_dir=folder, progress=False)
        return "silent"
    return run


for label, edit in (("history a string", lambda i, t: i["state"].update(history="x")),
                    ("best removed", lambda i, t: i["state"].update(best=None)),
                    ("best weights of another shape", lambda i, t: t.update(
                        {k: torch.zeros(3) for k in t if k.startswith("/state/best/weights/")}))):
    case(f"tune: resumed from a checkpoint whose {label} (signed again)")((resumed_with(edit), None))


def other_tokenizer() -> str:
    """The same characters in another order: every id would mean another character."""
    other = type(TOK)(TOK.characters[::-1])
    base = tiny_base()
    base.characters = TOK.characters
    tune(base, other, quick("soft", steps=2), progress=False)
    return "silent"


case("tune: a tokenizer other than the base's")((other_tokenizer, None))


def artifact_onto_other_characters() -> str:
    base = tiny_base()
    base.characters = TOK.characters
    path = fresh(".safetensors")
    save_prompt(PrefixGPT(base, 4), path, base)
    base.characters = TOK.characters[::-1]
    load_prompt(path, base)
    return "silent"


case("artifact: loaded onto a base with other tokenizer characters")((artifact_onto_other_characters, None))


def main():
    torch.set_num_threads(1)
    counts, verbose = {}, "-v" in sys.argv
    for name, (fn, names) in CASES:
        got = outcome(fn, names)
        kind = got.split(" ")[0]
        counts[kind] = counts.get(kind, 0) + 1
        if verbose or kind not in ("refused", "ok"):
            print(f"{kind:>9}  {name}" + (f"  {got[len(kind):]}" if got != kind else ""))
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in
                                               ("refused", "ok", "unnamed", "hang", "silent", "lost", "traceback")))
    sys.exit(1 if any(counts.get(k) for k in ("hang", "silent", "lost", "traceback")) else 0)


if __name__ == "__main__":
    main()
