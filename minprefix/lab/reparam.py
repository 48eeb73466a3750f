"""`minprefix reparam`: where Li & Liang's MLP reparameterization matters, measured on every task.

Three grids, every cell `seeds` seeds, each method at its own learning rate and its own step budget
(the methods table's: the best of its bracketing sweep, and the steps where that best converged; no
early stop, and the direct prefix gets twice the MLP's steps, so its best dev loss is not handicapped):

1. the regime map: the direct key/value prefix against the MLP prefix on every downstream task
   of the tiny world, at each training-set size of `n_trains`;
2. learning-rate sensitivity: both methods at `multiples` of their own rate, on the map's cells
   where the two differ most and on one where they do not (chosen by `chosen_cells`, a rule
   over the map, so a rerun picks the same cells from the same results);
3. the questions of lesson 5, on the cell where the methods differ most: the widths k of P' and h
   of the MLP, the MLP's forms (what each removes: `prompted.MLPPrefix`), and the direct
   prefix's starts.

Every cell is a `run_grid` cell (resumable, one thread per run), so the committed results
(figures/reparam.json) are what lesson 5 reads and what its live cells are tested against.
"""

import statistics
from dataclasses import asdict, dataclass

import torch

from ..config import arg, validate
from ..methods import METHODS, PREFIX, PREFIX_MLP
from ..prompted import MLP_FORMS, MLP_HIDDEN
from ..scoring import table
from ..train import Run, optimize
from ..tune import TuneConfig, build_method
from ..world import DOWNSTREAM_TASKS, TUNE_TRAIN_SIZE, answer_batch, examples, instruction
from .grid import TOLERANCE, converged, load_committed, run_grid

PAIR = (PREFIX.name, PREFIX_MLP.name)  # the direct prefix and Li & Liang's, compared everywhere
LOW = 0.10  # a run whose test score ends below this has failed (the "runs below 10 %" column)


@dataclass
class ReparamConfig:
    steps: int = arg(0, "optimizer steps of every run, no early stop (0: each method's own converged budget from "
                        "the methods table, 1600 for the direct prefix and 800 for the MLP's)", low=0)
    seeds: int = arg(5, "seeds per cell of the map", low=1, high=100)
    probe_seeds: int = arg(3, "seeds per cell of the sensitivity grid and the questions (the map's first ones)",
                           low=1, high=100)
    differ: int = arg(1, "map cells where the methods differ most that the sensitivity grid runs on", low=1, high=100)
    eval_every: int = arg(100, "steps between dev evaluations", low=1)
    n_dev: int = arg(200, "dev examples (at most)", low=1, high=10_000)
    n_test: int = arg(200, "test examples (at most)", low=1, high=10_000)
    workers: int = arg(2, "processes that run cells at once", low=1, high=64)
    tasks: tuple = DOWNSTREAM_TASKS  # every downstream task: bare, composed, new skill
    n_trains: tuple = (32, TUNE_TRAIN_SIZE)  # training-set sizes
    multiples: tuple = (0.1, 0.3, 1.0, 3.0, 10.0)  # of each method's own learning rate
    ks: tuple = (1, 2, 16, 128)  # the width k of P'; 128 = d_model of the shipped base (the default)
    hiddens: tuple = (2, 16, 512)  # the MLP's hidden width h; 512 is the default
    forms: tuple = MLP_FORMS
    inits: tuple = ("random", "normal", "vocab", "text")  # the direct prefix's starts

    def __post_init__(self):
        validate(self)


QUICK = dict(steps=8, seeds=2, probe_seeds=2, eval_every=4, n_dev=20, n_test=20,
             tasks=("bare-reverse", "reverse-upper"), n_trains=(16,), multiples=(0.1, 1.0), ks=(8, 128),
             hiddens=(16, 512))


def load_results(path=None) -> dict:
    """The stored grids lesson 5 reads: figures/reparam.json, written by `minprefix reparam`."""
    return load_committed("reparam", path)


def lrs_of(cfg: ReparamConfig) -> dict[str, float]:
    return {m: METHODS[m].lr for m in PAIR}


