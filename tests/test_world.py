"""Tests of the tiny world in minprefix/world.py: tokenizer, tasks, splits and batches."""

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minprefix.lexicon import LEXICON
from minprefix.world import (
    BARE_TEMPLATE,
    CHARACTERS,
    COMPOSED_TASKS,
    DOWNSTREAM_TASKS,
    NEW_SKILL_TASKS,
    PRETRAIN_TASKS,
    SPLITS,
    TEMPLATES,
    Example,
    Tokenizer,
    _held_out_templates,
    answer_batch,
    copy_baseline,
    examples,
    lexicon_words,
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


def test_three_classic_english_to_german_templates_are_present_verbatim():
    for template in (
        "Translate the English sentence '{x}' into German: ",
        "English: '{x}' | German: ",
        "From English to German: '{x}' -> ",
    ):
        assert template in TEMPLATES["translate"]


def test_lexicon_has_400_pairs_with_distinct_words_on_both_sides():
    english = [w for w, _ in LEXICON]
    german = [g for _, g in LEXICON]
    assert len(LEXICON) >= 400
    assert len(set(english)) == len(english)
    assert len({g.lower() for g in german}) == len(german)
    assert not [w for w, g in LEXICON if w == g.lower()]  # copying would not be translating


def test_each_downstream_translation_split_holds_at_least_40_words():
    sizes = {split: len(lexicon_words(split)) for split in SPLITS}
    assert sizes["dev"] >= 40 and sizes["test"] >= 40
    assert sum(sizes.values()) == len(LEXICON)


def test_word_split_and_held_out_template_are_independent_draws():
    """Every (downstream split, held-out template) combination occurs, for dev and for test templates:
    had both come from one hash, each split's words would share their held-out templates."""
    n = len(TEMPLATES["translate"])
    for which in (0, 1):
        seen = {(split, _held_out_templates(w)[which]) for split in SPLITS for w in lexicon_words(split)}
        assert seen == {(split, t) for split in SPLITS for t in range(n)}


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


def test_downstream_tasks_include_bare_versions_composed_tasks_and_a_new_skill():
    assert set(DOWNSTREAM_TASKS) == {f"bare-{t}" for t in PRETRAIN_TASKS} | set(COMPOSED_TASKS) | {"shift"}
    assert not set(DOWNSTREAM_TASKS) & set(PRETRAIN_TASKS)


HAND_WORKED = {  # (task, input, answer), written out by hand, not by solve()
    "translate": [("dog", "Hund"), ("cheese", "Käse"), ("bear", "Bär")],
    "reverse": [("stop", "pots"), ("abc", "cba"), ("kayak", "kayak")],
    "uppercase": [("stop", "STOP"), ("xyz", "XYZ")],
    "sort": [("stop", "opst"), ("banana", "aaabnn"), ("zyx", "xyz")],
    "devowel": [("house", "hs"), ("stop", "stp"), ("queue", "q")],
    "reverse-upper": [("stop", "POTS"), ("abc", "CBA")],
    "devowel-reverse": [("stop", "pts"), ("house", "sh"), ("banana", "nnb")],
    "shift": [("abc", "bcd"), ("yak", "zbl"), ("zoo", "app")],
}


@pytest.mark.parametrize("skill", sorted(HAND_WORKED))
def test_answers_on_hand_worked_examples(skill):
    for x, answer in HAND_WORKED[skill]:
        assert solve(skill, x) == answer, (skill, x)


@pytest.mark.parametrize("task", ["translate", "bare-translate"])
def test_translation_examples_carry_the_hand_worked_answers(task):
    known = dict(HAND_WORKED["translate"])
    met = [ex for split in SPLITS for ex in examples(task, split) if ex.x in known]
    assert {ex.x for ex in met} == set(known)
    assert all(ex.answer == known[ex.x] for ex in met)


def test_copy_baseline_counts_answers_equal_to_the_input():
    exs = [Example("bare-reverse", x, f"'{x}': ", x[::-1]) for x in ("abba", "abc", "xyx", "stop")]
    assert copy_baseline(exs) == 0.5


# ---------------------------------------------------------------------------- never seen in pretraining


def pretraining_texts(n_batches=40):
    """The text of pretraining examples, as the model reads them (split at <eos>)."""
    texts = []
    for seed in range(n_batches):
        idx, _ = pretrain_batch(TOK, random.Random(seed), batch_size=8, block_size=128)
        for row in idx.tolist():
            texts += "".join(TOK.itos[i] if i > 1 else "\n" for i in row).split("\n")[1:-1]  # whole ones only
    return texts


def test_no_pretraining_example_begins_with_the_bare_format():
    import re

    texts = pretraining_texts()
    assert len(texts) > 500
    bare = re.compile(re.escape(BARE_TEMPLATE).replace(re.escape("{x}"), "[^']*"))
    assert not [t for t in texts if bare.match(t)]
    for task in PRETRAIN_TASKS:  # and no template could produce one, whatever the input
        for template in TEMPLATES[task]:
            assert not template.format(x="abc").startswith(BARE_TEMPLATE.format(x="abc"))


@pytest.mark.parametrize("task", COMPOSED_TASKS + NEW_SKILL_TASKS)
def test_no_composed_or_new_skill_answer_occurs_in_pretraining(task):
    """For every input, the chained (or new) skill's answer is no pretraining task's answer to that input,
    and the text "'x': answer" never occurs in pretraining text (a palindrome would make it occur)."""
    texts = "\n".join(pretraining_texts())
    exs = [ex for split in SPLITS for ex in examples(task, split, 300)]
    for ex in exs:
        assert all(ex.answer != solve(t, ex.x) for t in PRETRAIN_TASKS if not uses_lexicon(t)), ex
    assert not [ex for ex in exs if ex.text in texts]


def test_composed_tasks_leave_out_palindromes():
    """On a palindrome, reverse-upper answers like uppercase: no test of the chain, so never drawn."""
    xs = [ex.x for ex in examples("reverse-upper", "train", 5000)]
    assert not [x for x in xs if x == x[::-1]]
    assert sum(len(x) == 3 for x in xs) > 500  # where 1 in 26 random strings would be palindromes


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


@pytest.mark.parametrize("task", ["bare-translate"])
def test_downstream_lexicon_splits_have_disjoint_words(task):
    words = {split: {ex.x for ex in examples(task, split)} for split in SPLITS}
    assert all(words.values())
    assert not words["train"] & words["dev"]
    assert not words["train"] & words["test"]
    assert not words["dev"] & words["test"]
    assert words["train"] | words["dev"] | words["test"] == LEXICON_WORDS


@pytest.mark.parametrize("task", ["bare-translate", "shift", "bare-reverse", "devowel"])
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
