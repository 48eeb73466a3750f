"""Tests of the tiny world in minprefix/world.py: tokenizer, tasks, splits and batches."""

import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from minprefix.pretrain import PretrainConfig
from minprefix.lexicon import LEXICON, PART_OF_SPEECH
from minprefix.model import GPTConfig
from minprefix.world import (
    BARE_TEMPLATE,
    CHARACTERS,
    COMPOSED_TASKS,
    COMPOSED_TEMPLATES,
    DOWNSTREAM_TASKS,
    LONG_LENGTHS,
    NEW_SKILL_TASKS,
    PRETRAIN_LENGTHS,
    PRETRAIN_TASKS,
    SPLITS,
    STRING_SKILLS,
    TEMPLATES,
    TUNE_LENGTHS,
    TUNE_TRAIN_SIZE,
    VOWELS,
    Example,
    Tokenizer,
    _held_out_templates,
    answer_batch,
    copy_baseline,
    encode_example,
    examples,
    hand_templates,
    instruction,
    lexicon_words,
    pretrain_batch,
    sample_example,
    skill_of,
    solve,
    split_key,
    train_size,
    uses_lexicon,
)
from minprefix.world import STRING_SALT, TEMPLATE_SALT, WORD_SALT, _bucket, _fair, _hash

TOK = Tokenizer()
RANDOM_STRING_TASKS = [t for t in PRETRAIN_TASKS + DOWNSTREAM_TASKS if not uses_lexicon(t)]
DOWNSTREAM_STRING_TASKS = [t for t in DOWNSTREAM_TASKS if not uses_lexicon(t)]
HELD_OUT = ("dev", "test", "long")  # the splits no training sees
LEXICON_WORDS = {w for w, _ in LEXICON}
lowercase_strings = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", max_size=12)


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
    assert sizes["train"] == TUNE_TRAIN_SIZE
    assert sum(sizes.values()) == len(LEXICON)


# Words left out because they have two readings (noun or adjective and verb, each with its own German
# word: love Liebe / lieben) or two equally common German translations (listen: zuhören or hören).
AMBIGUOUS = """
    answer ask bad bear begin book cheap clean cold cut dance difficult dream dress drink drive dry duck
    empty face fast fear fire fish full glasses happy hate head hot human jump key laugh listen love need pepper
    rain repair salt saturday scream search ship shower sleep smile snow stand stay suit time train travel visit
    water wave whisper win
""".split()


def test_no_ambiguous_word_is_in_the_lexicon():
    assert len(AMBIGUOUS) == 60
    assert not LEXICON_WORDS & set(AMBIGUOUS)


def test_every_german_word_is_unique_and_capitalized_as_its_part_of_speech():
    """One German word per English word (no two English words share one), nouns capitalized, every
    other part of speech lowercase."""
    german = [g for _, g in LEXICON]
    assert len({g.lower() for g in german}) == len(german)
    assert set(PART_OF_SPEECH) == LEXICON_WORDS
    assert set(PART_OF_SPEECH.values()) == {"noun", "adjective", "verb", "number"}
    for w, g in LEXICON:
        assert w == w.lower() and w.isalpha(), w
        if PART_OF_SPEECH[w] == "noun":
            assert g[0].isupper() and g[1:] == g[1:].lower(), (w, g)
        else:
            assert g == g.lower(), (w, g)
    assert {w for w, _ in LEXICON if PART_OF_SPEECH[w] == "verb"} >= {"go", "eat", "read"}
    assert all(g.endswith("n") for w, g in LEXICON if PART_OF_SPEECH[w] == "verb")  # German infinitives


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


def splits_of(task):
    return SPLITS if uses_lexicon(task) else SPLITS + ("long",)