def run_config(cfg: ReparamConfig, method: str, task: str, n_train: int, seed: int, multiple: float = 1.0,
               **fields) -> TuneConfig:
    """One run: `method` at `multiple` times its own learning rate."""
    if fields.get("init") == "text":
        fields["init_text"] = instruction(task)
    lr = round(METHODS[method].lr * multiple, 10)  # rounded: x1 is the map's own cell, x3 a clean 0.003
    steps = cfg.steps or METHODS[method].steps
    return TuneConfig(method=method, task=task, n_train=n_train, seed=seed, lr=lr, steps=steps,
                      eval_every=cfg.eval_every, n_dev=cfg.n_dev, **fields)


def seeds_of(cfg, *args, seeds: int | None = None, **fields) -> list[TuneConfig]:
    """A cell: one config per seed, seeds 0 .. seeds-1 (default: the probes')."""
    return [run_config(cfg, *args, seed=s, **fields) for s in range(seeds or cfg.probe_seeds)]


def map_cells(cfg: ReparamConfig) -> dict[tuple, list[TuneConfig]]:
    """(method, task, n_train) -> its seeds' configs."""
    return {(m, t, n): seeds_of(cfg, m, t, n, seeds=cfg.seeds) for m in PAIR for t in cfg.tasks for n in cfg.n_trains}


# ---------------------------------------------------------------------------- what a cell's runs say


def reached(result: dict, level: float) -> int | None:
    """The first step at which a run's dev exact match reached `level` (None: never)."""
    return next((h["step"] for h in result["history"] if h["dev_exact_match"] >= level - 1e-9), None)


def summary(results: list[dict]) -> dict:
    """Quality, stability and speed of one cell over its seeds (test scores at each run's best dev weights)."""
    test = [r["test"] for r in results]
    speed = {}
    for level in (0.9, 0.99):
        steps = [reached(r, level) for r in results]
        hit = [s for s in steps if s is not None]
        speed[f"steps_{round(100 * level)}"] = statistics.median(hit) if hit else None
        speed[f"reached_{round(100 * level)}"] = len(hit)
    losses = [min(h["dev_loss"] for h in r["history"]) for r in results if r["history"]]
    return {"mean": statistics.fmean(test), "worst": min(test), "best": max(test),
            "std": statistics.stdev(test) if len(test) > 1 else 0.0, "seeds": test,
            "dev": statistics.fmean(r["dev"] for r in results), "below": sum(t < LOW for t in test),
            "best_dev_loss": statistics.fmean(losses) if losses else None,
            "diverged": sum(r["diverged"] is not None for r in results), "n": len(results),
            "converged": converged(results, results[0]["config"]["steps"], TOLERANCE)["converged"],
            "trainable": results[0].get("trainable"), **speed}


def gap(cells: dict, task: str, n: int) -> float:
    """How far apart the two methods are on one map cell: the larger of the gaps in mean and in worst seed."""
    a, b = (cells[(m, task, n)] for m in PAIR)
    return max(abs(a["mean"] - b["mean"]), abs(a["worst"] - b["worst"]))


def chosen_cells(cfg: ReparamConfig, cells: dict) -> dict[str, list[tuple[str, int]]]:
    """Where the sensitivity grid and the questions run: the `differ` (task, n_train) map cells where the
    methods differ most, and the one where they differ least among those both learn (both means at
    least 50 %; one below the ceiling of 99 % if there is such a cell)."""
    keys = [(t, n) for t in cfg.tasks for n in cfg.n_trains]
    differ = sorted(keys, key=lambda k: -gap(cells, *k))[:cfg.differ]
    learnt = [k for k in keys if k not in differ and min(cells[(m, *k)]["mean"] for m in PAIR) >= 0.5]
    below = [k for k in learnt if min(cells[(m, *k)]["mean"] for m in PAIR) < 0.99] or learnt
    same = sorted(below, key=lambda k: gap(cells, *k))[:1]
    return {"differ": differ, "same": same}


