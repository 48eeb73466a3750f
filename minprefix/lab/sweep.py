"""`minprefix sweep`: each method's learning rate, swept until its best is inside the range.

Learning rates come from one fixed log grid (LR_GRID: 1, 3, 10, 30, ... x 1e-4), so a cell's
config, and so its cached result, does not depend on what the defaults are today. A method starts
at the grid point nearest its default and the two around it; while its best point is at an end of
what was run, the next point beyond that end is added (rounds, so every method's new cells run
together). A point's score is the mean best dev exact match over the tasks and seeds (a diverged
run counts 0); ties go to the lower mean dev loss.

Converged (`grid.converged`): a run keeps the best dev score it has seen, so the mean of that
best-so-far curve over seeds and tasks can only rise; a method counts as converged at its best
learning rate when the curve rose by at most `tolerance` over the last quarter of the steps. A
method that has not is swept again at twice the steps (up to `max_steps`), so its default is
chosen where it has learned.
"""

import math
import statistics
from dataclasses import asdict, dataclass

from ..config import arg, validate
from ..methods import METHODS
from ..scoring import table
from ..tune import TuneConfig
from .grid import EVAL_EVERY, GRID_STEPS, TOLERANCE, best_so_far, converged, run_grid

LR_GRID = tuple(round(m * 10.0**e, 10) for e in range(-5, 2) for m in (1, 3))  # 1e-5, 3e-5, ..., 10, 30


@dataclass
class SweepConfig:
    steps: int = arg(GRID_STEPS, "optimizer steps of every run", low=4)
    seeds: int = arg(3, "seeds per learning rate", low=1, high=100)
    eval_every: int = arg(EVAL_EVERY, "steps between dev evaluations", low=1)
    n_dev: int = arg(200, "dev examples per task (at most)", low=1, high=10_000)
    n_test: int = arg(200, "test examples per task (at most)", low=1, high=10_000)
    tolerance: float = arg(TOLERANCE, "largest rise of the best-so-far dev score over the last quarter, if converged",
                           low=0.0, high=1.0)
    max_steps: int = arg(1600, "a method not converged at its best is swept again at twice the steps, up to this",
                         low=1)
    workers: int = arg(2, "processes that run cells at once", low=1, high=64)
    tasks: tuple = ("reverse-upper",)  # a composed task (lesson 5's): 95 runs of 800 steps take about 30 minutes
    methods: tuple = tuple(METHODS)

    def __post_init__(self):
        validate(self)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")


QUICK = dict(steps=8, max_steps=16, seeds=1, eval_every=4, n_dev=20, n_test=20, tasks=("bare-reverse",))


def nearest(lr: float) -> int:
    """Index of the grid point nearest lr (on a log scale)."""
    return min(range(len(LR_GRID)), key=lambda i: abs(math.log(LR_GRID[i] / lr)))


def cell_configs(cfg: SweepConfig, method: str, lr: float, steps: int | None = None, **fields) -> list[TuneConfig]:
    return [TuneConfig(method=method, task=t, lr=lr, seed=s, steps=steps or cfg.steps, eval_every=cfg.eval_every,
                       n_dev=cfg.n_dev, **fields) for t in cfg.tasks for s in range(cfg.seeds)]


def point_score(results: list[dict]) -> tuple:
    """How points are ranked: mean best dev exact match, then the lower mean dev loss."""
    losses = [min(h["dev_loss"] for h in r["history"]) if r["history"] else float("inf") for r in results]
    return statistics.fmean(r["dev"] for r in results), -statistics.fmean(losses)


def around(i: int) -> list[int]:
    """Grid index i and its neighbours."""
    return [j for j in (i - 1, i, i + 1) if 0 <= j < len(LR_GRID)]


def best_point(points: dict[int, list]) -> int:
    return max(sorted(points), key=lambda i: point_score(points[i]))


def next_point(points: dict[int, list]) -> int | None:
    """The grid index to add to a method's points (grid index -> runs); None: the best is interior."""
    run, best = sorted(points), best_point(points)
    if best == run[0] and best > 0:
        return best - 1
    if best == run[-1] and best < len(LR_GRID) - 1:
        return best + 1
    return None


def pick_learning_rate(dev_by_lr: dict[float, list[float | None]]) -> float:
    """The rule run_sweep applies, on plain numbers (exercise 6.2): the learning rate of the best mean dev
    score over seeds (None, a diverged run, counts 0; a tie goes to the smaller rate), or a ValueError
    saying which way to widen when that best is the smallest or the largest rate tried."""
    lrs = sorted(dev_by_lr)
    if not lrs:
        raise ValueError("no learning rates: sweep at least three")
    mean = {lr: statistics.fmean(0.0 if d is None else d for d in dev_by_lr[lr]) for lr in lrs}
    best = max(lrs, key=mean.get)
    if best in (lrs[0], lrs[-1]):
        end, side = ("smallest", "below") if best == lrs[0] else ("largest", "above")
        raise ValueError(f"the best learning rate, {best:g}, is the {end} tried: widen {side} it")
    return best