@pytest.mark.parametrize("task", DOWNSTREAM_TASKS)
def test_every_downstream_task_yields_correct_examples_in_every_split(task):
    for split in splits_of(task):
        exs = examples(task, split, n=20)
        assert len(exs) == 20, (task, split)
        for ex in exs:
            assert ex.task == task
            assert ex.prompt == f"'{ex.x}': "
            assert ex.answer == solve(task.removeprefix("bare-"), ex.x)
            TOK.encode(ex.text)


@pytest.mark.parametrize("task", DOWNSTREAM_TASKS)
def test_every_downstream_task_has_hand_written_templates_and_an_instruction(task):
    templates = hand_templates(task)
    assert templates and all(t.count("{x}") == 1 for t in templates)
    assert instruction(task) and "{x}" not in instruction(task) and "  " not in instruction(task)
    if task.startswith("bare-"):
        assert templates == TEMPLATES[skill_of(task)]
    assert set(COMPOSED_TEMPLATES) == set(COMPOSED_TASKS + NEW_SKILL_TASKS)
    assert instruction("reverse-upper") == "Reverse in capital letters:"


@pytest.mark.parametrize("task", DOWNSTREAM_TASKS)
def test_every_downstream_task_tunes_on_the_same_number_of_distinct_examples(task):
    """TUNE_TRAIN_SIZE distinct train items for every task: asking for more returns them all."""
    train = examples(task, "train", 100_000)
    assert train_size(task) == TUNE_TRAIN_SIZE == len(train) == len({ex.x for ex in train})
    assert {ex.x for ex in examples(task, "train", 50, seed=3)} <= {ex.x for ex in train}
    assert examples(task, "train") == examples(task, "train", TUNE_TRAIN_SIZE)


def test_train_size_of_pretraining_tasks():
    assert train_size("reverse") is None  # unbounded: random strings
    assert train_size("translate") == len(examples("translate", "train"))


@pytest.mark.parametrize("task", RANDOM_STRING_TASKS)
def test_string_lengths_and_the_long_split(task):
    """Pretraining and tuning strings are 4 to 7 letters, "long" ones 8 to 10 (longer than any string
    trained on), with test keys."""
    lo, hi = PRETRAIN_LENGTHS if task in PRETRAIN_TASKS else TUNE_LENGTHS
    for split in SPLITS:
        assert {len(ex.x) for ex in examples(task, split, 300)} == set(range(lo, hi + 1)), split
    long = examples(task, "long", 300)
    assert {len(ex.x) for ex in long} == set(range(LONG_LENGTHS[0], LONG_LENGTHS[1] + 1))
    assert all(_bucket(ex.x) == "test" for ex in long)
    assert PRETRAIN_LENGTHS[1] < LONG_LENGTHS[0] and TUNE_LENGTHS[1] < LONG_LENGTHS[0]
    if task in DOWNSTREAM_TASKS:
        assert max(len(ex.x) for ex in examples(task, "train")) < LONG_LENGTHS[0]


def test_long_split_is_for_random_strings_only():
    for task in ("translate", "bare-translate"):
        with pytest.raises(ValueError, match="no split 'long'"):
            examples(task, "long", 5)


def test_every_example_fits_the_context_with_room_for_40_prompt_rows():
    """The longest template with the longest input and answer (10 letters, or the longest lexicon word)
    leaves room in block_size for 40 soft-prompt rows (the longest prompt compare tries)."""
    longest_word = max(len(w) for w, _ in LEXICON)
    longest_german = max(len(g) for _, g in LEXICON)
    longest = 0
    for task in PRETRAIN_TASKS + DOWNSTREAM_TASKS:
        template = max(TEMPLATES.get(task, (BARE_TEMPLATE,)), key=len)
        x, answer = (longest_word, longest_german) if uses_lexicon(task) else (LONG_LENGTHS[1], LONG_LENGTHS[1])
        longest = max(longest, len(template) - len("{x}") + x + answer + 1)  # + <eos>
    assert longest + 40 <= GPTConfig().block_size
    for task in PRETRAIN_TASKS + DOWNSTREAM_TASKS:  # and so do the examples themselves
        for split in splits_of(task):
            assert max(len(encode_example(TOK, ex)[0]) for ex in examples(task, split, 50)) <= longest


