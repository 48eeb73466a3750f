"""The command line (minprefix/cli.py): the commands on the shipped base, and how the CLI explains itself:
one-line errors naming the flag, help from the configs, no tracebacks."""

import ast
import contextlib
import dataclasses
import io
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from helpers import tiny_base
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tqdm.auto import tqdm

import minprefix.pretrain
import minprefix.cli
import minprefix.lab.compare
import minprefix.lab.demo
import minprefix.lab.figures
import minprefix.lab.grid
import minprefix.lab.reparam
import minprefix.lab.sweep
import minprefix.train
import minprefix.tune
from minprefix.artifacts import load_prompt
from minprefix.base import load_base, save_base
from minprefix.pretrain import PretrainConfig
from minprefix.cli import build_parser, flag, main
from minprefix.hard_prompt import SEARCH_START
from minprefix.lab.bench import BenchConfig
from minprefix.lab.compare import CompareConfig
from minprefix.lab.reparam import ReparamConfig
from minprefix.lab.sweep import SweepConfig
from minprefix.methods import METHODS
from minprefix.tune import TuneConfig

ROOT = Path(__file__).resolve().parents[1]


def saved_base(tmp_path_factory, n_layer: int) -> str:
    """A tiny base with the shipped base's context of 128 positions, saved like the shipped one."""
    path = tmp_path_factory.mktemp(f"base-{n_layer}-layers")
    save_base(tiny_base(n_layer=n_layer, block_size=128), path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_base_dir(tmp_path_factory):
    return saved_base(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def two_layer_base_dir(tmp_path_factory):  # compare's depth study needs two halves
    return saved_base(tmp_path_factory, 2)


def run(*argv):
    """(exit code, stdout, stderr) of `minprefix ARGV`, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def one_line_error(code, err, command):
    """Exit code not 0 and one line of error (after the thread count, said once when training had started)."""
    lines = [line for line in err.strip().splitlines() if not re.match(r"minprefix: \d+ CPU threads? \(", line)]
    return code != 0 and len(lines) == 1 and lines[0].startswith(f"minprefix {command}: error: ")


# ---------------------------------------------------------------------------- the commands, on the shipped base


def test_cli_generate(capsys):
    main(["generate", "--prompt", "Write 'abc' in capital letters: "])
    assert capsys.readouterr().out.strip().endswith("ABC")


def test_cli_info_prints_the_counts(capsys):
    main(["info"])
    out = capsys.readouterr().out
    assert "491,520" in out  # GPT-2 medium key/value prefix, P=10
    assert "10,240" in out  # GPT-2 medium soft prompt, P=10


def test_cli_errors_are_one_line():
    code, _, err = run("generate", "--prompt", "price in €")
    assert code == 1 and "unknown character '€'" in err and "Traceback" not in err
    code, _, err = run("tune", "--method", "lora", "--task", "bare-reverse")
    assert code == 1 and len(err.strip().splitlines()) == 1
    code, _, err = run("generate", "--prompt", "x" * 200)
    assert code == 1 and "context of 128 positions" in err


def test_cli_tune_then_generate_with_the_artifact(capsys, tmp_path):
    """generate --artifact wears the tuned prefix: its continuation is the loaded model's own greedy one,
    and not the base's."""
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
    before, after = (ast.literal_eval(re.search(rf"^  {when} .* loss \d+\.\d+  (.*)$", out, re.M).group(1))
                     for when in ("before", "after"))
    assert before == SEARCH_START  # the search starts there, and only swaps characters
    assert len(after) == len(before) and after.count("{x}") == 1


# ---------------------------------------------------------------------------- bugs, each with its test


@pytest.mark.parametrize("argv, needle", [
    (["--steps", "-5"], "--steps must be at least 1, got -5"),
    (["--method", "prefix-mlp", "--hidden", "0"], "--hidden must be at least 1 and at most 65536, got 0"),
    (["--eval-every", "0"], "--eval-every must be at least 1, got 0"),
    (["--batch-size", "0"], "--batch-size must be at least 1 and at most 4096, got 0"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--method", "prefix-mlp", "--init", "text", "--init-text", "hi"],
     "--init 'text' is not one of PrefixGPT's with a network: random, zero"),
    (["--method", "prefix-mlp", "--init", "vocab"], "--init 'vocab' is not one of PrefixGPT's with a network"),
    (["--method", "prefix", "--hidden", "64"], "--hidden shapes the network that makes the rows"),
    (["--method", "soft", "--prefix-layers", "top"], "--prefix-layers 'top': SoftPromptGPT has no rows at every block"),
    (["--method", "soft", "--init", "random", "--init-text", "hi"], "--init-text starts the rows from a text"),
    (["--method", "lora"], "--method 'lora' is not one of"),
])
def test_tune_rejects_bad_values_naming_the_flag(argv, needle, tiny_base_dir):
    code, _, err = run("tune", "--base", tiny_base_dir, *argv)
    assert one_line_error(code, err, "tune") and needle in err, err


def test_help_comes_from_the_config_fields_with_each_methods_inits_and_lr():
    text = build_parser()._subparsers._group_actions[0].choices["tune"].format_help()
    squeezed = "".join(text.split())  # argparse wraps the help lines
    for f in dataclasses.fields(TuneConfig):
        said = re.sub(r"`(\w+)`", lambda m: flag(m[1]), f.metadata["help"])  # a field named in help: its flag
        assert flag(f.name) in text and "".join(said.split()) in squeezed, f.name
    assert "prefix-mlp" in text and "random, zero, normal, vocab, text" in text
    assert all(f"lr {m.lr:<6g} {m.steps:>5} steps" in text for m in METHODS.values())  # each default, from the table


def test_a_run_whose_best_is_step_0_warns_that_the_artifact_is_untrained(tiny_base_dir, tmp_path):
    code, _, err = run("tune", "--base", tiny_base_dir, "--method", "soft", "--steps", "2", "--eval-every", "1",
                       "--lr", "1e-9", "--n-dev", "8", "--run-dir", tmp_path)
    assert code == 0 and "minprefix tune: warning:" in err and "untrained" in err


@pytest.mark.parametrize("argv, needle", [
    (["--prompt", ""], "--prompt is empty"),
    (["--prompt", "x", "--max-new-tokens", "-3"], "argument --max-new-tokens: must be at least 1, got -3"),
    (["--prompt", "x", "--temperature", "0"], "argument --temperature: must be a finite number greater than 0"),
    (["--prompt", "x" * 200], "leaves no room in the context of 128 positions"),
    (["--prompt", "price in €"], "unknown character '€'"),
])
def test_generate_rejects_bad_input_in_one_line(argv, needle, tiny_base_dir):
    code, _, err = run("generate", "--base", tiny_base_dir, *argv)
    assert one_line_error(code, err, "generate") and needle in err, err


def test_generate_says_when_it_stops_at_the_context_limit(tiny_base_dir):
    code, out, err = run("generate", "--base", tiny_base_dir, "--prompt", "x" * 120, "--max-new-tokens", "50",
                         "--top-k", "1")
    assert code == 0 and "the context of 128 positions is full" in err
    assert len(out.strip()) <= 128


def test_info_names_the_base_it_was_given(tiny_base_dir):
    code, out, _ = run("info", "--base", tiny_base_dir)
    assert code == 0 and f"base at {tiny_base_dir}" in out and "shipped" not in out


def test_python_dash_m_and_a_closed_pipe_give_no_traceback():
    """`python -m minprefix info | head -1`: the reader goes away early; no BrokenPipeError traceback."""
    done = subprocess.run(f"{sys.executable} -m minprefix info | head -1", shell=True, capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert done.stdout.startswith("shipped base:")
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


# ---------------------------------------------------------------------------- any number, any flag


NUMBERS = {  # negative and zero, small valid values, and very large ones (the heavy middle is left out)
    int: st.one_of(st.integers(-10**6, 0), st.integers(1, 8), st.integers(10**5, 10**12)),
    float: st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(1e-6, 10.0)),
}


def numeric_flags(config_cls, skip=()):
    out = {}
    for f in dataclasses.fields(config_cls):
        kind = next((t for t in (int, float) if f.type is t or t in getattr(f.type, "__args__", ())), None)
        if kind is not None and "help" in f.metadata and f.name not in skip:
            out[flag(f.name)] = NUMBERS[kind]
    return out


COMMANDS = {  # command: (fixed arguments, {numeric flag: values})
    "tune": (["--method", "prefix-mlp", "--task", "bare-reverse"], numeric_flags(TuneConfig)),
    "pretrain": ([], numeric_flags(PretrainConfig)),
    "generate": (["--prompt", "'abc': "], {"--max-new-tokens": NUMBERS[int], "--temperature": NUMBERS[float],
                                             "--top-k": NUMBERS[int], "--seed": NUMBERS[int]}),
    "info": ([], {"--prompt-len": NUMBERS[int], "--hidden": NUMBERS[int]}),
    "search-prompt": (["--task", "reverse"], {"--steps": NUMBERS[int], "--top-k": NUMBERS[int],
                                               "--seed": NUMBERS[int]}),
    "demo": ([], {"--steps": NUMBERS[int]}),
    "compare": (["--quick", "--workers", "1"], numeric_flags(CompareConfig, skip=("workers",))),
    "sweep": (["--quick", "--workers", "1"], numeric_flags(SweepConfig, skip=("workers",))),
    "reparam": (["--quick", "--workers", "1"], numeric_flags(ReparamConfig, skip=("workers",))),
    "bench": (["--no-peft", "--n-layer", "1", "--d-model", "8", "--n-head", "1", "--batch-size", "2", "--seq-len", "4",
               "--prompt-len", "2", "--repeats", "1", "--warmup", "0", "--gen-prompt", "2", "--gen-new", "2"],
              numeric_flags(BenchConfig)),
}


@pytest.fixture
def short_runs(monkeypatch):
    """Any step count is accepted, but only two steps run: the property below is about the flags."""
    real_optimize, real_search = minprefix.train.optimize, minprefix.cli.search_prompt

    def optimize(model, cfg, *args, **kw):
        return real_optimize(model, dataclasses.replace(cfg, steps=min(cfg.steps, 2)), *args, **kw)

    monkeypatch.setattr(minprefix.tune, "optimize", optimize)
    monkeypatch.setattr(minprefix.pretrain, "optimize", optimize)
    short_search = lambda *a, steps, **kw: real_search(*a, steps=min(steps, 2), **{**kw, "progress": False})  # noqa: E731
    monkeypatch.setattr(minprefix.cli, "search_prompt", short_search)
    monkeypatch.setattr(minprefix.lab.compare, "search_prompt", short_search)
    for module in (minprefix.train, minprefix.lab.grid, minprefix.lab.compare):
        monkeypatch.setattr(module, "tqdm", lambda *a, **kw: tqdm(*a, **{**kw, "disable": True}))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_any_number_for_any_flag_works_or_fails_in_one_line(command, tiny_base_dir, two_layer_base_dir, short_runs):
    fixed, numeric = COMMANDS[command]

    @settings(max_examples={"demo": 5, "search-prompt": 10, "compare": 3, "bench": 8, "sweep": 4, "reparam": 3}.get(
              command, 25), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.fixed_dictionaries({}, optional=numeric))
    def check(values):
        with tempfile.TemporaryDirectory() as tmp:
            where = {"pretrain": ["--run-dir", tmp, "--out", f"{tmp}/base"],
                     "tune": ["--base", tiny_base_dir, "--run-dir", tmp],
                     "demo": ["--base", tiny_base_dir, "--figure", f"{tmp}/f.png"],
                     "compare": ["--base", two_layer_base_dir, "--out", tmp, "--run-dir", tmp],  # depth: 2 halves
                     "sweep": ["--base", tiny_base_dir, "--out", tmp, "--run-dir", tmp],
                     "reparam": ["--base", tiny_base_dir, "--out", tmp, "--run-dir", tmp],
                     "bench": [],
                     }.get(command, ["--base", tiny_base_dir])
            argv = [command, *fixed, *where, *(x for k, v in values.items() for x in (k, repr(v)))]
            code, _, err = run(*argv)
        assert "Traceback" not in err, (argv, err)
        assert code == 0 or one_line_error(code, err, command), (argv, err)

    check()


# ---------------------------------------------------------------------------- config types from the Python API


@pytest.mark.parametrize("make, needle", [
    (lambda: TuneConfig(steps=2.5), "`steps` must be an integer, got 2.5"),
    (lambda: TuneConfig(steps="5"), "`steps` must be an integer, got '5'"),
    (lambda: TuneConfig(batch_size=True), "`batch_size` must be an integer, got True"),
    (lambda: PretrainConfig(steps=None), "`steps` must be an integer, got None"),
    (lambda: TuneConfig(method=["prefix"]), "`method` must be a string, got ['prefix']"),  # not a steps error
    (lambda: TuneConfig(lr="0.1"), "`lr` must be a number, got '0.1'"),
    (lambda: TuneConfig(bf16=1), "`bf16` must be True or False, got 1"),
    (lambda: PretrainConfig(weight_decay="0"), "`weight_decay` must be a number, got '0'"),
    (lambda: CompareConfig(seeds=2.0), "`seeds` must be an integer, got 2.0"),
    (lambda: BenchConfig(d_model="256"), "`d_model` must be an integer, got '256'"),
])
def test_config_fields_are_typed(make, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        make()
    assert TuneConfig(lr=1).lr == 1 and TuneConfig(hidden=None).hidden is None  # an int is a fine float


API_CONFIGS = (TuneConfig, PretrainConfig, CompareConfig, SweepConfig, ReparamConfig, BenchConfig)
ANY_VALUE = st.one_of(st.none(), st.booleans(), NUMBERS[int], NUMBERS[float], st.text(max_size=6))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_value_for_any_config_field_in_python_is_taken_or_refused_by_name(data):
    """The API's configs check what the CLI's flags check: a bad value is a ValueError naming the field."""
    cls = data.draw(st.sampled_from(API_CONFIGS))
    field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(cls) if "help" in f.metadata]))
    value = data.draw(ANY_VALUE)
    try:
        cls(**{field: value})
    except ValueError as e:
        assert f"`{field}`" in str(e), (cls.__name__, field, value, str(e))