def question_cells(cfg: ReparamConfig, task: str, n: int, d_model: int) -> dict[str, dict[str, list]]:
    """Lesson 5's questions on one map cell: setting label -> its seeds' configs (a default is given as
    None, so its cells are the map's own and run once)."""
    mlp, direct = (lambda **f: seeds_of(cfg, PREFIX_MLP.name, task, n, **f),
                   lambda **f: seeds_of(cfg, PREFIX.name, task, n, **f))
    default_init = PREFIX.model.default_init
    return {
        "k": {f"k = {k}": mlp(reparam_dim=None if k == d_model else k) for k in cfg.ks},
        "h": {f"h = {h}": mlp(hidden=None if h == MLP_HIDDEN else h) for h in cfg.hiddens},
        "form": {form: mlp(mlp_form=form) for form in cfg.forms},
        "init": {**{f"direct, {i} init": direct(init=None if i == default_init else i) for i in cfg.inits},
                 "MLP": mlp()},
    }


def sensitivity_cells(cfg: ReparamConfig, task: str, n: int) -> dict[str, dict[float, list]]:
    return {m: {x: seeds_of(cfg, m, task, n, multiple=x) for x in cfg.multiples} for m in PAIR}


def configs_in(obj) -> list[TuneConfig]:
    """Every TuneConfig inside nested dicts and lists, in order."""
    if isinstance(obj, TuneConfig):
        return [obj]
    return [c for v in (obj.values() if isinstance(obj, dict) else obj) for c in configs_in(v)]


def run_reparam(base, tok, cfg: ReparamConfig, path=None, device="cpu", progress=True) -> dict:
    """Run (or resume) the map, then the sensitivity grid and the questions on the cells it picks."""
    grid = dict(path=path, device=device, progress=progress, n_test=cfg.n_test, workers=cfg.workers)
    plan = map_cells(cfg)
    results = run_grid(base, tok, configs_in(plan), **grid)
    runs = dict(zip(plan, [results[i:i + cfg.seeds] for i in range(0, len(results), cfg.seeds)]))
    cells = {key: summary(rs) for key, rs in runs.items()}
    chosen = chosen_cells(cfg, cells)
    first = chosen["differ"][0]
    later = {"sensitivity": {f"{t}|{n}": sensitivity_cells(cfg, t, n) for t, n in chosen["differ"] + chosen["same"]},
             "questions": question_cells(cfg, *first, base.config.d_model)}
    flat = configs_in(later)
    done = dict(zip(map(id, flat), run_grid(base, tok, flat, **grid)))
    summarize = lambda cs: {**summary([done[id(c)] for c in cs]), "runs": [done[id(c)] for c in cs]}  # noqa: E731
    return {"config": asdict(cfg), "d_model": base.config.d_model, "lrs": lrs_of(cfg),
            "map": {f"{m}|{t}|{n}": {**cells[(m, t, n)], "runs": runs[(m, t, n)]} for m, t, n in plan},
            "chosen": {k: [f"{t}|{n}" for t, n in v] for k, v in chosen.items()},
            "sensitivity": {cell: {m: {str(x): summarize(cs) for x, cs in by_x.items()} for m, by_x in study.items()}
                            for cell, study in later["sensitivity"].items()},
            "question_cell": f"{first[0]}|{first[1]}",
            **{q: {label: summarize(cs) for label, cs in study.items()} for q, study in later["questions"].items()}}


def row_steps(base, tok, cfg: TuneConfig, device="cpu", progress=True) -> dict[str, list[float]]:
    """Train like `tune` (the same loop, schedule and batches; no dev scoring) and record, after every step,
    how far the step moved each row of P relative to its length (the median over rows: the effective step
    size), and the mean cosine similarity between the steps of two different rows (how much one step moves
    the rows together). A direct prefix's rows are separate parameters; an MLP's share P', W1 and W2."""
    model = build_method(base.to(device), tok, cfg).to(device)
    train = examples(cfg.task, "train", cfg.n_train, seed=cfg.seed)
    last, out = [model.rows().detach().clone()], {"move": [], "alike": []}

    def on_step(step, loss):
        rows = model.rows().detach().clone()  # a copy: a direct prefix's rows are its parameter, updated in place
        step_ = rows - last[0]
        last[0] = rows
        out["move"].append((step_.norm(dim=1) / rows.norm(dim=1).clamp(min=1e-12)).median().item())
        unit = torch.nn.functional.normalize(step_, dim=1)
        P = len(rows)
        out["alike"].append(((unit @ unit.T).sum().item() - P) / max(1, P * (P - 1)))  # off-diagonal mean

    batch = lambda rng: answer_batch(tok, rng.choices(train, k=cfg.batch_size), device)  # noqa: E731
    optimize(model, cfg, Run(cfg.peak_lr, batch, cfg.steps, device=device, progress=progress, on_step=on_step,
                             desc=f"{cfg.method}, rows' steps"))
    return out


