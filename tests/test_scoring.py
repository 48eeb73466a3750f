"""Scoring (minprefix/scoring.py): exact match against real greedy decoding, intervals, and the printed forms."""

import pytest
import torch
from helpers import TOK, tiny_base

from minprefix.base import load_base
from minprefix.scoring import percent, score, table, wilson_interval
from minprefix.world import examples


def test_teacher_forced_exact_match_equals_greedy_decoding():
    """The one-pass verdict against decoding each answer token by token (the oracle), row by row."""
    base, tok = load_base()  # the shipped base: right on instructed examples, mostly wrong on bare ones
    exs = examples("reverse", "dev", 12) + examples("bare-sort", "dev", 12) + examples("bare-devowel", "dev", 12)
    found = []
    for ex in exs:
        idx = torch.tensor([TOK.encode(ex.prompt)])
        out = base.generate(idx, len(ex.answer) + 1, top_k=1, stop_id=TOK.eos_id)
        found.append(TOK.decode(out[0, idx.size(1):].tolist()) == ex.answer and out[0, -1].item() == TOK.eos_id)
    assert 0 < sum(found) < len(exs), "the oracle must see both right and wrong answers"
    assert score(base, TOK, exs)["exact_match"] == sum(found) / len(exs)


def test_a_score_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one example"):
        score(tiny_base(), TOK, [])


def test_percent_shows_the_interval_only_under_100_examples():
    assert percent(0.5, 100) == "50.0 %" and percent(0.5) == "50.0 %"
    low, high = wilson_interval(0.5, 20)
    assert percent(0.5, 20) == f"50.0 % [{100 * low:.0f}, {100 * high:.0f}]" == "50.0 % [30, 70]"


def test_table_is_markdown_with_numbers_right_aligned():
    assert table(["a", "b"], [[1, 2]]) == "| a | b |\n| --- | ---: |\n| 1 | 2 |"
