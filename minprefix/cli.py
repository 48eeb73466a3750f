"""The `minprefix` command: pretrain, evaluate, generate, info, tune, search-prompt, demo, compare, bench,
figures.

The flags of `pretrain` and `tune` are built from the fields of PretrainConfig and TuneConfig
(their help text, defaults and ranges live there, once). The lab (minprefix.lab) is imported
only by its own commands: `minprefix tune` never loads it.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from dataclasses import asdict, fields
from pathlib import Path
from typing import get_args

import torch
from tqdm import tqdm

from . import distributed
from .artifacts import load_prompt
from .files import atomic_write_text, fingerprint, short
from .base import SHIPPED_DIR, load_base, save_base
from .config import default_of
from .hard_prompt import SEARCH_START, score_templates, search_prompt
from .methods import METHODS, count_markdown
from .model import pick_device
from .params import GPT2_FAMILY, gpt2_config
from .pretrain import PretrainConfig, pretrain
from .prompted import MLP_HIDDEN, PromptedGPT
from .scoring import percent, score, table
from .tune import TuneConfig, best_of, tune
from .world import BARE_TEMPLATE, DOWNSTREAM_TASKS, PRETRAIN_TASKS, TEMPLATES, copy_baseline, examples


def flag(field: str) -> str:
    """The flag that sets a config field: prompt_len -> --prompt-len."""
    return "--" + field.replace("_", "-")


FIELD_FLAGS = {"layers": "--prefix-layers"}  # Method.build's keyword for the field TuneConfig calls prefix_layers


def say_flags(text: str, parser) -> str:
    """A message of the core, which names fields (`prompt_len`), with each field said as the flag that sets it in
    this command (--prompt-len); a field the command has no flag for keeps its name."""
    flags = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    return re.sub(r"`(\w+)`", lambda m: flags.get(m[1]) or FIELD_FLAGS.get(m[1]) or m[0], text)


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def at_least(low: int, high: int | None = None):
    """An argparse type: an integer >= low (and <= high), or a one-line error naming the bound."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {value}")
        return value
    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text}")
    return value