def test_downstream_tasks_include_bare_versions_composed_tasks_and_a_new_skill():
    assert set(DOWNSTREAM_TASKS) == {f"bare-{t}" for t in PRETRAIN_TASKS} | set(COMPOSED_TASKS) | {"shift"}
    assert not set(DOWNSTREAM_TASKS) & set(PRETRAIN_TASKS)


HAND_WORKED = {  # (task, input, answer), written out by hand, not by solve()
    "translate": [("dog", "Hund"), ("cheese", "Käse"), ("foot", "Fuß")],
    "reverse": [("stop", "pots"), ("abc", "cba"), ("kayak", "kayak")],
    "uppercase": [("stop", "STOP"), ("xyz", "XYZ")],
    "sort": [("stop", "opst"), ("banana", "aaabnn"), ("zyx", "xyz")],
    "devowel": [("house", "hs"), ("stop", "stp"), ("queue", "q")],
    "reverse-upper": [("stop", "POTS"), ("abc", "CBA")],
    "devowel-reverse": [("stop", "pts"), ("house", "sh"), ("banana", "nnb")],
    "shift": [("abc", "bcd"), ("yaks", "zblt"), ("zoo", "app")],
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


def test_a_bare_input_never_ends_a_template_of_the_skill_pretraining_draws_most():
    """Else it reads as that skill's instruction cut short, and the base guesses that skill: a base whose
    "Sort the letters of '{x}': " ended in the bare form, with sorting drawn most, sorted 15 % of bare inputs."""
    weights = PretrainConfig().task_weights
    most = max(STRING_SKILLS, key=weights.get)
    assert not [t for t in TEMPLATES[most] if t.endswith(BARE_TEMPLATE)], most
    assert [s for s in STRING_SKILLS if any(t.endswith(BARE_TEMPLATE) for t in TEMPLATES[s])]  # text init still reads


def test_no_pretraining_example_begins_with_the_bare_format():
    import re

    texts = pretraining_texts()
    assert len(texts) > 500
    bare = re.compile(re.escape(BARE_TEMPLATE).replace(re.escape("{x}"), "[^']*"))
    assert not [t for t in texts if bare.match(t)]
    for task in PRETRAIN_TASKS:  # and no template could produce one, whatever the input
        for template in TEMPLATES[task]:
            assert not template.format(x="abc").startswith(BARE_TEMPLATE.format(x="abc"))


# ---------------------------------------------------------------------------- no free points


@pytest.mark.parametrize("task", DOWNSTREAM_TASKS)
def test_no_downstream_item_is_answered_by_copying_or_by_a_wrong_skill(task):
    """In every split, the answer is neither the input nor any other pretrained skill's answer on it;
    so the copy baseline is 0 (at most 5 % is the promise)."""
    skill = skill_of(task)
    for split in splits_of(task):
        exs = examples(task, split, 300)
        assert copy_baseline(exs) == 0 <= 0.05
        for ex in exs:
            wrong = {ex.x} | {solve(t, ex.x) for t in STRING_SKILLS if t != skill}
            assert ex.answer not in wrong, (split, ex)
            if not uses_lexicon(task):  # a vowel and a consonant: devowel changes it, leaving something
                assert set(ex.x) & VOWELS and set(ex.x) - VOWELS, ex


@pytest.mark.parametrize("task", PRETRAIN_TASKS)
def test_pretraining_items_are_not_answered_by_copying_either(task):
    for split in SPLITS:
        assert copy_baseline(examples(task, split, 300)) == 0


@pytest.mark.parametrize("x, rejected_by", [
    ("abcba", {"reverse", "bare-reverse", "reverse-upper"}),  # a palindrome: reversing is copying
    ("abst", {"sort", "bare-sort"}),  # already sorted
    ("tsba", {"reverse", "bare-reverse", "sort", "bare-sort"}),  # reversed is sorted: one skill for the other
    ("abab", {"devowel-reverse"}),  # devowelled 'bb' is a palindrome: the chain answers like devowel
    ("bcdf", set(RANDOM_STRING_TASKS)),  # no vowel: devowel would copy
    ("aeio", set(RANDOM_STRING_TASKS)),  # no consonant: devowel would leave nothing
])
def test_unfair_inputs_are_rejected_for_the_tasks_they_would_give_away(x, rejected_by):
    for task in RANDOM_STRING_TASKS:
        for split in SPLITS + ("long",):
            if task in rejected_by:
                assert not _fair(task, x, split), (task, x)


def test_no_translation_is_a_string_skill_of_its_word():
    for w, g in LEXICON:
        assert g not in {w} | {solve(t, w) for t in STRING_SKILLS}, w


# ---------------------------------------------------------------------------- never seen in pretraining


@given(lowercase_strings)
def test_every_string_skill_keeps_the_split_key(s):
    """A string, its reversal, sorted form, upper case and devowelled form (and the chains of them) share
    one key, so one split: a pretraining answer is in its input's split. Strings with one devowelled form
    share a key too (the key is a function of the devowelled form)."""
    for skill in STRING_SKILLS + ("reverse-upper", "devowel-reverse"):
        assert split_key(solve(skill, s)) == split_key(s), skill
    assert split_key(s) == "".join(sorted(solve("devowel", s)))
    assert _bucket(s) == _bucket(s.upper()) == _bucket(s[::-1])


def test_every_lexicon_word_has_a_key_no_random_string_is_drawn_from():
    for pair in LEXICON:
        for word in pair:
            assert _bucket(word) == "lexicon", word
    assert all(_bucket(ex.x) != "lexicon" for t in RANDOM_STRING_TASKS for ex in examples(t, "train", 100))


@given(lowercase_strings, st.sampled_from(RANDOM_STRING_TASKS), st.sampled_from(SPLITS + ("long",)))
def test_a_fair_item_shows_only_strings_of_its_own_split(x, task, split):
    """What _fair accepts (every random-string input of every task and split passes it) has its input's
    and its answer's key in the item's split ("long": test keys)."""
    if _fair(task, x, split):
        bucket = "test" if split == "long" else split
        assert _bucket(x) == _bucket(solve(skill_of(task), x)) == bucket


def test_no_held_out_input_or_answer_can_occur_in_pretraining_by_construction():
    """The proof, in four checked steps. (1) Every pretraining random-string input has a train key (it
    passed _fair for "train"; checked on samples here and for any string above). (2) Every pretraining
    answer to one has the same key (test_every_string_skill_keeps_the_split_key), so a train key.
    (3) Every other pretraining input or answer is a lexicon word, whose key is reserved ("lexicon").
    (4) Every dev, test or long input and answer of a downstream random-string task has a dev or test
    key. Equal strings have equal keys, so no held-out string is a pretraining string."""
    rng = random.Random(0)
    for task in PRETRAIN_TASKS:  # (1) and (3)
        for _ in range(300):
            ex = sample_example(task, "train", rng)
            shown = {ex.x, ex.answer}
            assert {_bucket(s) for s in shown} <= ({"lexicon"} if uses_lexicon(task) else {"train"}), ex
    for task in DOWNSTREAM_STRING_TASKS:  # (4)
        for split in HELD_OUT:
            for ex in examples(task, split, 300):
                assert {_bucket(ex.x), _bucket(ex.answer)} <= {"dev", "test"}, ex


@pytest.mark.slow
def test_no_held_out_input_or_answer_occurs_in_one_pretraining_run():
    """Sampled, as pretraining samples: one shipped run's worth of characters (steps x batch rows x
    block_size) of pretraining examples. None of their inputs and answers is a dev, test or long input or
    answer of a downstream random-string task; bare-translate's inputs are lexicon words, which pretraining
    must show (translation is knowledge), but never in its bare text."""
    cfg = PretrainConfig()
    tasks, weights = list(cfg.task_weights), list(cfg.task_weights.values())
    rng, shown, texts, chars = random.Random(0), set(), set(), 0
    while chars < cfg.steps * cfg.batch_size * cfg.model.block_size:
        ex = sample_example(rng.choices(tasks, weights)[0], "train", rng)  # as pretrain_batch draws them
        shown |= {ex.x, ex.answer}
        texts.add(ex.text)
        chars += len(ex.text) + 1  # + <eos>
    held = {s for t in DOWNSTREAM_STRING_TASKS for split in HELD_OUT for ex in examples(t, split, 300)
            for s in (ex.x, ex.answer)}
    assert len(shown) > 100_000 and len(held) > 10_000
    assert not shown & held
    bare = [ex.text for split in ("dev", "test") for ex in examples("bare-translate", split)]
    assert not texts & set(bare)


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
def test_random_string_splits_have_disjoint_inputs_and_keys(task):
    xs = {split: {ex.x for ex in examples(task, split, n=300)} for split in SPLITS + ("long",)}
    assert all(len(s) == 300 for s in xs.values())
    keys = {split: {split_key(x) for x in s} for split, s in xs.items()}
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test"), ("train", "long"), ("dev", "long")]:
        assert not xs[a] & xs[b] and not keys[a] & keys[b], (a, b)
    assert not xs["test"] & xs["long"]  # (same keys, other lengths)


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
    """Inputs drawn one at a time by sample_example come only from the asked-for split; a downstream train
    split (and every lexicon split) is the fixed set examples() returns."""
    rng = random.Random(0)
    splits = splits_of(task)
    drawn = {split: {sample_example(task, split, rng).x for _ in range(100)} for split in splits}
    for a in splits:
        for b in splits:
            assert a == b or {a, b} == {"test", "long"} or not drawn[a] & drawn[b], (a, b)
    if task in DOWNSTREAM_TASKS:
        for split in splits if uses_lexicon(task) else ("train",):
            assert drawn[split] <= {ex.x for ex in examples(task, split)}


def test_split_buckets_are_about_80_10_10():
    counts = {split: 0 for split in SPLITS}
    rng = random.Random(0)
    keys = {"".join(sorted(rng.choices("bcdfghjklmnpqrstvwxyz", k=rng.randint(3, 8)))) for _ in range(12000)}
    keys = sorted(k for k in keys if _bucket(k) != "lexicon")[:10000]
    for key in keys:
        counts[_bucket(key)] += 1
    assert 7800 <= counts["train"] <= 8200
    assert 800 <= counts["dev"] <= 1200
    assert 800 <= counts["test"] <= 1200


def test_each_draw_has_its_own_salt_and_a_cryptographic_hash():
    """Three draws (string split, word split, held-out templates), three blake2b personalizations: a
    key's place in one draw says nothing about its place in another (CRC32 salts differ by a fixed XOR)."""
    salts = (STRING_SALT, WORD_SALT, TEMPLATE_SALT)
    assert len(set(salts)) == 3 and all(len(s.encode()) <= 16 for s in salts)  # blake2b's person: 16 bytes
    words = [w for w, _ in LEXICON]
    for s1 in salts:
        for s2 in salts:
            if s1 < s2:  # XOR of two salts' hashes is not one fixed value, unlike CRC32's
                assert len({_hash(s1, w) ^ _hash(s2, w) for w in words}) == len(words)
                agree = sum(_hash(s1, w) % 2 == _hash(s2, w) % 2 for w in words)
                assert 0.4 < agree / len(words) < 0.6  # parities agree by chance, about half the time


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
    with pytest.raises(ValueError, match="pass n"):
        examples("bare-reverse", "test")
