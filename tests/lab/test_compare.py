"""`minprefix compare` (minprefix/lab/compare.py) and its report (minprefix/lab/report.py), on a tiny grid."""

import json
import re

import pytest
from helpers import TOK, tiny_base

from minprefix.lab import grid, report, studies
from minprefix.lab.compare import QUICK, CompareConfig, run_compare
from minprefix.lab.report import write_report
from minprefix.methods import METHODS

TINY = dict(steps=2, eval_every=1, seeds=2, n_dev=8, n_test=8, search_steps=1, workers=1,
            tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",), init_task="bare-reverse",
            low_data=(4, 16), prompt_lens=(1, 4), shift_factor=2)


def test_compare_writes_every_output_and_a_rerun_trains_nothing(tmp_path, monkeypatch):
    base = tiny_base(block_size=128)
    out, runs = tmp_path / "out", tmp_path / "runs"
    data = write_report(run_compare(base, TOK, CompareConfig(**TINY), runs, progress=False), out)
    for name in ("compare.json", "compare.md", "compare_tasks.png", "compare_studies.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "compare.json").read_text())
    assert len(saved["claims"]) == len(report.CLAIMS) == 11
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
    with pytest.raises(ValueError, match="`seeds` must be at least 1"):
        CompareConfig(seeds=0)
    with pytest.raises(ValueError, match="bare-sort of a study are not among --tasks"):
        CompareConfig(tasks=("bare-reverse", "reverse-upper"), headline_tasks=("reverse-upper",),
                      low_data_tasks=("bare-sort", "reverse-upper"))


def test_one_rule_set_judges_task_by_task_and_counts_by_kind():
    """`report.judge`: holds on every task, partly on some, does not hold on none; counted per kind of task."""
    assert report.judge({"bare-a": True, "bare-b": True, "x-y": True}) == (True, "bare: 2 of 2; composed: 1 of 1")
    assert report.judge({"bare-a": True, "bare-b": False, "shift": True}) == (None, "bare: 1 of 2; new skill: 1 of 1")
    assert report.judge({"bare-a": False, "x-y": False})[0] is False


def summary_of(means: dict[str, dict[str, float]]) -> dict:
    """A made-up summary: variant -> task -> mean test score (shift goes to the new-skill study)."""
    main = {f"{v}|{t}": {"test": {"mean": x}} for v, by_task in means.items() for t, x in by_task.items()
            if t != "shift"}
    shift = {v: {"mean": by_task["shift"]} for v, by_task in means.items() if "shift" in by_task}
    return {"main": main, "shift": shift}


def test_a_difference_inside_the_tie_margin_is_a_tie_on_every_claim():
    """One margin (report.MARGIN, 2 points) for every claim: a 1-point gap decides nothing either way."""
    data = {"config": {"tasks": ["bare-t", "c-t"]}}
    s = summary_of({studies.SOFT_LABEL: {"bare-t": 0.90, "c-t": 0.90, "shift": 0.0},
                    studies.PREFIX_MLP_LABEL: {"bare-t": 0.91, "c-t": 0.95, "shift": 0.5},
                    studies.FULL_LABEL: {"bare-t": 0.92, "c-t": 0.99, "shift": 1.0}})
    below = report.soft_below_prefix(data, s)
    assert below["verdict"] == "partly" and "bare: 0 of 1; composed: 1 of 1; new skill: 1 of 1" in below["here"]
    matches = report.matches_full(data, s)  # 1 point behind on bare-t: a tie, so it matches there
    assert matches["verdict"] == "partly" and "bare: 1 of 1; composed: 0 of 1; new skill: 0 of 1" in matches["here"]
    assert report.small_scale(data, s)["verdict"] == "partly"  # soft 2 points behind on bare-t is not "behind"

    def low(gap16):
        ld = {f"{v}|t|{n}": {"mean": 0.5 + (gap16 if v == studies.PREFIX_MLP_LABEL and n == 16 else 0)}
              for v in (studies.PREFIX_MLP_LABEL, studies.FULL_LABEL) for n in (16, 320)}
        return report.low_data({"config": {"low_data": [16, 320], "low_data_tasks": ["t"]}}, {"low_data": ld})
    assert low(0.2)["verdict"] == "holds" and low(0.01)["verdict"] == "does not hold"

    def text_best(random, vocab, text):
        s = {"init": {f"{m}|{i}": {"mean": x} for m in studies.INIT_STUDY
                      for i, x in (("random", random), ("vocab", vocab), ("text", text))}}
        return report.text_init({"config": {"init_n_train": 16, "init_task": "bare-t"}}, s)["verdict"]
    assert text_best(0.5, 0.9, 0.895) == "holds"  # half a point behind vocab: a tie with the best
    assert text_best(0.5, 0.9, 0.85) == "does not hold"
    assert text_best(0.9, 0.8, 0.91) == "does not hold"  # ahead of random by a point only: no help shown

    def depth(bottom, top, all_layers):
        s = {"depth": {k: {"mean": x} for k, x in (("bottom", bottom), ("top", top), ("all", all_layers))}}
        return report.depth({"config": {"study_task": "t"}}, s)["verdict"]
    assert depth(0.5, 0.9, 0.9) == "holds"
    assert depth(0.9, 0.91, 0.5) == "does not hold"  # top a point ahead of bottom: a tie


def test_direct_unstable_compares_worst_seeds_task_by_task():
    def run(variant, task, test):
        method = next(m for m, x in METHODS.items() if x.label == variant)
        return {"config": {"method": method, "task": task}, "test": test, "diverged": None}
    seeds = {"bare-t": ([0.9, 0.0, 0.95], [0.97, 0.96, 0.98]), "c-t": ([0.99, 0.98, 0.985], [0.99, 0.99, 0.995])}
    direct, mlp = studies.PREFIX_LABEL, studies.PREFIX_MLP_LABEL
    main = [run(v, t, x) for t, pair in seeds.items() for v, xs in zip((direct, mlp), pair) for x in xs]
    shift = [run(v, "shift", x) for v, xs in ((direct, [0.7, 0.0, 0.0]), (mlp, [0.9, 0.8])) for x in xs]
    verdict = report.direct_unstable({"config": {"tasks": list(seeds)}, "studies": {"main": main, "shift": shift}}, {})
    # bare-t and shift: the direct prefix's worst seed is at 0; c-t: worst seeds 98 and 99, a tie
    assert verdict["verdict"] == "partly" and "bare: 1 of 1; composed: 0 of 1; new skill: 1 of 1" in verdict["here"]