def add_config_flags(parser, config_cls, skip=()):
    """One flag per field of a config dataclass, with the field's help and default."""
    for f in fields(config_cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        kind = next(t for t in (bool, int, float, str) if f.type is t or t in get_args(f.type))
        default = default_of(f)
        help = f.metadata["help"] + ("" if default is None else f" (default: {default})")
        help = re.sub(r"`(\w+)`", lambda m: flag(m[1]) if hasattr(config_cls, m[1]) else m[0], help)
        if kind is bool:
            parser.add_argument(flag(f.name), action="store_true", default=None, help=help)
        else:
            parser.add_argument(flag(f.name), type=kind, help=help, metavar=f.name.upper())


def config_from(args, config_cls, **defaults):
    """The config a command's flags ask for: given flags override `defaults`, which override the class's."""
    given = {f.name: getattr(args, f.name) for f in fields(config_cls) if getattr(args, f.name, None) is not None}
    return config_cls(**{**defaults, **given})


def check_writable(path, folder: bool) -> None:
    """Refuse, before any work, an output that could not be written: a folder that is a file, or no right to write."""
    path = Path(path)
    if folder and path.is_file() or not folder and path.is_dir():
        raise ValueError(f"{path} is a {'file' if folder else 'folder'}; give a {'folder' if folder else 'file'} path")
    parent = path if folder else path.parent
    while not parent.exists():  # the nearest folder that exists is where the new ones will be made
        parent = parent.parent
    try:  # a real probe: permission bits say nothing for root, or on /proc and read-only mounts
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError:
        raise ValueError(f"cannot write {path}: {parent} is not a writable folder") from None


def _base(args):
    return load_base(pick_device(args.device), args.base or SHIPPED_DIR)


# ---------------------------------------------------------------------------- commands


def cmd_pretrain(args):
    cfg = config_from(args, PretrainConfig)
    check_writable(args.out, folder=True)
    check_writable(args.run_dir, folder=True)
    device = distributed.setup(pick_device(args.device))
    model = pretrain(cfg, args.run_dir, device, on_step=steps_seen(args, device, []))
    if distributed.is_main():
        recipe = {"steps": cfg.steps, "seed": cfg.seed, "task_weights": cfg.task_weights}
        save_base(model.cpu(), args.out, {"pretrain": recipe})
        print(f"saved the base to {args.out}")


def cmd_evaluate(args):
    model, tok = _base(args)
    dev = [ex for t in PRETRAIN_TASKS for ex in examples(t, "dev", 200)]
    print(f"base: {model.num_params():,} parameters, {model.config}")
    print(f"validation loss (every character of {len(dev)} dev examples): "
          f"{score(model, tok, dev, whole_text=True)['loss']:.4f} nats/char")
    rows = []
    for task in PRETRAIN_TASKS + DOWNSTREAM_TASKS:
        test_exs = examples(task, "test", 200)
        test, dev = score(model, tok, test_exs), score(model, tok, examples(task, "dev", 200))
        prompt = f"its {len(TEMPLATES[task])} templates" if task in TEMPLATES else "none (bare input)"
        rows.append([task, prompt, test["n"], percent(test["exact_match"], test["n"]),
                     percent(copy_baseline(test_exs)), f"{dev['loss']:.3f}"])
    print("\n" + table(["task", "prompt", "test examples", "exact match [95 % interval]", "copy baseline",
                        "answer loss (dev)"], rows, right_from=2))


def cmd_generate(args):
    model, tok = _base(args)
    if args.artifact:
        model = load_prompt(args.artifact, model)
    if not args.prompt:
        raise ValueError("--prompt is empty: give at least one character to continue")
    idx = torch.tensor([tok.encode(args.prompt)], device=next(model.parameters()).device)
    room = model.config.block_size - model.prompt_len - idx.size(1)
    if room <= 0:
        raise ValueError(f"--prompt has {idx.size(1)} characters; with {model.prompt_len} prompt rows "
                         f"it leaves no room in the context of {model.config.block_size} positions")
    torch.manual_seed(args.seed)
    out = model.generate(idx, min(args.max_new_tokens, room), temperature=args.temperature,
                         top_k=args.top_k, stop_id=tok.eos_id)
    new = out[0, idx.size(1):].tolist()
    print(args.prompt + tok.decode(new))
    if args.max_new_tokens > room and tok.eos_id not in new:
        print(f"(stopped after {len(new)} new characters: the context of {model.config.block_size} positions "
              "is full)", file=sys.stderr)


def cmd_info(args):
    model, _ = _base(args)
    where = f"base at {args.base}" if args.base else "shipped base"
    print(f"{where}: {model.config}")
    print(f"parameters: {model.num_params():,} (token table {model.wte.weight.numel():,}, "
          f"positions {model.wpe.weight.numel():,}; the output head is tied to the token table)")
    print(f"fingerprint: {fingerprint(model)}\n")
    P, h = args.prompt_len, args.hidden or MLP_HIDDEN
    PromptedGPT.check_prompt_len(model.config, P)  # counts for a prompt that cannot fit are numbers of nothing
    print(f"methods on the {where} (P={P}, k=d_model, h={h}; stored = after merge, without the MLP):\n")
    print(count_markdown(model.config, P, h=h))
    for name in GPT2_FAMILY:
        print(f"\n{name} (P={P}, k=d_model, h={h}: Li & Liang's code has k = d and the bottleneck h = 512):\n")
        print(count_markdown(gpt2_config(name), P, h=h))


def default_run_dir(cfg: TuneConfig) -> str:
    """runs/METHOD-TASK, plus each field that differs from its default (runs/prefix-bare-sort-steps400-lr0.01):
    one folder per configuration, so trying another --lr starts a new run instead of clashing with the last."""
    default_cfg = TuneConfig(method=cfg.method, task=cfg.task)
    default = {**asdict(default_cfg), "lr": default_cfg.peak_lr}  # --lr equal to the method's is the default
    now = {**asdict(cfg), "lr": cfg.peak_lr}
    changed = "".join(f"-{k.replace('_', '-')}{v}" for k, v in now.items() if v != default[k])
    changed = re.sub(r"[^A-Za-z0-9.=_-]", "_", changed)
    if len(changed) > 80:  # a long --init-text: a short, stable name instead
        changed = "-" + hashlib.sha256(changed.encode()).hexdigest()[:12]
    return f"runs/{cfg.method}-{cfg.task}{changed}"


def cmd_tune(args):
    base, tok = _base(args)
    cfg = config_from(args, TuneConfig)
    run_dir = args.run_dir or default_run_dir(cfg)
    check_writable(run_dir, folder=True)
    device = distributed.setup(pick_device(args.device))
    trained = []
    model, history = tune(base, tok, cfg, run_dir, device, init_from=args.init_from,
                          on_step=steps_seen(args, device, trained))
    if not distributed.is_main():
        return
    if not trained:
        print(f"{run_dir} holds a finished run of this configuration: its result, without training "
              "(remove the folder or pass another --run-dir to train again)")
    best = best_of(history)  # the step whose weights the artifact holds
    test = score(model, tok, examples(cfg.task, "test", 200))
    print(f"{cfg.method} on {cfg.task}: best dev exact match {100 * best['dev_exact_match']:.1f} % "
          f"(step {best['step']}), test exact match {percent(test['exact_match'], test['n'])}")
    artifact = Path(run_dir) / "best.safetensors"
    if not artifact.is_file():  # the folder was removed or emptied while the run went on
        raise FileNotFoundError(f"the run ended, but its artifact {artifact} is gone (was {run_dir} removed "
                                "during the run?): run the same command again")
    print(f"artifact: {artifact}")


def cmd_search_prompt(args):
    base, tok = _base(args)
    task = args.task if args.task in DOWNSTREAM_TASKS else f"bare-{args.task}"
    if task not in DOWNSTREAM_TASKS:
        raise ValueError(f"unknown --task {args.task!r}; choose from {', '.join(DOWNSTREAM_TASKS)}")
    train, dev = examples(task, "train", 200), examples(task, "dev", 200)
    candidates = list(TEMPLATES.get(task.removeprefix("bare-"), ())) + [BARE_TEMPLATE]
    print(f"hand-written templates on the dev split of {task} ({len(dev)} examples):")
    for r in score_templates(base, tok, dev, candidates):
        print(f"  {percent(r['exact_match'], r['n']):>7}  loss {r['loss']:.3f}  {r['template']!r}")
    start = args.start or SEARCH_START
    before = score_templates(base, tok, dev, [start])[0]
    found, history = search_prompt(base, tok, train, start, steps=args.steps, top_k=args.top_k, seed=args.seed)
    after = score_templates(base, tok, dev, [found])[0]
    print(f"search ({args.steps} steps, {len(history)} swaps kept):")
    print(f"  before {percent(before['exact_match'], before['n']):>7}  loss {before['loss']:.3f}  {start!r}")
    print(f"  after  {percent(after['exact_match'], after['n']):>7}  loss {after['loss']:.3f}  {found!r}")


def cmd_demo(args):
    from .lab.demo import run_demo

    check_writable(args.figure, folder=False)
    base_and_tok, device = _base(args), pick_device(args.device)
    if args.threads_note and device == "cpu":
        print(args.threads_note, file=sys.stderr)
    run_demo(base_and_tok, device, args.figure, steps=args.steps)


def cmd_compare(args):
    from .lab.compare import QUICK, CompareConfig, run_compare
    from .lab.report import write_report

    base, tok = _base(args)
    cfg = config_from(args, CompareConfig, **(QUICK if args.quick else {}))
    out = args.out or ("runs/compare-quick" if args.quick else "figures")
    runs = args.run_dir or ("runs/compare-quick" if args.quick else "runs/compare")
    check_writable(out, folder=True)
    data = write_report(run_compare(base, tok, cfg, runs, pick_device(args.device)), Path(out))
    for c in data["claims"]:
        print(f"{c['verdict']:>13}: {c['claim']}\n               {c['here']}")
    print(f"\n{data['seconds'] / 60:.1f} min; wrote {out}/compare.md, compare.json, compare_tasks.png, "
          f"compare_studies.png (finished runs are kept in {runs}: rerun to resume)")


def compact(obj, digits: int = 5):
    """obj with every run's per-step training losses (most of a results file) cut to `digits` significant
    digits; every other number is kept exact, so runs read back with --from rank as they did."""
    if isinstance(obj, dict):
        return {k: [float(f"{x:.{digits}g}") for x in v] if k == "losses" else compact(v, digits)
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [compact(v, digits) for v in obj]
    return obj


def _grid_command(args, name, config_cls, quick, run, markdown, plot, runs_default):
    """sweep, reparam: run (or resume) a grid, write NAME.md, .json and .png, print the tables."""
    from .lab.figures import close
    from .lab.grid import adopt

    base, tok = _base(args)
    cfg = config_from(args, config_cls, **(quick if args.quick else {}))
    out = Path(args.out or (f"runs/{name}-quick" if args.quick else "figures"))
    runs = Path(args.run_dir or (f"runs/{name}-quick" if args.quick else runs_default))
    check_writable(out, folder=True)
    if args.from_file:
        added, other = adopt(runs / "results.json", args.from_file, fingerprint(base))
        print(f"{added} finished runs taken from {args.from_file}"
              + (f" ({other} left out: measured on another base)" if other else ""))
    data = run(base, tok, cfg, runs / "results.json", pick_device(args.device))
    atomic_write_text(out / f"{name}.json", json.dumps(compact(data)))
    atomic_write_text(out / f"{name}.md", markdown(data))
    close(plot(data, out / f"{name}.png"))
    print(markdown(data))
    print(f"wrote {out}/{name}.md, {name}.json, {name}.png (finished runs are kept in {runs}: rerun to resume)")


def cmd_sweep(args):
    from .lab.figures import plot_sweep
    from .lab.sweep import QUICK as SWEEP_QUICK, SweepConfig, run_sweep, sweep_markdown

    _grid_command(args, "sweep", SweepConfig, SWEEP_QUICK, run_sweep, sweep_markdown, plot_sweep, "runs/sweep")


def cmd_reparam(args):
    from .lab.figures import plot_reparam
    from .lab.reparam import QUICK as REPARAM_QUICK, ReparamConfig, reparam_markdown, run_reparam

    _grid_command(args, "reparam", ReparamConfig, REPARAM_QUICK, run_reparam, reparam_markdown, plot_reparam,
                  "runs/sweep")


def cmd_bench(args):
    from .lab.bench import BenchConfig, grid_throughput, print_grid_table, print_profile, print_table, run_bench

    if args.grid:
        rows = grid_throughput(*_base(args), device=pick_device(args.device))
        print(json.dumps(rows, indent=1)) if args.json else print_grid_table(rows)
        return
    cfg = config_from(args, BenchConfig)
    quiet = args.json
    result = run_bench(cfg, pick_device(args.device), peft_too=not args.no_peft,
                       progress=(lambda s: print(s, file=sys.stderr)) if quiet else print, profile=args.profile)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print_table(result)
        if args.profile:
            print_profile(result["profile_ms_per_step"])


def redraw(path, name, draw):
    """draw(the results file at path), whose top level `read_results` checks; a wrong field deeper down is one line
    naming the file too."""
    from .lab.grid import read_results

    try:
        draw(read_results(path, name))
    except (KeyError, TypeError, IndexError, AttributeError, StopIteration) as e:
        raise ValueError(f"{path}: not a {name} results file of this minprefix ({type(e).__name__}: {short(e)}): "
                         f"rerun `minprefix {name}` to write it again") from None


def cmd_figures(args):
    from .lab.demo import run_demo
    from .lab.figures import close, make_figures, plot_reparam, plot_sweep
    from .lab.report import write_report

    check_writable(args.out, folder=True)
    base_and_tok = _base(args)
    for path in make_figures(args.out, base_and_tok[0].config):
        print(f"wrote {path}")
    measured = Path(args.out) / "compare.json"
    if measured.exists():  # tables, verdicts and figures recomputed from the runs `minprefix compare` kept, no training
        redraw(measured, "compare", lambda data: write_report(data, Path(args.out)))
        print(f"wrote compare.md, compare.json, compare_tasks.png, compare_studies.png (from {measured})")
    for name, plot in (("sweep", plot_sweep), ("reparam", plot_reparam)):  # likewise, `minprefix sweep` / `reparam`
        measured = Path(args.out) / f"{name}.json"
        if measured.exists():
            redraw(measured, name, lambda data: close(plot(data, Path(args.out) / f"{name}.png")))  # noqa: B023
            print(f"wrote {Path(args.out) / name}.png (from {measured})")
    if not args.skip_training:
        run_demo(base_and_tok, pick_device(args.device), Path(args.out) / "demo.png")


# ---------------------------------------------------------------------------- parser


def methods_epilog() -> str:
    lines = ["methods (default learning rate, the best of `minprefix sweep`, at the step count where that sweep "
             "converged or its longest; inits, the default first):"]
    wide = max(len(m.label) for m in METHODS.values()) + 1
    for m in METHODS.values():
        lines.append(f"  {m.name:<17} {m.label:<{wide}} lr {m.lr:<6g} {m.steps:>5} steps  "
                     f"init: {', '.join(m.inits) or '-'}")
    return "\n".join(lines)


LAB_COMMANDS = {  # name: (function, help, options of `command`); the lab's modules are loaded when one of them runs
    "demo": (cmd_demo, "hard prompts, soft prompt, prefix and full fine-tuning, side by side", {}),
    "compare": (cmd_compare, "the papers' claims, measured: every method, low data, prefix length, depth, init, a "
                "new skill, ensembles (resumable)", {}),
    "sweep": (cmd_sweep, "each method's learning rate, swept until the best is inside the range (resumable)", {}),
    "reparam": (cmd_reparam, "lesson 5's grids: the MLP's stability, bottleneck, sharing and init (shares finished "
                "runs with sweep) (resumable)", {}),
    "bench": (cmd_bench, "speed and memory of tuning against full fine-tuning and PEFT, as ratios", {"base": False}),
    "figures": (cmd_figures, "draw every figure of the README and the lessons (fixed seeds)", {}),
}


def build_parser(lab: bool = True) -> argparse.ArgumentParser:
    """The whole command line; lab=False leaves out the flags of the lab's commands (and so the lab's imports)."""
    p = Parser(prog="minprefix", description="Prompt tuning from scratch on a small frozen GPT.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    def command(name, fn, help, base=True, **kw):
        c = sub.add_parser(name, help=help, description=help, **kw)
        c.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: cuda, then mps, then cpu)")
        c.add_argument("--threads", type=at_least(1, 1024), help="CPU threads of torch (default: MINPREFIX_THREADS, "
                       "else the cores not busy with other work; a grid's runs use one each)")
        if base:
            c.add_argument("--base", help="directory of a base model (default: the shipped one)")
        c.set_defaults(fn=fn)
        return c

    base_commands(command)
    prompt_commands(command)
    lab_parsers = {name: command(name, fn, help, **kw) for name, (fn, help, kw) in LAB_COMMANDS.items()}
    if lab:
        lab_flags(lab_parsers)
    p.commands = sub.choices  # name: the command's parser, whose flags say_flags reads
    return p


def base_commands(command):
    """pretrain, evaluate, generate, info: the base model."""
    c = command("pretrain", cmd_pretrain, "pretrain a base GPT on the tiny world (resumes if interrupted)", base=False)
    add_config_flags(c, PretrainConfig)
    c.add_argument("--run-dir", default="runs/pretrain", help="checkpoints go here (default: runs/pretrain)")
    c.add_argument("--out", default="runs/pretrain/base",
                   help="where the finished base goes (minprefix/weights rebuilds the shipped one)")

    command("evaluate", cmd_evaluate, "score the base on every task's test split, beside the copy baseline")

    c = command("generate", cmd_generate, "continue a text with the base (or a tuned prompt)")
    c.add_argument("--prompt", required=True, help="the text to continue")
    c.add_argument("--artifact", help="a tuned prompt (.safetensors) to wear")
    c.add_argument("--max-new-tokens", type=at_least(1), default=40, help="at most this many characters (default: 40)")
    c.add_argument("--temperature", type=positive_float, default=1.0, help="sampling temperature (default: 1)")
    c.add_argument("--top-k", type=at_least(1), default=1, help="sample from the k likeliest; 1 = greedy (default)")
    c.add_argument("--seed", type=at_least(0), default=0, help="seed of the sampling (default: 0)")

    c = command("info", cmd_info, "configuration and parameter counts of every method")
    c.add_argument("--prompt-len", type=at_least(1), default=10, help="P, rows or positions (default: 10)")
    c.add_argument("--hidden", type=at_least(1, 65536), help=f"hidden width of the MLP (default: {MLP_HIDDEN})")


def prompt_commands(command):
    """tune, search-prompt: a soft, a prefix or a hard prompt for one task."""
    c = command("tune", cmd_tune, "tune one method on one task", epilog=methods_epilog(),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(c, TuneConfig)
    c.add_argument("--run-dir", help="checkpoint.safetensors and best.safetensors go here (default: runs/METHOD-TASK, "
                   "plus each flag that differs from its default, e.g. runs/prefix-bare-sort-lr0.01)")
    c.add_argument("--init-from", help="continue from a saved artifact of the same (direct) method")

    c = command("search-prompt", cmd_search_prompt, "score hard prompts, then search with gradients")
    c.add_argument("--task", required=True, help="a downstream task, or a pretraining task (its bare variant)")
    c.add_argument("--start", help="template to start from, with {x} where the input goes "
                   "(default: ten '*' then the bare input)")
    c.add_argument("--steps", type=at_least(1), default=40, help="search steps (default: 40)")
    c.add_argument("--top-k", type=at_least(1), default=8, help="candidates tried per step (default: 8)")
    c.add_argument("--seed", type=at_least(0), default=0, help="seed of positions and batches (default: 0)")


def lab_flags(parsers: dict):
    """The flags of demo, compare, sweep, reparam, bench and figures: the experiments of minprefix.lab."""
    from .lab.bench import BenchConfig
    from .lab.compare import CompareConfig
    from .lab.demo import DEMO_STEPS
    from .lab.reparam import ReparamConfig
    from .lab.sweep import SweepConfig

    c = parsers["demo"]
    c.add_argument("--steps", type=at_least(1), default=DEMO_STEPS, help=f"tuning steps per method (default: "
                   f"{DEMO_STEPS}, the sweep's)")
    c.add_argument("--figure", default="figures/demo.png", help="where the figure goes")

    c = parsers["compare"]
    add_config_flags(c, CompareConfig)
    c.add_argument("--quick", action="store_true", help="a small grid, a few minutes on 2 cores (numbers mean little)")
    c.add_argument("--out", help="tables and figures go here (default: figures, or runs/compare-quick with --quick)")
    c.add_argument("--run-dir", help="finished runs are kept here (default: runs/compare or runs/compare-quick)")

    for name, config_cls in (("sweep", SweepConfig), ("reparam", ReparamConfig)):
        c = parsers[name]
        add_config_flags(c, config_cls)
        c.add_argument("--quick", action="store_true", help="a tiny grid that checks the machinery (numbers mean "
                       "nothing)")
        c.add_argument("--out", help=f"{name}.md, .json and .png go here (default: figures, or runs/{name}-quick)")
        c.add_argument("--run-dir", help=f"finished runs are kept here (default: runs/sweep, or runs/{name}-quick)")
        c.add_argument("--from", dest="from_file", metavar="JSON", help=f"an earlier {name}.json (e.g. the committed "
                       f"figures/{name}.json): its runs count as finished, so only new cells train")

    c = parsers["bench"]
    add_config_flags(c, BenchConfig)
    c.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    c.add_argument("--no-peft", action="store_true", help="skip the rows against transformers + PEFT")
    c.add_argument("--profile", action="store_true", help="also where a step's time goes, by kind of op")
    c.add_argument("--grid", action="store_true", help="instead: tuning runs per minute through run_grid for each "
                   "setting of processes and threads (on the shipped base, or --base)")
    c.add_argument("--base", help="directory of a base model, for --grid (default: the shipped one)")

    c = parsers["figures"]
    c.add_argument("--out", default="figures", help="the folder (default: figures)")
    c.add_argument("--skip-training", action="store_true", help="only the figures that need no training "
                   "(demo.png needs `minprefix demo`, about four minutes)")


def pick_threads(given: int | None) -> str | None:
    """torch's CPU threads: --threads, else MINPREFIX_THREADS, else the cores not already busy (a thread per core
    that another process keeps busy only makes every step wait: on a busy 2-core machine a run can take twice as
    long with torch's default as with one thread). Returns what to say about it (once, where training starts:
    `steps_seen`), or None when the user chose."""
    env = os.environ.get("MINPREFIX_THREADS")
    if given is None and env is not None:
        try:
            given = at_least(1, 1024)(env)
        except argparse.ArgumentTypeError as e:
            raise ValueError(f"MINPREFIX_THREADS={env!r}: {e}") from None
    if given is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        try:  # under torchrun the ranks of this machine share its cores
            ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        except ValueError:
            ranks = 1
        n = max(1, min(cores, round(cores - load)) // ranks)
        torch.set_num_threads(n)
        return (f"minprefix: {n} CPU thread{'s' * (n > 1)} ({cores} cores, 1-minute load {load:.1f}); "
                "set --threads N or MINPREFIX_THREADS=N to choose")
    torch.set_num_threads(given)
    return None


def steps_seen(args, device, seen: list):
    """An on_step that puts the first step it sees in `seen` (so `seen` says whether anything trained) and then says
    the thread count: once, when training has really started, so an error before it stays one line."""
    def on_step(step, loss):
        if not seen:
            seen.append(step)
            if args.threads_note and str(device).startswith("cpu") and distributed.is_main():
                tqdm.write(args.threads_note, file=sys.stderr)
    return on_step


def interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)  # the command: the lab loads for its own only
    parser = build_parser(lab=chosen in LAB_COMMANDS)
    args = parser.parse_args(argv)
    name, here = f"minprefix {args.command}", parser.commands[args.command]
    in_main_thread = threading.current_thread() is threading.main_thread()  # only there can signals be handled
    previous = signal.signal(signal.SIGTERM, interrupt) if in_main_thread else None  # `kill`, schedulers: as Ctrl-C
    threads = torch.get_num_threads()  # main() called in a process (a notebook, a test) gives it back as it was
    try:
        with warnings.catch_warnings():  # a warning is one line too
            warnings.showwarning = lambda message, *_: print(f"{name}: warning: {say_flags(str(message), here)}",
                                                             file=sys.stderr)
            args.threads_note = pick_threads(args.threads)
            args.fn(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
        print(f"{name}: error: {say_flags(str(e), here)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while exiting: no traceback from exit handlers
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(f"\n{name}: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # the reader went away (`minprefix info | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except OSError as e:  # a full disk, a read-only folder, a path that is a folder
        print(f"{name}: error: {e.strerror or e} ({e.filename or 'a file'}): free space or pass another path",
              file=sys.stderr)
        sys.exit(1)
    finally:
        torch.set_num_threads(threads)
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    main()
