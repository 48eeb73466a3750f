"""`minprefix compare` (minprefix/lab/compare.py) and its report (minprefix/lab/report.py), on a tiny grid."""

import json
import re

import pytest
from helpers import TOK, tiny_base

from minprefix.lab import grid, report
from minprefix.lab.compare import QUICK, CompareConfig, run_compare
from minprefix.lab.report import write_report
from minprefix.methods import METHODS

TINY = dict(steps=2, eval_every=1, seeds=2, other_seeds=1, n_dev=8, n_test=8, search_steps=1, workers=1,
            tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",), init_task="bare-reverse",
            low_data=(4, 16), prompt_lens=(1, 4), shift_factor=2)


def test_compare_writes_every_output_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    base = tiny_base(block_size=128)
    out, runs = tmp_path / "out", tmp_path / "runs"
    data = write_report(run_compare(base, TOK, CompareConfig(**TINY), runs, progress=False), out)
    for name in ("compare.json", "compare.md", "compare_tasks.png", "compare_studies.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "compare.json").read_text())
    assert len(saved["claims"]) == 12
    assert all(c["verdict"] in ("holds", "does not hold", "partly") for c in saved["claims"])
    assert set(saved["studies"]) == {"main", "low_data", "prompt_len", "depth", "init", "shift"}
    assert {r["config"]["prefix_layers"] for r in saved["studies"]["depth"]} == {"bottom", "top", "all"}
    md = (out / "compare.md").read_text()
    assert "## Claims" in md and "| full fine-tuning |" in md
    for c in saved["claims"]:  # each claim's row, with what was measured here and its verdict
        assert f"| {c['claim']} | {c['paper']} | {c['here']} | **{c['verdict']}** | {c['rule']} |" in md, c["claim"]
    n = f"{saved['n_base']:,}"
    assert f"| full fine-tuning | {n} | 100.00 % | {n} |" in md  # the headline row: it trains and stores every weight
    assert re.search(r"\| \d+\.\d % \[\d+, \d+\] ± ", md)  # 8 test examples: each cell shows its 95 % interval
    assert data["ensemble"]["reverse-upper"].keys() == {"mean", "vote"}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")
    monkeypatch.setattr(grid, "run_cell", no_training)
    monkeypatch.setattr("minprefix.lab.compare.search_prompt", no_training)
    again = write_report(run_compare(base, TOK, CompareConfig(**TINY), runs, progress=False), out)
    assert again["summary"]["main"] == saved["summary"]["main"]


def test_quick_preset_is_a_valid_config_and_bad_values_are_named():
    assert CompareConfig(**QUICK).steps < min(m.steps for m in METHODS.values()) and CompareConfig().steps is None
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        CompareConfig(seeds=0)
    with pytest.raises(ValueError, match="bare-sort of a study are not among --tasks"):
        CompareConfig(tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",),
                      low_data_tasks=("bare-sort", "reverse-upper"))


def test_low_data_verdict_follows_its_rule():
    """The rule, on made-up summaries: prefix ahead at the smallest n and by less at the largest."""
    def verdict(gaps):
        s = {"low_data": {}}
        for n, gap in gaps.items():
            s["low_data"][f"{report.PREFIX}|t|{n}"] = {"mean": 0.5 + gap}
            s["low_data"][f"{report.FULL}|t|{n}"] = {"mean": 0.5}
        data = {"config": {"low_data": list(gaps), "low_data_tasks": ["bare-x", "t"]}}
        verdict = report.low_data_on("composed")(data, s, {})["verdict"]
        return {"holds": True, "partly": None, "does not hold": False}[verdict]
    assert verdict({16: 0.2, 1024: 0.05}) is True
    assert verdict({16: 0.2, 1024: 0.3}) is None  # ahead, but the gap grows
    assert verdict({16: -0.1, 1024: 0.0}) is False
    assert verdict({16: 0.01, 1024: -0.01}) is False  # one point ahead is a tie (report.MARGIN), not a win


def test_a_difference_inside_the_tie_margin_is_no_verdict_either_way():
    """Soft below prefix, and text init best: a gap under report.MARGIN (seed noise here) is a tie."""
    def below(bare_gap, composed_gap):
        s = {"main": {f"{v}|{t}": {"test": {"mean": 0.9 + (gap if v == report.PREFIX else 0)}}
                      for t, gap in (("bare-t", bare_gap), ("t", composed_gap)) for v in (report.SOFT, report.PREFIX)}}
        return report.soft_below_prefix({}, s, {"bare": ["bare-t"], "composed": ["t"]})["verdict"]
    assert below(0.05, 0.05) == "holds"
    assert below(0.003, 0.05) == "partly"  # 0.3 points on the bare task: a tie, not "below"
    assert below(0.01, -0.1) == "does not hold"

    def text_best(random, vocab, text):
        s = {"init": {f"{m}|{i}": {"mean": x} for m in report.INIT_STUDY
                      for i, x in (("random", random), ("vocab", vocab), ("text", text))}}
        return report.text_init({"config": {"init_n_train": 16}}, s, {})["verdict"]
    assert text_best(0.5, 0.9, 0.895) == "holds"  # half a point behind vocab: a tie with the best
    assert text_best(0.5, 0.9, 0.85) == "does not hold"
    assert text_best(0.9, 0.8, 0.91) == "does not hold"  # ahead of random by a point only: no help shown

    def depth(bottom, top, all_layers):
        s = {"depth": {k: {"mean": x} for k, x in (("bottom", bottom), ("top", top), ("all", all_layers))}}
        return report.depth({"config": {"study_task": "t"}}, s, {})["verdict"]
    assert depth(0.5, 0.9, 0.9) == "holds"
    assert depth(0.9, 0.91, 0.5) == "does not hold"  # top a point ahead of bottom: a tie


def test_direct_unstable_needs_divergences_for_holds():
    """Lesson 5's reading: a wider seed spread and a lower mean without divergences is "partly", not "holds"."""
    def verdict(diverged_direct, std_direct, mean_direct):
        cell = lambda mean, std, div: {"test": {"mean": mean, "std": std, "diverged": div}}  # noqa: E731
        s = {"main": {f"{report.PREFIX_DIRECT}|t": cell(mean_direct, std_direct, diverged_direct),
                      f"{report.PREFIX}|t": cell(0.98, 0.005, 0)}}
        return report.direct_unstable({"config": {"headline_tasks": ["t"]}}, s, {"all": ["t"]})["verdict"]
    assert verdict(2, 0.02, 0.97) == "holds"
    assert verdict(0, 0.02, 0.97) == "partly"
    assert verdict(0, 0.001, 0.99) == "does not hold"
