"""`minprefix compare`: the papers' claims, measured on the tiny world with one grid of runs.

Every trained number comes from `grid.run_grid` (resumable: a finished cell is never run again);
the untrained rows (bare base, copy baseline, hand-written templates, discrete search) are cached
in the same results folder. Studies, each a claim of a paper (see DESIGN.md for their numbers):

- main table: every method on every bare and composed task, each at its own best learning rate
  from one sweep (the method's default times `lr_factors`, on the headline tasks, seed 0);
- low data (Li & Liang §6.3): prefix against full fine-tuning at a few training-set sizes;
- prefix length (Li & Liang §7.1, Lester §3.2); depth (P-tuning v2 §4.4); initialization in low
  data (Li & Liang §7.3, Lester §3.2); eliciting against learning on a task that needs a new
  skill (Petrov, Torr & Bibi 2024); ensembling five soft prompts (Lester §7).
"""

import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..artifacts import load_prompt
from ..bank import PromptBank, ensemble_generate
from ..config import arg, validate
from .grid import ResultStore, artifact_name, cell_key, run_grid
from ..hard_prompt import SEARCH_START, score_templates, search_prompt
from .. import methods
from ..methods import METHODS
from ..train import TuneConfig
from ..world import (BARE_TEMPLATE, COMPOSED_TASKS, NEW_SKILL_TASKS, PRETRAIN_TASKS, copy_baseline, examples,
                     hand_templates, instruction)

INIT_STUDY = (methods.SOFT.name, methods.PREFIX.name)  # the direct methods whose initialization is studied
SOFT_INITS = ("random", "vocab", "text")


def variant(method: str, init: str | None = None) -> str:
    """A row of the main table: a method's label (from the methods table), with its init where it varies."""
    return METHODS[method].label + (f", {init} init" if init else "")


SOFT_NAME = methods.SOFT.name
VARIANTS = {  # a row of the main table -> what it trains (TuneConfig fields); the soft prompt at each init
    **{variant(SOFT_NAME, i): {"method": SOFT_NAME, "init": i} for i in SOFT_INITS},
    **{variant(m): {"method": m} for m in METHODS if m != SOFT_NAME},
}
SOFT, PREFIX, PREFIX_DIRECT, FULL = (variant(SOFT_NAME, "vocab"), variant(methods.PREFIX_MLP.name),
                                     variant(methods.PREFIX.name), variant(methods.FULL.name))
INIT_VARIANTS = tuple(variant(SOFT_NAME, i) for i in SOFT_INITS)  # (their init; the direct prefix too)
SHIFT_VARIANTS = (SOFT,) + tuple(variant(m) for m in METHODS if m != SOFT_NAME)
@dataclass
class CompareConfig:
    steps: int = arg(200, "optimizer steps of every tuning run", low=1)
    seeds: int = arg(3, "seeds per cell", low=1, high=100)
    headline_seeds: int = arg(5, "seeds per cell on the headline tasks", low=1, high=100)
    shift_factor: int = arg(4, "the new-skill task gets this many times the steps", low=1, high=100)
    eval_every: int = arg(50, "steps between dev evaluations", low=1)
    n_dev: int = arg(200, "dev examples per task (at most)", low=1, high=10_000)
    n_test: int = arg(200, "test examples per task (at most)", low=1, high=10_000)
    search_steps: int = arg(40, "steps of the discrete prompt search", low=1)
    workers: int = arg(2, "processes that run cells at once", low=1, high=64)
    tasks: tuple = tuple(f"bare-{t}" for t in PRETRAIN_TASKS) + COMPOSED_TASKS
    headline_tasks: tuple = ("bare-translate", "reverse-upper")
    study_task: str = "reverse-upper"  # low data, prefix length, depth
    init_task: str = "bare-translate"  # initialization in low data
    init_n_train: int = 16
    low_data: tuple = (16, 64, 256, 1024)
    prompt_lens: tuple = (1, 5, 10, 20, 40)
    lr_factors: tuple = (1 / 3, 1.0, 3.0)  # the sweep: each method's default learning rate times these

    def __post_init__(self):
        validate(self)
        if 1.0 not in self.lr_factors:
            raise ValueError(f"lr_factors {self.lr_factors} must include 1.0, the default learning rate")


