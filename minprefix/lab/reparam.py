"""`minprefix reparam`: lesson 5's four questions about Li & Liang's MLP, each answered by a grid.

1. stability: the direct prefix against the MLP, each over learning rates that bracket its own
   best (the sweep's rule, on this one task), `seeds` seeds at every point;
2. the bottleneck: the width k of P' and the hidden width h, at the MLP's best learning rate;
3. why it helps (Le et al. 2025): the shared MLP against separate MLPs for keys and values, and
   against a linear map (no tanh);
4. initialization (Li & Liang §7.3): the direct prefix started at random, from random tokens'
   keys and values, and from the task's instruction.

Every cell is a `run_grid` cell (resumable, one thread per run, every step's loss kept), so the
committed results (figures/reparam.json) are what the lesson reads and what its live cells are
tested against.
"""

import statistics
from dataclasses import asdict, dataclass, replace

from ..config import arg, validate
from ..methods import PREFIX, PREFIX_MLP
from ..prompted import MLP_HIDDEN
from ..scoring import table
from ..world import instruction
from .grid import load_committed, run_grid
from .sweep import SweepConfig, cell_configs, run_sweep


@dataclass
class ReparamConfig:
    task: str = "reverse-upper"
    steps: int = arg(1200, "optimizer steps of every run (1.5 x the sweep's: the direct prefix is slow)", low=4)
    seeds: int = arg(5, "seeds per learning rate in the stability grid (question 1)", low=1, high=100)
    question_seeds: int = arg(3, "seeds per setting in questions 2 to 4", low=1, high=100)
    eval_every: int = arg(100, "steps between dev evaluations", low=1)
    n_dev: int = arg(200, "dev examples (at most)", low=1, high=10_000)
    n_test: int = arg(200, "test examples (at most)", low=1, high=10_000)
    workers: int = arg(2, "processes that run cells at once", low=1, high=64)
    ks: tuple = (8, 32, 128)  # the width k of P'; 128 = d_model of the shipped base
    hiddens: tuple = (16, 64, 512)  # the MLP's hidden width h; 512 is the default
    forms: tuple = ("shared", "separate", "linear")
    inits: tuple = ("random", "vocab", "text")

    def __post_init__(self):
        validate(self)

    def sweep(self, seeds: int | None = None) -> SweepConfig:
        return SweepConfig(steps=self.steps, seeds=seeds or self.seeds, eval_every=self.eval_every, n_dev=self.n_dev,
                           n_test=self.n_test, workers=self.workers, tasks=(self.task,), max_steps=self.steps,
                           methods=(PREFIX.name, PREFIX_MLP.name))


def load_results(path=None) -> dict:
    """The stored grids lesson 5 reads: figures/reparam.json, written by `minprefix reparam` (about 45 minutes)."""
    return load_committed("reparam", path)


def stored_runs(data: dict, method: str, lr: float) -> list[dict]:
    """The stored runs (one per seed) of a method at a learning rate of the stability grid."""
    row = data["stability"]["methods"][method]
    return next(p["runs"] for p in row["points"] if p["lr"] == lr)


QUICK = dict(steps=8, seeds=2, question_seeds=2, eval_every=4, n_dev=20, n_test=20, ks=(8, 128), hiddens=(16, 512),
             task="bare-reverse")


def cells(cfg: ReparamConfig, lrs: dict, d_model: int) -> dict[str, dict[str, list]]:
    """Questions 2-4: setting label -> its TuneConfigs (seeds), at each method's best learning rate.

    A setting that is a method's default is given as the default (None), so that its cells are the
    stability grid's own and run once.
    """
    s = cfg.sweep(cfg.question_seeds)
    mlp, direct = (lambda **f: cell_configs(s, PREFIX_MLP.name, lrs[PREFIX_MLP.name], **f),
                   lambda **f: cell_configs(s, PREFIX.name, lrs[PREFIX.name], **f))
    default_init = PREFIX.model.default_init
    return {
        "k": {f"k = {k}": mlp(reparam_dim=None if k == d_model else k) for k in cfg.ks},
        "h": {f"h = {h}": mlp(hidden=None if h == MLP_HIDDEN else h) for h in cfg.hiddens},
        "form": {form: mlp(mlp_form=form) for form in cfg.forms},
        "init": {**{f"direct, {i} init": direct(init=None if i == default_init else i,
                                                init_text=instruction(cfg.task) if i == "text" else None)
                    for i in cfg.inits}, "MLP": mlp()},
        "long": {f"direct, {n} steps": [replace(c, steps=n, eval_every=cfg.eval_every) for c in direct()]
                 for n in (cfg.steps, 2 * cfg.steps)},  # question 1 again: slow, or unstable?
    }


