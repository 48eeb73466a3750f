"""Tests of the tiny world in minprefix/world.py: tokenizer, tasks, splits and batches."""

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minprefix.lexicon import LEXICON
from minprefix.world import (
    CHARACTERS,
    COMPOSED_TASKS,
    DOWNSTREAM_TASKS,
    PRETRAIN_TASKS,
    SPLITS,
    TEMPLATES,
    Example,
    Tokenizer,
    answer_batch,
    examples,
    pretrain_batch,
    sample_example,
    solve,
    uses_lexicon,
)
from minprefix.world import _bucket

TOK = Tokenizer()
RANDOM_STRING_TASKS = [t for t in PRETRAIN_TASKS + DOWNSTREAM_TASKS if not uses_lexicon(t)]
LEXICON_WORDS = {w for w, _ in LEXICON}


# ---------------------------------------------------------------------------- tokenizer


@given(st.text(alphabet=CHARACTERS))
def test_decode_inverts_encode_for_any_vocabulary_text(text):
    ids = TOK.encode(text)
    assert len(ids) == len(text)
    assert TOK.decode(ids) == text


@pytest.mark.parametrize("bad, pos", [("ab€c", 2), ("line\nbreak", 4)])
def test_unknown_character_error_names_character_and_position(bad, pos):
    with pytest.raises(ValueError) as info:
        TOK.encode(bad)
    message = str(info.value)
    assert repr(bad[pos]) in message
    assert f"position {pos}" in message


def test_vocab_size_is_specials_plus_characters():
    assert TOK.vocab_size == 2 + len(CHARACTERS) == 104
    assert (TOK.pad_id, TOK.eos_id) == (0, 1)
    assert sorted(TOK.encode(CHARACTERS)) == list(range(2, TOK.vocab_size))


def test_decode_stops_at_eos_and_skips_pad():
    h, i, x = TOK.encode("hix")
    assert TOK.decode([h, TOK.pad_id, i, TOK.pad_id, TOK.eos_id, x]) == "hi"
    assert TOK.decode(torch.tensor([TOK.pad_id, h, TOK.eos_id])) == "h"


# ---------------------------------------------------------------------------- tasks and lexicon


def test_seed_english_to_german_templates_are_present_verbatim():
    for template in (
        "Translate the English sentence '{x}' into German: ",
        "English: '{x}' | German: ",
        "From English to German: '{x}' -> ",
    ):
        assert template in TEMPLATES["translate"]


def test_lexicon_has_150_pairs_with_distinct_words_on_both_sides():
    english = [w for w, _ in LEXICON]
    german = [g for _, g in LEXICON]
    assert len(LEXICON) >= 150
    assert len(set(english)) == len(english)
    assert len(set(german)) == len(german)


def test_lexicon_is_encodable():
    """Every English and German word is made of vocabulary characters."""
    for w, g in LEXICON:
        TOK.encode(w + g)


def test_at_least_five_pretraining_tasks_with_three_templates_each():
    assert len(PRETRAIN_TASKS) >= 5
    for task in PRETRAIN_TASKS:
        templates = TEMPLATES[task]
        assert len(templates) >= 3, task
        assert len(set(templates)) == len(templates), task
        assert all("{x}" in t for t in templates), task


@pytest.mark.parametrize("task", DOWNSTREAM_TASKS)
def test_every_downstream_task_yields_correct_examples_in_every_split(task):
    for split in SPLITS:
        exs = examples(task, split, n=20)
        assert len(exs) == 20, (task, split)
        for ex in exs:
            assert ex.task == task
            assert ex.prompt == f"'{ex.x}': "
            assert ex.answer == solve(task.removeprefix("bare-"), ex.x)
            TOK.encode(ex.text)


def test_downstream_tasks_include_bare_versions_and_composed_tasks():
    assert set(DOWNSTREAM_TASKS) == {f"bare-{t}" for t in PRETRAIN_TASKS} | set(COMPOSED_TASKS)
    assert not set(DOWNSTREAM_TASKS) & set(PRETRAIN_TASKS)


def test_composed_task_answers_on_hand_worked_examples():
    assert solve("reverse-upper", "stop") == "POTS"
    assert solve("translate-reverse", "dog") == "dnuH"
    assert solve("sort", "stop") == "opst"
    assert solve("devowel", "house") == "hs"


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("task", ["reverse", "bare-sort", "reverse-upper", "translate", "bare-translate"])
def test_examples_are_deterministic_and_depend_on_seed(task):
    a = examples(task, "train", n=30, seed=0)
    assert a == examples(task, "train", n=30, seed=0)
    assert a != examples(task, "train", n=30, seed=1)


def test_random_string_examples_are_distinct():
    exs = examples("reverse", "train", n=200)
    assert len({ex.x for ex in exs}) == 200


def test_pretrain_batch_is_deterministic_for_same_rng_seed():
    a = pretrain_batch(TOK, random.Random(7), batch_size=3, block_size=32)
    b = pretrain_batch(TOK, random.Random(7), batch_size=3, block_size=32)
    c = pretrain_batch(TOK, random.Random(8), batch_size=3, block_size=32)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------------------- splits


@pytest.mark.parametrize("task", RANDOM_STRING_TASKS)
def test_random_string_splits_have_disjoint_inputs(task):
    xs = {split: {ex.x for ex in examples(task, split, n=300)} for split in SPLITS}
    assert all(len(s) == 300 for s in xs.values())
    assert not xs["train"] & xs["dev"]
    assert not xs["train"] & xs["test"]
    assert not xs["dev"] & xs["test"]