QUICK = dict(steps=40, eval_every=20, seeds=1, headline_seeds=2, n_dev=100, n_test=100, search_steps=10,
             tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",), init_task="bare-reverse",
             low_data=(16, 256), prompt_lens=(1, 10), shift_factor=2)


# ---------------------------------------------------------------------------- the cells


def tune_config(cfg: CompareConfig, variant: str, task: str, seed: int, lr: float | None = None, **kw) -> TuneConfig:
    fields = dict(VARIANTS[variant])
    if fields.get("init") == "text":
        fields["init_text"] = instruction(task)
    return TuneConfig(**fields, task=task, seed=seed, lr=lr, steps=cfg.steps, eval_every=cfg.eval_every,
                      n_dev=cfg.n_dev, **kw)


def lr_of(variant: str, factor: float) -> float:
    return METHODS[VARIANTS[variant]["method"]].lr * factor


def sweep_configs(cfg: CompareConfig) -> list[TuneConfig]:
    return [tune_config(cfg, v, t, 0, lr_of(v, f)) for v in VARIANTS for t in cfg.headline_tasks
            for f in cfg.lr_factors]


def best_lrs(cfg: CompareConfig, sweep: list[dict]) -> dict[str, float]:
    """Each variant's learning rate with the best mean dev score over the headline tasks (ties: the default)."""
    dev = {json.dumps(r["config"], sort_keys=True): r["dev"] for r in sweep}

    def mean_dev(v, f):
        return statistics.fmean(dev[cell_key(tune_config(cfg, v, t, 0, lr_of(v, f)))] for t in cfg.headline_tasks)
    default_first = sorted(cfg.lr_factors, key=lambda f: f != 1.0)  # max() keeps the first of equals
    return {v: lr_of(v, max(default_first, key=lambda f: mean_dev(v, f))) for v in VARIANTS}


def study_configs(cfg: CompareConfig, lrs: dict) -> dict[str, list[TuneConfig]]:
    """Every cell after the sweep, by study. Cells shared between studies are run once."""
    def seeds(task):
        return range(cfg.headline_seeds if task in cfg.headline_tasks else cfg.seeds)

    t, s = cfg.study_task, range(cfg.seeds)
    study = {
        "main": [tune_config(cfg, v, task, i, lrs[v]) for v in VARIANTS for task in cfg.tasks for i in seeds(task)],
        "low_data": [tune_config(cfg, v, t, i, lrs[v], n_train=n) for v in (PREFIX, FULL) for n in cfg.low_data
                     for i in s],
        "prompt_len": [tune_config(cfg, PREFIX, t, i, lrs[PREFIX], prompt_len=p) for p in cfg.prompt_lens for i in s],
        "depth": [tune_config(cfg, PREFIX, t, i, lrs[PREFIX], prefix_layers=layers)
                  for layers in ("bottom", "top", "all") for i in s],
        "init": [replace(tune_config(cfg, v, cfg.init_task, i, lrs[v] if m == SOFT_NAME else lrs[PREFIX_DIRECT],
                                     n_train=cfg.init_n_train), method=m)
                 for m in INIT_STUDY for v in INIT_VARIANTS for i in s],
        "shift": [replace(tune_config(cfg, v, NEW_SKILL_TASKS[0], i, lrs[v]), steps=cfg.steps * cfg.shift_factor,
                          eval_every=cfg.eval_every * cfg.shift_factor) for v in SHIFT_VARIANTS for i in s],
    }
    return study


