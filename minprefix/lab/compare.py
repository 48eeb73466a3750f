"""`minprefix compare`: the papers' claims, measured on the tiny world with one grid of runs.

Every trained number comes from `grid.run_grid` (resumable: a finished cell is never run again);
the untrained rows (bare base, copy baseline, hand-written templates, discrete search) are cached
in the same results folder. Every method runs at its default learning rate: the best point of
`minprefix sweep`, which brackets it (figures/sweep.md), for the steps at which that sweep found
it converged (the methods table's `steps`). A run ends early once its dev exact match is 100 %
(nothing is left to learn on dev); whether the others had stopped improving is reported per
cell, with the sweep's criterion (`grid.converged`).

Studies, each a claim of a paper (docs/references.md cites them; docs/results.md has the verdicts):
- main table: every method on every bare and composed task;
- low data (Li & Liang §6.3): prefix against full fine-tuning at a few training-set sizes, on every
  task of the main table;
- prefix length (Li & Liang §7.1, Lester §3.2); depth (P-tuning v2 §4.4); initialization in low
  data (Li & Liang §7.3, Lester §3.2); eliciting against learning on a task that needs a new
  skill (Petrov, Torr & Bibi 2024); ensembling the soft prompts of the seeds (Lester §7).
"""

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm  # the text bar: in a notebook without ipywidgets, tqdm.auto warns and falls back to it

from ..artifacts import load_prompt
from ..files import fingerprint
from ..bank import PromptBank, ensemble_generate
from ..config import arg, validate
from .grid import EVAL_EVERY, LEGACY_BASE, TOLERANCE, ResultStore, artifact_name, cell_key, load_committed, run_grid
from ..hard_prompt import SEARCH_START, score_templates, search_prompt
from ..methods import METHODS
from .studies import FULL_LABEL, INIT_STUDY, PREFIX_MLP_LABEL, SOFT_INITS, SOFT_LABEL, VARIANTS
from ..tune import TuneConfig
from ..world import (BARE_TEMPLATE, COMPOSED_TASKS, NEW_SKILL_TASKS, PRETRAIN_TASKS, TUNE_TRAIN_SIZE, copy_baseline,
                     examples, hand_templates, instruction)

@dataclass
class CompareConfig:
    steps: int | None = arg(None, "optimizer steps of every tuning run (default: each method's, the step count at "
                            "which its sweep converged)", low=1)
    seeds: int = arg(3, "seeds per cell, on every task and in every study", low=1, high=100)
    shift_factor: int = arg(1, "the new-skill task gets this many times the steps", low=1, high=100)
    eval_every: int = arg(EVAL_EVERY, "steps between dev evaluations", low=1)
    stop_at: float = arg(1.0, "a run ends at the first dev evaluation with this exact match", above=0, high=1.0)
    n_dev: int = arg(200, "dev examples per task (at most)", low=1, high=10_000)
    n_test: int = arg(200, "test examples per task (at most)", low=1, high=10_000)
    search_steps: int = arg(40, "steps of the discrete prompt search", low=1)
    workers: int = arg(2, "processes that run cells at once", low=1, high=64)
    compile: bool = arg(False, "torch.compile each run's training step (pays on long runs on a GPU; not on the "
                        "tiny world's short CPU runs: see `minprefix bench --compile`)")
    tolerance: float = arg(TOLERANCE, "converged: the best-so-far dev score rose at most this over "
                           "the last quarter of the steps", low=0.0, high=1.0)
    tasks: tuple = tuple(f"bare-{t}" for t in PRETRAIN_TASKS) + COMPOSED_TASKS
    headline_tasks: tuple = ("bare-reverse", "reverse-upper")  # lesson 6's and the demo's; their prompts ensembled
    study_task: str = "reverse-upper"  # prefix length, depth
    low_data_tasks: tuple | None = None  # None: every task of the main table
    init_task: str = "bare-translate"  # initialization in low data
    init_n_train: int = 16
    low_data: tuple = (16, TUNE_TRAIN_SIZE)  # the last: every training example, as in the main table
    prompt_lens: tuple = (1, 5, 10, 20)

    def __post_init__(self):
        validate(self)
        self.low_data_tasks = self.tasks if self.low_data_tasks is None else self.low_data_tasks
        unknown = [t for t in self.headline_tasks + self.low_data_tasks + (self.study_task,) if t not in self.tasks]
        if unknown:
            raise ValueError(f"task(s) {', '.join(unknown)} of a study are not among --tasks {', '.join(self.tasks)}")