def test_pretrain_translate_splits_disjoint_pairs_and_all_words_in_train():
    pairs = {split: {(ex.x, ex.prompt) for ex in examples("translate", split)} for split in SPLITS}
    assert not pairs["train"] & pairs["dev"]
    assert not pairs["train"] & pairs["test"]
    assert not pairs["dev"] & pairs["test"]
    assert {w for w, _ in pairs["train"]} == LEXICON_WORDS
    assert {w for w, _ in pairs["dev"]} == LEXICON_WORDS  # one held-out phrasing per word
    n_templates = len(TEMPLATES["translate"])
    assert len(pairs["train"]) == len(LEXICON) * (n_templates - 2)


def test_pretraining_samples_never_use_held_out_translate_pairs():
    """The pretraining stream (sample_example on train) never draws a dev or test (word, prompt)."""
    held = {(ex.x, ex.prompt) for split in ("dev", "test") for ex in examples("translate", split)}
    rng = random.Random(0)
    drawn = {(ex.x, ex.prompt) for ex in (sample_example("translate", "train", rng) for _ in range(2000))}
    assert len(drawn) > 300
    assert not drawn & held


@pytest.mark.parametrize("task", ["bare-translate", "translate-reverse"])
def test_downstream_lexicon_splits_have_disjoint_words(task):
    words = {split: {ex.x for ex in examples(task, split)} for split in SPLITS}
    assert all(words.values())
    assert not words["train"] & words["dev"]
    assert not words["train"] & words["test"]
    assert not words["dev"] & words["test"]
    assert words["train"] | words["dev"] | words["test"] == LEXICON_WORDS


@pytest.mark.parametrize("task", ["bare-translate", "translate-reverse", "bare-reverse", "devowel"])
def test_sample_example_stays_in_its_split(task):
    """Inputs drawn one at a time by sample_example come only from the asked-for split."""
    rng = random.Random(0)
    drawn = {split: {sample_example(task, split, rng).x for _ in range(100)} for split in SPLITS}
    assert not drawn["train"] & drawn["dev"]
    assert not drawn["train"] & drawn["test"]
    assert not drawn["dev"] & drawn["test"]
    if task in DOWNSTREAM_TASKS and uses_lexicon(task):
        for split in SPLITS:
            assert drawn[split] <= {ex.x for ex in examples(task, split)}


def test_split_buckets_are_about_80_10_10():
    counts = {split: 0 for split in SPLITS}
    for i in range(10000):
        counts[_bucket(f"w{i}")] += 1
    assert 7800 <= counts["train"] <= 8200
    assert 800 <= counts["dev"] <= 1200
    assert 800 <= counts["test"] <= 1200


# ---------------------------------------------------------------------------- batches


def test_answer_batch_scores_only_answer_and_eos():
    """Hand-worked: targets are -1 on prompt and padding, else the answer ids then <eos>."""
    exs = [
        Example("bare-reverse", "abc", "abc=", "cba"),
        Example("bare-reverse", "xy", "xy=", "yx"),
    ]
    idx, targets = answer_batch(TOK, exs)
    s, eos, pad = TOK.stoi, TOK.eos_id, TOK.pad_id
    # row 0: "abc=cba<eos>" (8 ids) -> T = 7; row 1: "xy=yx<eos>" (6 ids) padded to 7
    expected_idx = [
        [s["a"], s["b"], s["c"], s["="], s["c"], s["b"], s["a"]],
        [s["x"], s["y"], s["="], s["y"], s["x"], pad, pad],
    ]
    expected_targets = [
        [-1, -1, -1, s["c"], s["b"], s["a"], eos],
        [-1, -1, s["y"], s["x"], eos, -1, -1],
    ]
    assert idx.tolist() == expected_idx
    assert targets.tolist() == expected_targets


def test_answer_batch_targets_match_encoded_answers():
    exs = examples("bare-translate", "dev", n=8)
    idx, targets = answer_batch(TOK, exs)
    for b, ex in enumerate(exs):
        scored = targets[b][targets[b] != -1].tolist()
        assert scored == TOK.encode(ex.answer) + [TOK.eos_id]


def test_pretrain_batch_targets_are_idx_shifted_by_one():
    idx, targets = pretrain_batch(TOK, random.Random(0), batch_size=4, block_size=96)
    assert idx.shape == targets.shape == (4, 96)
    assert idx.dtype == torch.long
    assert torch.equal(idx[:, 1:], targets[:, :-1])
    assert (targets == TOK.eos_id).any()  # examples are packed back to back, each ending in <eos>
    assert not (idx == TOK.pad_id).any()  # rows are full: no padding in pretraining


# ---------------------------------------------------------------------------- errors


def test_unknown_task_raises_listing_choices():
    with pytest.raises(ValueError, match="unknown task 'revers'") as info:
        examples("revers", "train", n=1)
    for task in PRETRAIN_TASKS + DOWNSTREAM_TASKS:
        assert task in str(info.value)


def test_unknown_split_raises_listing_choices():
    with pytest.raises(ValueError, match="unknown split 'valid'.*train, dev, test"):
        examples("reverse", "valid", n=1)
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        sample_example("bare-translate", "valid", random.Random(0))


def test_random_string_task_without_n_raises():
    with pytest.raises(ValueError, match="pass n"):
        examples("reverse", "train")