def untrained_rows(base, tok, cfg: CompareConfig, store: ResultStore, progress=True) -> dict:
    """Bare base, copy baseline, best hand-written template (chosen on dev), discrete search; per task."""
    rows = {}
    for task in tqdm(cfg.tasks + NEW_SKILL_TASKS, desc="untrained rows", disable=not progress):
        dev, test = examples(task, "dev", cfg.n_dev), examples(task, "test", cfg.n_test)
        key = f"untrained {task} dev={len(dev)} test={len(test)} search_steps={cfg.search_steps} seeds={cfg.seeds}"
        if key not in store:
            best = score_templates(base, tok, dev, list(hand_templates(task)))[0]["template"]
            found = []
            for seed in range(cfg.seeds):
                train = examples(task, "train", 200, seed=seed)
                template, _ = search_prompt(base, tok, train, SEARCH_START, steps=cfg.search_steps,
                                            seed=seed, progress=False)
                found.append(template)
            on = {name: (score_templates(base, tok, dev, ts), score_templates(base, tok, test, ts))
                  for name, ts in (("base, bare input", [BARE_TEMPLATE]), ("hand-written template", [best]),
                                   ("discrete search start", [SEARCH_START]), ("discrete search", found))}
            store.put(key, {
                "n_dev": len(dev), "n_test": len(test),
                "copy baseline": {"dev": [copy_baseline(dev)], "test": [copy_baseline(test)]},
                **{name: {"dev": [r["exact_match"] for r in d], "test": [r["exact_match"] for r in te],
                          "templates": [r["template"] for r in d]} for name, (d, te) in on.items()}})
        rows[task] = store[key]
    return rows


@torch.no_grad()
def ensemble(base, tok, configs: list[TuneConfig], artifacts: Path, n_test: int) -> dict:
    """Test exact match of N soft prompts of one task in one batched pass: mean log-probability and majority vote."""
    bank = PromptBank({f"seed {c.seed}": load_prompt(artifacts / artifact_name(c), base) for c in configs})
    exs = examples(configs[0].task, "test", n_test)
    correct = {"mean": 0, "vote": 0}
    for length in sorted({len(ex.prompt) for ex in exs}):  # one batch per prompt length: no padding needed
        group = [ex for ex in exs if len(ex.prompt) == length]
        idx = torch.tensor([tok.encode(ex.prompt) for ex in group])
        longest = max(len(ex.answer) for ex in group) + 1
        for combine in correct:
            out = ensemble_generate(bank, list(bank.members), idx, longest, tok.eos_id, combine)
            correct[combine] += sum(tok.decode(row[length:].tolist()) == ex.answer for row, ex in zip(out, group))
    return {k: v / len(exs) for k, v in correct.items()}


# ---------------------------------------------------------------------------- the whole run


def run_compare(base, tok, cfg: CompareConfig, runs_dir="runs/compare", device="cpu", progress=True) -> dict:
    """Run (or resume) every study; returns the raw results (`report.write_report` writes them out)."""
    if base.config.n_layer < 2:
        raise ValueError(f"the depth study puts a prefix on half of the layers: it needs a base of at least 2 layers, "
                         f"not {base.config.n_layer}")
    t0 = time.time()
    runs = Path(runs_dir)
    store, results = ResultStore(runs / "untrained.json"), runs / "results.json"
    grid = dict(path=results, device=device, progress=progress, n_test=cfg.n_test, workers=cfg.workers,
                artifacts=runs / "artifacts")
    untrained = untrained_rows(base, tok, cfg, store, progress)
    sweep = run_grid(base, tok, sweep_configs(cfg), **grid)
    lrs = best_lrs(cfg, sweep)
    studies = study_configs(cfg, lrs)
    everything = run_grid(base, tok, [c for cs in studies.values() for c in cs], **grid)
    by_key = {json.dumps(r["config"], sort_keys=True): r for r in everything}  # = cell_key of its config
    data = {"config": asdict(cfg), "base": base.config.__dict__, "n_base": base.num_params(), "lrs": lrs,
            "sweep": sweep, "untrained": untrained,
            "studies": {name: [by_key[cell_key(c)] for c in cs]
                        for name, cs in studies.items()}}
    data["ensemble"] = {task: ensemble(base, tok, [tune_config(cfg, SOFT, task, i, lrs[SOFT])
                                                   for i in range(cfg.headline_seeds)], runs / "artifacts", cfg.n_test)
                        for task in cfg.headline_tasks}
    data["seconds"] = time.time() - t0
    return data