QUICK = dict(steps=40, eval_every=20, seeds=2, n_dev=100, n_test=100, search_steps=10,
             tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",), init_task="bare-reverse",
             low_data=(16, TUNE_TRAIN_SIZE), prompt_lens=(1, 10), shift_factor=2)


# ---------------------------------------------------------------------------- the cells


def tune_config(cfg: CompareConfig, method: str, task: str, seed: int, **kw) -> TuneConfig:
    """A cell: `method` at its default learning rate (the sweep's best) and init, on `task`."""
    if kw.get("init") == "text":
        kw["init_text"] = instruction(task)
    return TuneConfig(method=method, task=task, seed=seed, lr=METHODS[method].lr,
                      steps=cfg.steps or METHODS[method].steps, eval_every=cfg.eval_every, n_dev=cfg.n_dev,
                      stop_at=cfg.stop_at, compile=cfg.compile, **kw)


def study_configs(cfg: CompareConfig) -> dict[str, list[TuneConfig]]:
    """Every cell, by study. Cells shared between studies (same config) are run once."""
    t, s, mlp = cfg.study_task, range(cfg.seeds), VARIANTS[PREFIX_MLP_LABEL]
    return {
        "main": [tune_config(cfg, m, task, i) for m in METHODS for task in cfg.tasks for i in s],
        "low_data": [tune_config(cfg, VARIANTS[v], task, i, n_train=n) for task in cfg.low_data_tasks
                     for v in (PREFIX_MLP_LABEL, FULL_LABEL) for n in cfg.low_data for i in s],
        "prompt_len": [tune_config(cfg, mlp, t, i, prompt_len=p) for p in cfg.prompt_lens for i in s],
        "depth": [tune_config(cfg, mlp, t, i, prefix_layers=layers) for layers in ("bottom", "top", "all") for i in s],
        "init": [tune_config(cfg, m, cfg.init_task, i, n_train=cfg.init_n_train, init=init)
                 for m in INIT_STUDY for init in SOFT_INITS for i in s],
        "shift": [replace(c, steps=c.steps * cfg.shift_factor, eval_every=cfg.eval_every * cfg.shift_factor)
                  for m in METHODS for i in s for c in [tune_config(cfg, m, NEW_SKILL_TASKS[0], i)]],
    }


def load_results(path=None) -> dict:
    """figures/compare.json, written by `minprefix compare` (lesson 6 reads its multi-seed numbers)."""
    return load_committed("compare", path)


def untrained_rows(base, tok, cfg: CompareConfig, store: ResultStore, progress=True) -> dict:
    """Bare base, copy baseline, best hand-written template (chosen on dev), discrete search; per task."""
    rows, on_base = {}, "" if fingerprint(base) == LEGACY_BASE else f" base={fingerprint(base)}"
    for task in tqdm(cfg.tasks + NEW_SKILL_TASKS, desc="untrained rows", disable=not progress):
        dev, test = examples(task, "dev", cfg.n_dev), examples(task, "test", cfg.n_test)
        key = (f"untrained {task}{on_base} dev={len(dev)} test={len(test)} search_steps={cfg.search_steps} "
               f"seeds={cfg.seeds}")
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
    studies = study_configs(cfg)
    everything = [c for cs in studies.values() for c in cs]
    by_key = dict(zip(map(cell_key, everything), run_grid(base, tok, everything, **grid)))
    data = {"config": asdict(cfg), "base": base.config.__dict__, "fingerprint": fingerprint(base),
            "n_base": base.num_params(),
            "lrs": {m: METHODS[m].lr for m in METHODS}, "steps": {m: cfg.steps or METHODS[m].steps for m in METHODS},
            "untrained": untrained,
            "studies": {name: [by_key[cell_key(c)] for c in cs] for name, cs in studies.items()}}
    soft = VARIANTS[SOFT_LABEL]
    data["ensemble"] = {task: ensemble(base, tok, [tune_config(cfg, soft, task, i) for i in range(cfg.seeds)],
                                       runs / "artifacts", cfg.n_test) for task in cfg.headline_tasks}
    data["seconds"] = time.time() - t0
    return data
