"""Lesson 5's grids (minprefix/lab/reparam.py): every question's cells run, at the bracketed learning rates."""

import pytest
from helpers import TOK, tiny_base

from minprefix import load_base
from minprefix.lab.figures import close, plot_reparam
from minprefix.lab.grid import run_grid
from minprefix.lab.reparam import QUICK, ReparamConfig, cells, load_results, reparam_markdown, run_reparam, stored_runs
from minprefix.train import TuneConfig


def test_the_cells_of_each_question_differ_only_in_what_it_asks():
    cfg = ReparamConfig(**QUICK)
    studies = cells(cfg, {"prefix": 0.1, "prefix-mlp": 0.003}, d_model=128)
    assert [c.reparam_dim for c in studies["k"]["k = 8"]] == [8, 8] and studies["k"]["k = 8"][0].hidden is None
    assert studies["k"]["k = 128"] == studies["h"]["h = 512"] == studies["form"]["shared"] == studies["init"]["MLP"]
    assert studies["init"]["direct, random init"][0].init is None  # the default: the stability grid's own cells
    assert {c.mlp_form for c in studies["form"]["separate"]} == {"separate"}
    init = studies["init"]
    assert init["direct, text init"][0].init == "text" and init["direct, text init"][0].init_text
    assert {c.lr for c in init["direct, vocab init"]} == {0.1} and {c.lr for c in init["MLP"]} == {0.003}
    assert [c.seed for c in studies["h"]["h = 16"]] == [0, 1]


def test_a_quick_run_answers_every_question(tmp_path):
    cfg = ReparamConfig(**{**QUICK, "workers": 1, "ks": (4, 16), "hiddens": (8,)})
    data = run_reparam(tiny_base(), TOK, cfg, tmp_path / "r.json", progress=False)
    assert set(data["lrs"]) == {"prefix", "prefix-mlp"} and data["d_model"] == 16
    assert set(data["k"]) == {"k = 4", "k = 16"} and data["k"]["k = 4"]["n"] == 2
    assert data["form"]["separate"]["trainable"] > data["form"]["shared"]["trainable"]
    text = reparam_markdown(data)
    assert "1. stability" in text and "direct, vocab init" in text
    close(plot_reparam(data, tmp_path / "reparam.png"))
    assert (tmp_path / "reparam.png").stat().st_size > 10_000


@pytest.mark.slow
def test_a_stored_cell_reruns_inside_its_stored_seed_range():
    """Lesson 5's live runs are stored cells rerun: one of them, here, lands in the stored grid's seed range."""
    data = load_results()
    lr = data["lrs"]["prefix"]
    runs = stored_runs(data, "prefix", lr)
    base, tok = load_base()
    again = run_grid(base, tok, [TuneConfig(**runs[0]["config"])], progress=False, n_test=data["config"]["n_test"],
                     workers=1)[0]
    seeds = [r["dev"] for r in runs]
    # On another CPU the same cell rounds differently (other vector kernels) and 1,200 steps carry that
    # into the score like a small perturbation: a margin of two dev examples (seen here: 0.885 against a
    # stored 0.89 on a machine where the stored grid was not run).
    margin = 2 / data["config"]["n_dev"]
    assert min(seeds) - margin <= again["dev"] <= max(seeds) + margin, (again["dev"], seeds)