def summary(results: list[dict]) -> dict:
    """Quality and stability of one setting over its seeds."""
    dev = [r["dev"] for r in results]
    return {"mean": statistics.fmean(dev), "std": statistics.stdev(dev) if len(dev) > 1 else 0.0,
            "worst": min(dev), "best": max(dev), "test": statistics.fmean(r["test"] for r in results),
            "diverged": sum(r["diverged"] is not None for r in results), "n": len(results),
            "seeds": dev, "trainable": results[0].get("trainable")}


def run_reparam(base, tok, cfg: ReparamConfig, path=None, device="cpu", progress=True) -> dict:
    """Run (or resume) the four studies; returns the data lesson 5 reads."""
    stability = run_sweep(base, tok, cfg.sweep(), path, device, progress)
    lrs = {m: row["best_lr"] for m, row in stability["methods"].items()}
    studies = cells(cfg, lrs, base.config.d_model)
    flat = [c for study in studies.values() for cs in study.values() for c in cs]
    by_key = {id(c): r for c, r in zip(flat, run_grid(base, tok, flat, path, device, progress, cfg.n_test,
                                                        cfg.workers))}
    data = {"config": asdict(cfg), "d_model": base.config.d_model, "lrs": lrs, "stability": stability}
    for name, study in studies.items():
        data[name] = {label: {**summary([by_key[id(c)] for c in cs]), "runs": [by_key[id(c)] for c in cs]}
                      for label, cs in study.items()}
    return data


QUESTIONS = {"long": "1, again: the direct prefix at its best learning rate, given twice the steps",
             "k": "2. the bottleneck: the width k of P' (h = 512)",
             "h": "2. the bottleneck: the hidden width h (k = d_model)",
             "form": "3. why the MLP helps: one shared MLP, separate MLPs for keys and values, no tanh",
             "init": "4. initialization: the direct prefix from three starts, and the MLP"}


def setting_rows(study: dict) -> list[list]:
    return [[label, f"{100 * s['mean']:.1f}", f"{100 * s['std']:.1f}", f"{100 * s['worst']:.1f}",
             f"{100 * s['best']:.1f}", f"{100 * s['test']:.1f}", f"{s['diverged']}/{s['n']}", f"{s['trainable']:,}"]
            for label, s in study.items()]


def reparam_markdown(data: dict, sections=("stability",) + tuple(QUESTIONS)) -> str:
    """The grids as markdown tables (sections: "stability" and any of QUESTIONS, in that order)."""
    cfg = data["config"]
    head = ["setting", "dev mean %", "std", "worst seed %", "best seed %", "test mean %", "diverged", "trains"]
    out = []
    if "stability" in sections:
        out += [f"Lesson 5's grids: {cfg['task']}, {cfg['steps']} steps, {cfg['seeds']} seeds per learning rate "
                f"(question 1) and {cfg['question_seeds']} per setting (questions 2-4), best dev exact match of each "
                f"run (learning rates: direct {data['lrs'][PREFIX.name]:g}, MLP "
                f"{data['lrs'][PREFIX_MLP.name]:g}, each the best of its own bracketing sweep).", ""]
        stab = []
        for m, row in data["stability"]["methods"].items():
            for p in row["points"]:
                stab.append([f"{m}, lr {p['lr']:g}" + (" (best)" if p["lr"] == row["best_lr"] else ""),
                             *setting_rows({"": summary(p["runs"])})[0][1:]])
        out += ["1. stability: every learning rate of each method's sweep", "", table(head, stab), ""]
    for name, title in QUESTIONS.items():
        if name in sections:
            out += [title, "", table(head, setting_rows(data[name])), ""]
    return "\n".join(out)
