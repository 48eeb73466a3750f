"""The learning-rate sweep (minprefix/lab/sweep.py): it extends a range until the best is inside it."""

import json
import math
from pathlib import Path

import pytest
from helpers import TOK, tiny_base

import minprefix.lab.sweep as sweep
from minprefix.lab.grid import converged
from minprefix.lab.sweep import LR_GRID, QUICK, SweepConfig, nearest, run_sweep, sweep_markdown
from minprefix.methods import METHODS

FIGURES = Path(__file__).resolve().parents[2] / "figures"


def fake_grid(peak: float):
    """A stand-in for run_grid: dev exact match falls off with the log distance of lr from `peak`."""
    def run(base, tok, configs, **kw):
        out = []
        for c in configs:
            dev = max(0.0, 1 - abs(math.log10(c.lr / peak)) / 3)
            out.append({"config": {"lr": c.lr}, "dev": dev, "test": dev, "diverged": None, "seconds": 1.0,
                        "history": [{"step": 0, "dev_exact_match": 0.0, "dev_loss": 2.0},  # learned by half-way
                                    {"step": c.steps // 2, "dev_exact_match": dev, "dev_loss": 1.0},
                                    {"step": c.steps, "dev_exact_match": dev, "dev_loss": 1.0}]})
        return out
    return run


@pytest.mark.parametrize("peak, best, interior, lrs", [  # prefix's default 0.05: it starts at 0.01, 0.03, 0.1
    (0.3, 0.3, True, [0.01, 0.03, 0.1, 0.3, 1]),
    (0.03, 0.03, True, [0.01, 0.03, 0.1]),
    (1e-4, 1e-4, True, [3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1]),
    (30.0, 30.0, False, [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30]),  # the grid's end: reported as at the edge
])
def test_the_range_grows_until_the_best_is_inside_it(monkeypatch, peak, best, interior, lrs):
    monkeypatch.setattr(sweep, "run_grid", fake_grid(peak))
    data = run_sweep(None, TOK, SweepConfig(methods=("prefix",), seeds=2, tasks=("bare-reverse",)), progress=False)
    row = data["methods"]["prefix"]
    assert [p["lr"] for p in row["points"]] == pytest.approx(lrs)
    assert row["best_lr"] == best and row["interior"] is interior
    assert all(p["n"] == len(p["runs"]) == 2 for p in row["points"])


def test_ties_go_to_the_lower_dev_loss(monkeypatch):
    def run(base, tok, configs, **kw):  # every lr scores 100 %; the loss is lowest at 0.01
        return [{"config": {}, "dev": 1.0, "test": 1.0, "diverged": None, "seconds": 1.0,
                 "history": [{"step": 1, "dev_exact_match": 1.0, "dev_loss": abs(math.log10(c.lr / 0.01))}]}
                for c in configs]
    monkeypatch.setattr(sweep, "run_grid", run)
    assert run_sweep(None, TOK, SweepConfig(methods=("soft",), seeds=1, tasks=("bare-reverse",)),
                     progress=False)["methods"]["soft"]["best_lr"] == 0.01


def test_nearest_is_on_a_log_scale():
    assert LR_GRID[nearest(0.05)] == 0.03 and LR_GRID[nearest(0.06)] == 0.1 and LR_GRID[nearest(1e-3)] == 1e-3


def test_converged_looks_at_the_last_quarter():
    def run(curve):
        return {"history": [{"step": s, "dev_exact_match": v} for s, v in curve]}
    rising = [run([(0, 0.0), (50, 0.5), (75, 0.6), (100, 0.9)])]
    flat = [run([(0, 0.0), (50, 0.5), (75, 0.9), (100, 0.85)])]
    assert converged(rising, 100, 0.01) == {"converged": False, "rise": pytest.approx(0.3)}
    assert converged(flat, 100, 0.01)["converged"] and converged(flat, 100, 0.01)["rise"] == 0


def test_a_real_quick_sweep_runs_and_reports(tmp_path):
    cfg = SweepConfig(**{**QUICK, "methods": ("soft",), "workers": 1})
    data = run_sweep(tiny_base(), TOK, cfg, tmp_path / "r.json", progress=False)
    row = data["methods"]["soft"]
    assert row["best_lr"] in [p["lr"] for p in row["points"]] and len(row["points"]) >= 3
    assert "| soft |" in sweep_markdown(data) and all(len(r["losses"]) == 8 for p in row["points"] for r in p["runs"])


def test_the_methods_table_holds_the_swept_defaults():
    """Every default learning rate is the committed sweep's best, strictly inside its range, at the step count
    where it converged (the methods table's steps), or at the sweep's longest if it never did."""
    data = json.loads((FIGURES / "sweep.json").read_text())  # written by `minprefix sweep`
    assert set(data["methods"]) == set(METHODS)
    for m, row in data["methods"].items():
        lrs = [p["lr"] for p in row["points"]]
        assert METHODS[m].lr == row["best_lr"], f"{m}: default {METHODS[m].lr} but the sweep's best is {row['best_lr']}"
        assert min(lrs) < row["best_lr"] < max(lrs), f"{m}: the best is at an end of {lrs}"
        best = max(row["points"], key=lambda p: (p["dev"], -p["dev_loss"]))
        assert best["lr"] == row["best_lr"] and all(p["n"] >= 3 for p in row["points"])
        assert METHODS[m].steps == row["steps"], f"{m}: default steps {METHODS[m].steps}, the sweep's {row['steps']}"
        assert row["converged"] or row["steps"] * 2 > data["config"]["max_steps"], f"{m} could have run longer"


def test_a_method_not_converged_is_swept_again_at_twice_the_steps(monkeypatch):
    """The fake learns only when given 1600 steps or more: the sweep doubles 400 -> 800 -> 1600 and stops."""
    def run(base, tok, configs, **kw):
        out = []
        for c in configs:
            dev = max(0.0, 1 - abs(math.log10(c.lr / 0.03)) / 3)
            late = dev if c.steps >= 1600 else dev / 2  # short runs are still rising at their end
            out.append({"config": {"lr": c.lr}, "dev": late, "test": late, "diverged": None, "seconds": 1.0,
                        "history": [{"step": s, "dev_loss": 1.0,  # long runs learn by half-way
                                     "dev_exact_match": late * min(1, s / c.steps * (2 if c.steps >= 1600 else 1))}
                                    for s in range(0, c.steps + 1, c.steps // 4)]})
        return out
    monkeypatch.setattr(sweep, "run_grid", run)
    cfg = SweepConfig(methods=("prefix",), seeds=1, tasks=("bare-reverse",), steps=400, eval_every=100,
                      max_steps=3200)
    data = run_sweep(None, TOK, cfg, progress=False)
    row = data["methods"]["prefix"]
    assert [s["steps"] for s in row["shorter"]] == [400, 800] and row["steps"] == 1600
    assert row["best_lr"] == 0.03 and row["interior"] and not any(s["converged"] for s in row["shorter"])
    assert "| prefix | 1600 | **0.03** |" in sweep_markdown(data)
    capped = run_sweep(None, TOK, SweepConfig(**{**cfg.__dict__, "max_steps": 400}), progress=False)
    assert capped["methods"]["prefix"]["steps"] == 400 and not capped["methods"]["prefix"]["converged"]
