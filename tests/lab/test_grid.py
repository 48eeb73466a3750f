"""The grid runner (minprefix/lab/grid.py): resuming, parallel workers, a diverged run, a corrupt results file."""

import json
from dataclasses import asdict

import pytest
from helpers import TOK, quick, tiny_base

import minprefix.lab.grid as grid
from minprefix.lab.grid import ResultStore, run_grid
from minprefix.methods import METHODS
from minprefix.tune import TuneConfig


def test_grid_resumes_without_recomputing_a_finished_cell(tmp_path, monkeypatch):
    configs = [quick("soft", seed=s, steps=4) for s in (0, 1)] + [quick("prefix", steps=4)]
    path = tmp_path / "grid.json"
    first = grid.run_grid(tiny_base(), TOK, configs[:2], path, progress=False, n_test=16, workers=1)
    calls = []
    real_tune = grid.tune
    monkeypatch.setattr(grid, "tune", lambda *a, **k: calls.append(a[2]) or real_tune(*a, **k))
    again = grid.run_grid(tiny_base(), TOK, configs, path, progress=False, n_test=16, workers=1)
    assert calls == [configs[2]]  # only the new cell ran
    assert again[:2] == first and again[2]["config"]["method"] == "prefix"
    rows = grid.summarize(again, by=("method",))
    soft = next(r for r in rows if r["method"] == "soft")
    assert soft["n"] == 2 and soft["mean"] == (first[0]["dev"] + first[1]["dev"]) / 2


def test_grid_records_a_diverged_run_instead_of_stopping():
    results = grid.run_grid(tiny_base(), TOK, [quick("soft", lr=1e30, steps=3)], progress=False, n_test=8, workers=1)
    assert results[0]["diverged"] and "loss became" in results[0]["diverged"] and results[0]["dev"] == 0.0


def test_run_grid_in_two_processes_keeps_every_cell(tmp_path):
    base = tiny_base()
    configs = [quick("soft", steps=2, seed=s) for s in range(3)] + [quick("soft", steps=2, seed=0)]  # one twice
    results = run_grid(base, TOK, configs, tmp_path / "r.json", progress=False, n_test=8, workers=2)
    assert [r["config"]["seed"] for r in results] == [0, 1, 2, 0]
    assert len(json.loads((tmp_path / "r.json").read_text())) == 3
    assert all(0 <= r["test"] <= 1 and r["trainable"] > 0 for r in results)
    alone = run_grid(base, TOK, configs[:1], progress=False, n_test=8, workers=1)[0]  # in this process
    assert alone["losses"] == results[0]["losses"] and len(alone["losses"]) == 2  # one thread each: same numbers


def test_a_cell_runs_on_its_own_thread_count_and_restores_the_callers(monkeypatch):
    seen = []
    real_tune = grid.tune
    monkeypatch.setattr(grid, "tune", lambda *a, **k: seen.append(grid.torch.get_num_threads()) or real_tune(*a, **k))
    before = grid.torch.get_num_threads()
    grid.run_cell(tiny_base(), TOK, quick("soft", steps=2), n_test=4, threads=1)
    assert seen == [1] and grid.torch.get_num_threads() == before


def test_a_corrupt_results_file_is_a_clear_error(tmp_path):
    (tmp_path / "r.json").write_text('{"cut off')
    with pytest.raises(ValueError, match="not a results file.*delete it"):
        ResultStore(tmp_path / "r.json")


def test_a_later_field_at_its_default_leaves_the_key_as_stored_results_have_it():
    assert '"stop_at"' not in grid.cell_key(TuneConfig()) and '"stop_at": 1.0' in grid.cell_key(TuneConfig(stop_at=1.0))
    assert grid.cell_key(TuneConfig()) == grid.config_key({**asdict(TuneConfig()), "stop_at": None})


def test_a_missing_committed_results_file_names_the_command_that_writes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run `minprefix compare --out .*` \(resumable"):
        grid.load_committed("compare", tmp_path / "compare.json")
    assert set(grid.load_committed("sweep")["methods"]) == set(METHODS)  # the committed one, read from figures/


def test_a_committed_results_file_of_the_wrong_structure_is_one_error_naming_the_field(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"claims": 5}))
    with pytest.raises(ValueError, match="sweep.json: field 'config' is missing or of the wrong type"):
        grid.load_committed("sweep", tmp_path / "sweep.json")


def test_a_cell_measured_on_another_base_is_run_again_and_never_adopted(tmp_path, monkeypatch):
    """A rebuilt base must not inherit the old one's results: the store and --from both check the fingerprint."""
    cfg = quick("soft", steps=3)
    path = tmp_path / "grid.json"
    first = run_grid(tiny_base(seed=0), TOK, [cfg], path, progress=False, n_test=8, workers=1)[0]
    other = tiny_base(seed=1)
    calls = []
    real_tune = grid.tune
    monkeypatch.setattr(grid, "tune", lambda *a, **k: calls.append(a[2]) or real_tune(*a, **k))
    again = run_grid(other, TOK, [cfg], path, progress=False, n_test=8, workers=1)[0]
    assert calls == [cfg] and again["base"] == grid.fingerprint(other) != first["base"]
    assert ResultStore(path)[grid.cell_key(cfg)]["base"] == again["base"]  # replaced, not kept beside
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({"config": {}, "fields": {}, "methods": {"soft": [first, again]}}))  # a sweep.json
    assert grid.adopt(tmp_path / "fresh.json", earlier, again["base"]) == (1, 1)
    assert ResultStore(tmp_path / "fresh.json")[grid.cell_key(cfg)]["base"] == again["base"]
    legacy = {k: v for k, v in first.items() if k != "base"}  # stored before results named their base
    assert grid.base_of(legacy) == grid.LEGACY_BASE
    with pytest.warns(UserWarning, match=f"measured on base {first['base']}, not on base {again['base']}"):
        grid.load_committed("sweep", earlier, base=again["base"])  # a lesson reading another base's numbers


def test_the_committed_results_were_measured_on_the_shipped_base():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("sweep", "reparam", "compare"):
            grid.load_committed(name)
