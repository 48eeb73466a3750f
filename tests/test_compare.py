"""`minprefix compare` on a tiny grid, the grid runner's parallel and resumed paths, and prefixes on some layers."""

import json
import re

import pytest
import torch

from minprefix.lab import grid, report
from minprefix.artifacts import load_prompt, save_prompt
from minprefix.lab.compare import QUICK, CompareConfig, run_compare
from minprefix.lab.report import write_report
from minprefix.lab.grid import ResultStore, run_grid
from minprefix.model import GPT, GPTConfig
from minprefix.prefix import BlockInputPrefixGPT, PrefixGPT
from minprefix.train import TuneConfig
from test_tuning import TOK, quick, tiny_base

TINY = dict(steps=2, eval_every=1, seeds=1, headline_seeds=2, n_dev=8, n_test=8, search_steps=1, workers=1,
            tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",), init_task="bare-reverse",
            low_data=(4, 16), prompt_lens=(1, 4), shift_factor=2)


def test_compare_writes_every_output_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    torch.manual_seed(0)
    base = GPT(GPTConfig(vocab_size=TOK.vocab_size, block_size=128, n_layer=2, n_head=2, d_model=16)).freeze()
    out, runs = tmp_path / "out", tmp_path / "runs"
    data = write_report(run_compare(base, TOK, CompareConfig(**TINY), runs, progress=False), out)
    for name in ("compare.json", "compare.md", "compare_tasks.png", "compare_studies.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "compare.json").read_text())
    assert len(saved["claims"]) == 11
    assert all(c["verdict"] in ("holds", "does not hold", "partly") for c in saved["claims"])
    assert set(saved["studies"]) == {"main", "low_data", "prompt_len", "depth", "init", "shift"}
    assert {r["config"]["prefix_layers"] for r in saved["studies"]["depth"]} == {"bottom", "top", "all"}
    md = (out / "compare.md").read_text()
    assert "## Claims" in md and "| full fine-tuning |" in md
    assert re.search(r"\| \d+\.\d % \[\d+, \d+\] ± ", md)  # 8 test examples: each cell shows its 95 % interval
    assert data["ensemble"]["reverse-upper"].keys() == {"mean", "vote"}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")
    monkeypatch.setattr(grid, "run_cell", no_training)
    monkeypatch.setattr("minprefix.lab.compare.search_prompt", no_training)
    again = write_report(run_compare(base, TOK, CompareConfig(**TINY), runs, progress=False), out)
    assert again["summary"]["main"] == saved["summary"]["main"]


def test_quick_preset_is_a_valid_config_and_bad_values_are_named():
    assert CompareConfig(**QUICK).steps < CompareConfig().steps
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        CompareConfig(seeds=0)
    with pytest.raises(ValueError, match="lr_factors"):
        CompareConfig(lr_factors=(0.5, 2.0))


def test_run_grid_in_two_processes_keeps_every_cell(tmp_path):
    base = tiny_base()
    configs = [quick("soft", steps=2, seed=s) for s in range(3)] + [quick("soft", steps=2, seed=0)]  # one twice
    results = run_grid(base, TOK, configs, tmp_path / "r.json", progress=False, n_test=8, workers=2)
    assert [r["config"]["seed"] for r in results] == [0, 1, 2, 0]
    assert len(json.loads((tmp_path / "r.json").read_text())) == 3
    assert all(0 <= r["test"] <= 1 and r["trainable"] > 0 for r in results)


def test_a_corrupt_results_file_is_a_clear_error(tmp_path):
    (tmp_path / "r.json").write_text('{"cut off')
    with pytest.raises(ValueError, match="not a results file.*delete it"):
        ResultStore(tmp_path / "r.json")


def test_low_data_verdict_follows_its_rule():
    """The rule, on made-up summaries: prefix ahead at the smallest n and by less at the largest."""
    def verdict(gaps):
        s = {"low_data": {}}
        for n, gap in gaps.items():
            s["low_data"][f"{report.PREFIX}|{n}"] = {"mean": 0.5 + gap}
            s["low_data"][f"{report.FULL}|{n}"] = {"mean": 0.5}
        verdict = report.low_data({"config": {"low_data": list(gaps), "study_task": "t"}}, s, {})["verdict"]
        return {"holds": True, "partly": None, "does not hold": False}[verdict]
    assert verdict({16: 0.2, 1024: 0.05}) is True
    assert verdict({16: 0.2, 1024: 0.3}) is None  # ahead, but the gap grows
    assert verdict({16: -0.1, 1024: 0.0}) is False


# ---------------------------------------------------------------------------- a prefix on some layers


@pytest.mark.parametrize("cls", [PrefixGPT, BlockInputPrefixGPT])
def test_a_top_half_prefix_leaves_the_bottom_half_as_the_base_computes_it(cls):
    base = tiny_base(n_layer=4)
    model = cls(base, 3, init="random", layers="top")
    idx = torch.randint(0, TOK.vocab_size, (2, 7))
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o[0])) for b in base.blocks[:2]]
    model(idx)
    ours = list(captured)
    captured.clear()
    x = base.embed(base.wte(idx), 3)  # the base alone, tokens at positions 3.. as under the prefix
    for block in base.blocks[:2]:
        x, _ = block(x)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(ours[1], x)  # no prefix below the middle: exactly the plain blocks
    full = cls(base, 3, init="random", layers="all")
    full.rows.load_state_dict(model.rows.state_dict())
    assert not torch.allclose(full(idx)[0], model(idx)[0])  # and the bottom rows really are unused


def test_a_partial_prefix_generates_with_its_cache_and_survives_saving(tmp_path):
    base = tiny_base(n_layer=4)
    model = PrefixGPT(base, 3, init="random", layers="bottom")
    idx = torch.randint(0, TOK.vocab_size, (1, 5))
    out = model.generate(idx, 6, top_k=1)
    ids = idx
    for _ in range(6):  # the same tokens from full forward passes, without the cache
        ids = torch.cat([ids, model(ids)[0][:, -1:].argmax(-1)], dim=1)
    assert torch.equal(out, ids)
    save_prompt(model, tmp_path / "p.safetensors", base)
    loaded = load_prompt(tmp_path / "p.safetensors", base)
    assert loaded.layers == "bottom"
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])


def test_prefix_layers_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="--prefix-layers top: soft has no rows at every block"):
        TuneConfig(method="soft", prefix_layers="top")
    with pytest.raises(ValueError, match="a half needs at least 2 layers"):
        PrefixGPT(tiny_base(n_layer=1), 3, layers="bottom")