def test_info_refuses_sizes_that_would_overflow(capsys):
    for argv, needle in ((["--prompt-len", str(10**400)], "--prompt-len 1000"),
                         (["--prompt-len", "100000000000"], "leaves no room for tokens"),
                         (["--hidden", str(10**30)], "--hidden: must be at most 65536")):
        code, _, err = run("info", *argv)
        assert code != 0 and needle in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [
    ["pretrain", "--out", "{file}", "--steps", "1"],
    ["demo", "--figure", "{folder}"],
    ["compare", "--quick", "--out", "{file}"],
    ["figures", "--out", "{file}", "--skip-training"],
])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(argv, tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    argv = [a.format(file=tmp_path / "a_file", folder=tmp_path) for a in argv]
    monkeypatch.setattr(minprefix.cli, "pretrain", lambda *a, **k: pytest.fail("the work started"))
    monkeypatch.setattr(minprefix.lab.demo, "run_demo", lambda *a, **k: pytest.fail("the work started"))
    monkeypatch.setattr(minprefix.lab.compare, "run_compare", lambda *a, **k: pytest.fail("the work started"))
    monkeypatch.setattr(minprefix.lab.figures, "make_figures", lambda *a, **k: pytest.fail("the work started"))
    code, _, err = run(*argv)
    assert one_line_error(code, err, argv[0]) and "give a" in err, err


@pytest.mark.parametrize("command", ["compare", "sweep", "reparam"])
def test_an_unwritable_folder_is_found_by_trying_not_by_permission_bits(command, tmp_path, monkeypatch):
    """Permission bits say yes to root; a read-only place ("/proc" here, a read-only mount) still refuses a file."""
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    for module, name in ((minprefix.lab.compare, "run_compare"), (minprefix.lab.sweep, "run_sweep"),
                         (minprefix.lab.reparam, "run_reparam")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("the work started"))
    code, _, err = run(command, "--quick", "--out", "/proc/minprefix-out")
    assert one_line_error(code, err, command) and "/proc is not a writable folder" in err, err


def test_the_reported_best_step_is_the_one_the_artifact_holds(tmp_path):
    """On tied dev scores (a tiny random base scores 0 % at every step) the artifact and the report agree."""
    from helpers import TOK, quick, tiny_base

    from minprefix.artifacts import read_artifact
    from minprefix.tune import best_of, tune
    _, history = tune(tiny_base(), TOK, quick("prefix"), run_dir=tmp_path, progress=False)
    assert len({h["dev_exact_match"] for h in history}) == 1, "the scores must tie for this test to mean anything"
    assert best_of(history)["step"] == read_artifact(tmp_path / "best.safetensors")[0]["step"]


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.0, 0.3])
def test_two_ctrl_c_in_a_row_stop_without_a_traceback(tmp_path, tiny_base_dir, gap):
    """The second Ctrl-C lands while the first is being handled (or in the exit handlers): still one message."""
    proc = subprocess.Popen([sys.executable, "-m", "minprefix", "tune", "--base", tiny_base_dir, "--task",
                             "bare-reverse", "--steps", "100000", "--run-dir", str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a background job
    deadline = time.time() + 60  # inherits SIGINT ignored, and Python then installs no Ctrl-C handler
    while not (tmp_path / "run" / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.1)  # training has started (step 0's checkpoint is written)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "interrupted; run the same command again to resume" in err


def test_a_sweep_from_an_earlier_sweeps_json_trains_nothing_it_already_has(tiny_base_dir, tmp_path, monkeypatch):
    first = tmp_path / "first"
    code, _, err = run("sweep", "--quick", "--workers", "1", "--base", tiny_base_dir, "--out", first,
                       "--run-dir", first)
    assert code == 0, err
    monkeypatch.setattr(minprefix.lab.grid, "run_cell", lambda *a, **k: pytest.fail("a finished cell was trained"))
    again = tmp_path / "again"
    code, out, err = run("sweep", "--quick", "--workers", "1", "--base", tiny_base_dir, "--out", again, "--run-dir",
                         again, "--from", first / "sweep.json")
    assert code == 0, err
    assert "finished runs taken from" in out
    assert (again / "sweep.md").read_text() == (first / "sweep.md").read_text()
    code, _, err = run("sweep", "--quick", "--base", tiny_base_dir, "--out", again, "--from", tmp_path / "nothing.json")
    assert one_line_error(code, err, "sweep") and "no --from file at" in err and "nothing.json" in err, err


LAB_LOADED = ("import sys\nfrom minprefix.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
              "print(sorted(m for m in sys.modules if m.startswith('minprefix.lab')))")


@pytest.mark.parametrize("argv", [["tune", "--help"], ["tune", "--method", "soft", "--task", "bare-uppercase",
                                                       "--steps", "1", "--eval-every", "1", "--n-dev", "2"]],
                         ids=["help", "run"])
def test_tune_never_loads_the_lab(argv, tmp_path):
    """The lab's modules load for the lab's commands only: `minprefix tune` (and its --help) import none."""
    done = subprocess.run([sys.executable, "-c", LAB_LOADED, *argv, "--run-dir", str(tmp_path)][: 3 + len(argv) + (
        0 if "--help" in argv else 2)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout[-500:] + done.stderr[-500:]
    if "--help" not in argv:
        assert (tmp_path / "best.safetensors").is_file(), done.stderr[-500:]


# ---------------------------------------------------------------------------- threads and run folders


def test_threads_are_said_once_where_training_starts_and_a_bad_variable_is_one_line(tiny_base_dir, tmp_path,
                                                                                     monkeypatch):
    args = ["tune", "--base", tiny_base_dir, "--steps", "1", "--eval-every", "1", "--n-dev", "4", "--device", "cpu"]
    code, _, err = run(*args, "--run-dir", tmp_path / "a")
    assert code == 0 and err.count("CPU thread") == 1 and "--threads N or MINPREFIX_THREADS=N" in err
    code, _, err = run(*args, "--run-dir", tmp_path / "b", "--threads", "1")  # chosen: nothing to say
    assert code == 0 and "CPU thread" not in err
    before = torch.get_num_threads()
    monkeypatch.setenv("MINPREFIX_THREADS", "many")
    code, _, err = run("info", "--base", tiny_base_dir)
    assert one_line_error(code, err, "info") and "MINPREFIX_THREADS='many'" in err
    assert torch.get_num_threads() == before  # main() leaves the caller's setting as it was


def test_each_configuration_gets_its_own_default_run_folder():
    name = minprefix.cli.default_run_dir
    assert name(TuneConfig(method="prefix", task="bare-sort")) == "runs/prefix-bare-sort"
    assert name(TuneConfig(method="prefix", task="bare-sort", lr=METHODS["prefix"].lr)) == "runs/prefix-bare-sort"
    changed = TuneConfig(method="prefix", task="bare-sort", lr=0.01, steps=40)
    assert name(changed) == "runs/prefix-bare-sort-steps40-lr0.01"
    assert name(TuneConfig(method="prefix", task="bare-sort", lr=0.02)) != name(TuneConfig(method="prefix",
                                                                                          task="bare-sort", lr=0.01))
    odd = name(TuneConfig(method="prefix", task="bare-sort", init_text="a/b c" * 40))
    assert "/" not in odd.removeprefix("runs/") and len(odd) < 120


def test_a_rerun_of_a_finished_run_says_it_did_not_train(tiny_base_dir, tmp_path):
    args = ["tune", "--base", tiny_base_dir, "--steps", "2", "--eval-every", "1", "--n-dev", "4",
            "--run-dir", tmp_path]
    code, out, _ = run(*args)
    assert code == 0 and "finished run" not in out
    code, again, _ = run(*args)
    assert code == 0 and "holds a finished run of this configuration" in again
    assert again.splitlines()[-2:] == out.splitlines()[-2:]  # the same result and artifact
    code, _, err = run(*args, "--lr", "0.5")
    assert one_line_error(code, err, "tune") and "--lr the default (checkpoint) vs 0.5 (now)" in err
    assert "None" not in err