# ---------------------------------------------------------------------------- tables


def percent(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def steps_text(s: dict, level: int) -> str:
    hit = s[f"reached_{level}"]
    return "never" if not hit else f"{s[f'steps_{level}']:.0f} ({hit}/{s['n']})"


def cell_row(s: dict) -> list[str]:
    """mean, worst, runs below 10 %, steps to 90 / 99 % (median of the seeds that got there), best dev loss,
    diverged, converged."""
    return [percent(s["mean"]), percent(s["worst"]), f"{s['below']}/{s['n']}", steps_text(s, 90), steps_text(s, 99),
            "-" if s["best_dev_loss"] is None else f"{s['best_dev_loss']:.3f}", f"{s['diverged']}/{s['n']}",
            "yes" if s["converged"] else "NO"]


CELL_HEAD = ["test mean %", "worst seed %", "below 10 %", "steps to 90 %", "steps to 99 %", "best dev loss",
             "diverged", "converged"]
QUESTIONS = {"k": "the width k of P' (h = 512)", "h": "the hidden width h (k = d_model)",
             "form": "the MLP's forms: what each removes", "init": "the direct prefix's starts, and the MLP"}


def budgets(data: dict) -> dict[str, int]:
    """Each method's steps per run in the map (its own budget unless --steps set one for both)."""
    return {m: next(s for k, s in data["map"].items() if k.startswith(f"{m}|"))["runs"][0]["config"]["steps"]
            for m in PAIR}


def map_markdown(data: dict) -> str:
    cfg, lrs, steps = data["config"], data["lrs"], budgets(data)
    rows = [[t, str(n), m, *cell_row(data["map"][f"{m}|{t}|{n}"])]
            for t in cfg["tasks"] for n in cfg["n_trains"] for m in PAIR]
    return "\n".join([
        "The regime map: " + ", ".join(f"{m} at learning rate {lrs[m]:g} for {steps[m]:,} steps" for m in PAIR)
        + f" (each the best of its sweep, and where it converged), {cfg['seeds']} seeds per cell, dev every "
        f"{cfg['eval_every']} steps; test exact match at each run's best dev weights.", "",
        table(["task", "n_train", "method", *CELL_HEAD], rows)])


def sensitivity_markdown(data: dict) -> str:
    rows = [[cell.replace("|", ", n="), m, f"x{x} ({float(x) * data['lrs'][m]:g})", *cell_row(s)]
            for cell, study in data["sensitivity"].items() for m, by_x in study.items() for x, s in by_x.items()]
    chosen = data["chosen"]
    return "\n".join([
        f"Learning-rate sensitivity: both methods at multiples of their own rate, on the map's cells where they "
        f"differ most ({'; '.join(chosen['differ'])}) and where they differ least ({'; '.join(chosen['same'])}).", "",
        table(["cell", "method", "lr", *CELL_HEAD], rows)])


def questions_markdown(data: dict, questions=tuple(QUESTIONS)) -> str:
    out = [f"Lesson 5's questions on {data['question_cell'].replace('|', ', n_train=')} (the map's cell where the "
           f"methods differ most), {data['config']['probe_seeds']} seeds per setting.", ""]
    for q in questions:
        rows = [[label, f"{s['trainable']:,}", *cell_row(s)] for label, s in data[q].items()]
        out += [f"{QUESTIONS[q]}", "", table(["setting", "trains", *CELL_HEAD], rows), ""]
    return "\n".join(out)


def reparam_markdown(data: dict) -> str:
    """The three grids as markdown tables."""
    return "\n\n".join([map_markdown(data), sensitivity_markdown(data), questions_markdown(data)])