def run_sweep(base, tok, cfg: SweepConfig, path=None, device="cpu", progress=True, **fields) -> dict:
    """Bracket every method's best learning rate, at a step count where it converged (fields: more TuneConfig fields).

    A method whose best point has not converged is bracketed again, from its best and the two
    around it, at twice the steps, while that stays within cfg.max_steps.
    """
    grid = dict(path=path, device=device, progress=progress, n_test=cfg.n_test, workers=cfg.workers)
    steps = {m: cfg.steps for m in cfg.methods}
    todo = {m: around(nearest(METHODS[m].lr)) for m in cfg.methods}
    results = {}  # (method, steps) -> {grid index: its runs}
    while todo:
        cells = [(m, steps[m], i) for m, idx in todo.items() for i in idx]
        configs = [cell_configs(cfg, m, LR_GRID[i], n, **fields) for m, n, i in cells]
        flat = run_grid(base, tok, [c for cs in configs for c in cs], **grid)
        n_runs = len(cfg.tasks) * cfg.seeds
        for j, (m, n, i) in enumerate(cells):
            results.setdefault((m, n), {})[i] = flat[j * n_runs:(j + 1) * n_runs]
        todo = {}
        for m in cfg.methods:
            points = results[(m, steps[m])]
            nxt, best = next_point(points), best_point(points)
            if nxt is not None:
                todo[m] = [nxt]
            elif not converged(points[best], steps[m], cfg.tolerance)["converged"] and 2 * steps[m] <= cfg.max_steps:
                steps[m] *= 2
                todo[m] = around(best)
    rows = {m: [method_row(cfg, m, n, results[(m, n)]) for (mm, n) in sorted(results) if mm == m]
            for m in cfg.methods}
    return {"config": asdict(cfg), "fields": fields,
            "methods": {m: {**stages[-1], "shorter": stages[:-1]} for m, stages in rows.items()}}


def method_row(cfg: SweepConfig, method: str, steps: int, at: dict[int, list]) -> dict:
    """One method at one step count: its points, the best, whether it is interior and converged."""
    run, best = sorted(at), best_point(at)
    points = []
    for i in run:
        rs = at[i]
        points.append({"lr": LR_GRID[i], "dev": point_score(rs)[0], "dev_loss": -point_score(rs)[1],
                       "test": statistics.fmean(r["test"] for r in rs), "worst": min(r["dev"] for r in rs),
                       "diverged": sum(r["diverged"] is not None for r in rs), "n": len(rs),
                       "seconds": sum(r["seconds"] for r in rs), "runs": rs})
    return {"steps": steps, "best_lr": LR_GRID[best], "interior": run[0] < best < run[-1],
            "default_lr": METHODS[method].lr,  # the default when this sweep ran (it starts around it)
            "points": points, "curve": best_so_far(at[best]), **converged(at[best], steps, cfg.tolerance)}


def sweep_markdown(data: dict) -> str:
    """The sweep as a table: a row per method, step count and learning rate; the chosen one in bold."""
    cfg = data["config"]
    lines = [f"Learning-rate sweep: {cfg['steps']} steps (twice that, up to {cfg.get('max_steps', cfg['steps'])}, for "
             f"a method not converged at its best), {cfg['seeds']} seeds, tasks {', '.join(cfg['tasks'])} (dev exact "
             "match: best over the run, mean over tasks and seeds; a diverged run counts 0). The default is the "
             "best at the method's last step count.", ""]
    rows = []
    for m, final in data["methods"].items():
        for row in final.get("shorter", []) + [final]:
            for p in row["points"]:
                best, chosen = p["lr"] == row["best_lr"], row is final and p["lr"] == row["best_lr"]
                mark = (lambda s: f"**{s}**") if chosen else str
                rows.append([m, row.get("steps", cfg["steps"]), mark(f"{p['lr']:g}"), f"{100 * p['dev']:.1f}",
                             f"{100 * p['worst']:.1f}", f"{100 * p['test']:.1f}", f"{p['diverged']}/{p['n']}",
                             ("interior" if row["interior"] else "AT THE EDGE") if best else "",
                             (f"{'yes' if row['converged'] else 'NO'} ({100 * row['rise']:+.1f})" if best else "")])
    lines.append(table(["method", "steps", "lr", "dev mean %", "worst seed %", "test mean %", "diverged",
                        "best is", "converged (rise, last quarter)"], rows))
    return "\n".join(lines) + "\n"
