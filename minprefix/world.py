"""The tiny world: a character tokenizer and a generated data set of instructions.

No data set can be downloaded here, so the project writes its own, deterministically.
Each example is an instruction prompt followed by its answer, e.g.
``Spell 'kram' backwards: `` -> ``mark``; the sequence the model sees is
prompt + answer + <eos>.

Pretraining tasks (each with several instruction templates; three classic hard prompts for
English to German are among those of ``translate``):

- ``translate``: an English word -> German, from the lexicon in ``lexicon.py``
- ``reverse``, ``uppercase``, ``sort`` (letters in alphabetical order), ``devowel``
  (drop a e i o u): on random lowercase strings of 4 to 7 letters

Downstream tasks, for prompt tuning, never seen in pretraining (tests check it), on strings of
4 to 7 letters (and 8 to 10 in the ``long`` split):

- ``bare-<task>`` for each task above: the input alone, quoted as the templates quote it,
  ``'dog': `` -> ``Hund``. The base gets no instruction, so it cannot know which skill is
  wanted and does badly; a tuned prompt must supply the instruction (eliciting a skill).
- ``reverse-upper`` and ``devowel-reverse``: two pretrained skills chained, in the same bare
  format: ``'stop': `` -> ``POTS``, ``'stop': `` -> ``pts`` (combining skills).
- ``shift``: every letter one place along the alphabet, z wraps to a: ``'yaks': `` -> ``zblt``.
  A skill the base never saw (learning a new skill). Petrov, Torr & Bibi (ICLR 2024) prove
  that soft prompts and prefixes can only bias the outputs of attention, so this is where
  they are expected to stop and fine-tuning is not.

No free points: every random string has a vowel and a consonant, and an item is left out when
its answer equals the input or another skill's answer on it (a palindrome for reverse, a sorted
string for sort): copying or a wrong skill never scores. This holds for every task and split.

Splits, and why they are what they are:

- A random string's split is decided by its *key*, its consonants in sorted order: 80 % of keys
  are train, 10 % dev, 10 % test. A string, its reversal, its sorted form, its upper case and its
  devowelled form share one key, and so does every string whose devowelled form is the same. So
  every pretraining input and answer has a train key, and no dev or test input, nor the answer to
  one, can occur in pretraining. (Keys of lexicon words, English or German, are never drawn: a
  random string is never a word that translation shows. ``shift`` changes the key, so its items
  are kept only where the answer's key is in the item's split too.)
- ``long``: strings of 8 to 10 letters with test keys, for every random-string task: longer than
  any string pretraining or tuning shows (both 4 to 7 letters), to show how far a skill carries
  past the lengths it was learned on. Pretraining stays at 4 to 7 letters because longer strings
  made the base far slower to learn (it must pretrain in minutes on a CPU; measured, 1,400 steps
  reversed 56 % of test strings of 4 to 10 letters and 83 % of 4 to 7 letters). The test keys are
  still needed: a long string's devowelled form can be as short as a pretraining answer.
- Tuning sets are one size: every downstream task's train split is ``TUNE_TRAIN_SIZE`` distinct
  items, a fixed draw for random strings and the train words for ``bare-translate``, so no task
  tunes on more examples than another (``examples`` with a larger n returns them all).
- Translation is knowledge: a word the base never saw cannot be translated. So every
  lexicon word is in the pretraining train split, and what pretraining holds out are
  (word, template) pairs: of the five templates, each word has one held out for dev and
  another for test. The pretraining test asks for known words in unseen phrasings.
- The downstream translation tasks split the *words*: ``TUNE_TRAIN_SIZE`` for train, the rest
  halved between test and dev. The base knows all of them, and a tuned prompt is scored on words
  it never saw during tuning.
- Every split is its own draw: the string split, the word split and the held-out templates
  each come from blake2b with its own personalization, so no split predicts another (a
  downstream dev word is no likelier to have any one template held out than a test word).
"""

import functools
import hashlib
import random
from dataclasses import dataclass

import torch

from .lexicon import LEXICON

SPECIAL_TOKENS = ("<pad>", "<eos>")
CHARACTERS = "".join(chr(i) for i in range(32, 127)) + "ÄÖÜäöüß"  # printable ASCII + German


class Tokenizer:
    """Characters <-> ids. Ids 0 and 1 are <pad> and <eos>; every other id is one character."""

    def __init__(self, characters: str = CHARACTERS):
        self.characters = characters
        self.itos = list(SPECIAL_TOKENS) + list(characters)
        self.stoi = {ch: i for i, ch in enumerate(characters, start=len(SPECIAL_TOKENS))}
        self.pad_id, self.eos_id = 0, 1

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        ids = []
        for pos, ch in enumerate(text):
            if ch not in self.stoi:
                raise ValueError(
                    f"unknown character {ch!r} (U+{ord(ch):04X}) at position {pos} of {text!r}; "
                    "the vocabulary is printable ASCII plus ÄÖÜäöüß"
                )
            ids.append(self.stoi[ch])
        return ids

    def decode(self, ids) -> str:
        """Text of ids; stops at the first <eos>, skips <pad>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.pad_id:
                out.append(self.itos[i])
        return "".join(out)


def check_tokenizer(tok: Tokenizer, model) -> None:
    """A model is only ever fed ids of the tokenizer it was trained with: another one (the same characters in
    another order, say) would train and score on wrong ids without a word."""
    known = getattr(getattr(model, "base", model), "characters", None)  # a prompted model's base knows
    if known is not None and tok.characters != known:
        raise ValueError(f"this tokenizer's characters ({tok.characters[:12]!r}...) are not those the base was "
                         f"trained with ({known[:12]!r}...): use the tokenizer load_base returned with it")


# ---------------------------------------------------------------------------- tasks

TEMPLATES = {
    "translate": (
        "Translate the English sentence '{x}' into German: ",  # three classic hard prompts first
        "English: '{x}' | German: ",
        "From English to German: '{x}' -> ",
        "What is '{x}' in German? ",
        "The German word for '{x}' is ",
    ),
    "reverse": (
        "Reverse the word '{x}': ",
        "Spell '{x}' backwards: ",
        "'{x}' read from right to left is ",
    ),
    "uppercase": (
        "Write '{x}' in capital letters: ",
        "Uppercase of '{x}': ",
        "'{x}' in upper case is ",
    ),
    "sort": (
        "Sort the letters of '{x}' alphabetically: ",  # not "...of '{x}': ": see BARE_TEMPLATE
        "Put the letters of '{x}' in alphabetical order: ",
        "'{x}' with its letters sorted is ",
    ),
    "devowel": (
        "Remove the vowels from '{x}': ",
        "Delete every vowel in '{x}': ",
        "'{x}' without vowels is ",
    ),
}
PRETRAIN_TASKS = tuple(TEMPLATES)
# The input as the templates quote it, with no instruction. It ends one template of reverse, uppercase and
# devowel, so that a soft prompt started from the text "Reverse the word " reads as that template; it ends
# none of sort's. Sorting is the string skill pretraining draws most (it needs the most practice), and a
# bare input that could be the end of its template became the base's guess: a base whose sort template
# ended so sorted 15 % of bare strings (4 % with sorting drawn no more than the others, but then it
# sorted only 94.5 % of test strings from its templates).
BARE_TEMPLATE = "'{x}': "
COMPOSED_TASKS = ("reverse-upper", "devowel-reverse")  # two pretrained skills chained
NEW_SKILL_TASKS = ("shift",)  # a skill pretraining never shows
DOWNSTREAM_TASKS = tuple(f"bare-{t}" for t in PRETRAIN_TASKS) + COMPOSED_TASKS + NEW_SKILL_TASKS
COMPOSED_TEMPLATES = {  # hand-written instructions the base never saw (for text init and the template row)
    "reverse-upper": ("Reverse '{x}' in capital letters: ", "Spell '{x}' backwards in upper case: "),
    "devowel-reverse": ("Remove the vowels from '{x}' and reverse it: ", "Spell '{x}' backwards without vowels: "),
    "shift": ("Move each letter of '{x}' one place along the alphabet: ",),
}
SPLITS = ("train", "dev", "test")  # every task; random-string tasks also have "long"
LONG = "long"  # the split of strings longer than any trained on (test keys)
STRING_SKILLS = ("reverse", "uppercase", "sort", "devowel")  # the pretrained skills on random strings
LETTERS = "abcdefghijklmnopqrstuvwxyz"
VOWELS = set("aeiou")
PRETRAIN_LENGTHS = (4, 7)  # letters of pretraining strings, every split
TUNE_LENGTHS = (4, 7)  # letters of downstream train, dev and test strings
LONG_LENGTHS = (8, 10)  # letters of "long" strings: longer than any pretraining or tuning string
TUNE_TRAIN_SIZE = 320  # distinct train items of every downstream task (the bare-translate train words)
ENGLISH_TO_GERMAN = dict(LEXICON)


def hand_templates(task: str) -> tuple[str, ...]:
    """The hand-written instruction templates of a downstream task: its skill's own for a bare task."""
    return TEMPLATES[task.removeprefix("bare-")] if task.startswith("bare-") else COMPOSED_TEMPLATES[task]


def instruction(task: str) -> str:
    """The task's first hand-written template without its input: the text of text init."""
    return " ".join(hand_templates(task)[0].replace("'{x}'", "").split())


def solve(skill: str, x: str) -> str:
    """The answer of one skill (or a chain 'a-b' of two) on input x."""
    if "-" in skill:
        first, second = skill.split("-")
        return solve(second, solve(first, x))
    return {
        "translate": lambda: ENGLISH_TO_GERMAN[x],
        "reverse": lambda: x[::-1],
        "uppercase": lambda: x.upper(),
        "upper": lambda: x.upper(),
        "sort": lambda: "".join(sorted(x)),
        "devowel": lambda: "".join(c for c in x if c not in VOWELS),
        "shift": lambda: "".join(chr((ord(c) - ord("a") + 1) % 26 + ord("a")) for c in x),
    }[skill]()


@dataclass(frozen=True)
class Example:
    task: str
    x: str
    prompt: str
    answer: str

    @property
    def text(self) -> str:
        return self.prompt + self.answer


# ---------------------------------------------------------------------------- splits

STRING_SALT, WORD_SALT, TEMPLATE_SALT = "string split", "word split", "held-out phrase"  # one per draw


def _hash(salt: str, key: str) -> int:
    """blake2b of key personalized by salt, as a 64-bit number: the same on every machine, and each
    salt an independent draw (no fixed relation between two salts' values, unlike CRC32's XOR)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8, person=salt.encode()).digest(), "big")


def split_key(s: str) -> str:
    """What decides a random string's split: its consonants, lowercase, in sorted order.

    The same for s, its reversal, its sorted form, its upper case and its devowelled form, and for
    every string with the same devowelled form: each pretraining answer has its input's key.
    """
    return "".join(sorted(c for c in s.lower() if c not in VOWELS))


_LEXICON_KEYS = frozenset(split_key(w) for pair in LEXICON for w in pair)


def _bucket(s: str) -> str:
    """The split of a random string: 80/10/10 train/dev/test by the hash of its key, or "lexicon"
    where a lexicon word (English or German) has the same key: such strings are never drawn."""
    key = split_key(s)
    if key in _LEXICON_KEYS:
        return "lexicon"
    h = _hash(STRING_SALT, key) % 10
    return "test" if h == 0 else "dev" if h == 1 else "train"


def lexicon_words(split: str) -> list[str]:
    """The English words of one downstream translation split: TUNE_TRAIN_SIZE for train, the rest
    halved between test and dev (dev gets the odd one). Words are ranked by their own hash."""
    return list(_word_splits()[split])


@functools.cache
def _word_splits() -> dict[str, tuple[str, ...]]:
    ranked = sorted((w for w, _ in LEXICON), key=lambda w: _hash(WORD_SALT, w))
    n_test, n_train = (len(ranked) - TUNE_TRAIN_SIZE) // 2, TUNE_TRAIN_SIZE
    return {"test": tuple(ranked[:n_test]), "dev": tuple(ranked[n_test:-n_train]), "train": tuple(ranked[-n_train:])}


def _held_out_templates(word: str) -> tuple[int, int]:
    """The (dev, test) template indices held out for one lexicon word in pretraining, two different ones.

    Its own salt: drawn independently of the word's downstream split.
    """
    n = len(TEMPLATES["translate"])
    h = _hash(TEMPLATE_SALT, word)
    dev = h % n
    return dev, (dev + 1 + (h // n) % (n - 1)) % n


def copy_baseline(exs: list["Example"]) -> float:
    """Exact match of the trivial answer, the input itself: what copying alone would score."""
    return sum(ex.answer == ex.x for ex in exs) / max(1, len(exs))


def _fair(task: str, x: str, split: str) -> bool:
    """True if x makes a fair item of a random-string task in a split.

    x has a vowel and a consonant (devowel changes it and leaves something); the answer is neither x
    nor any other pretrained skill's answer on x (no palindrome for reverse, no sorted string for
    sort); the answer's key is in x's split (true by construction except for shift).
    """
    letters = set(x)
    if not (letters & VOWELS and letters - VOWELS) or _bucket(x) != (split if split != LONG else "test"):
        return False  # (the cheap tests first: most random strings fail one)
    skill = skill_of(task)
    answer = solve(skill, x)
    wrong = {x} | {solve(t, x) for t in STRING_SKILLS if t != skill}
    return answer not in wrong and _bucket(answer) == _bucket(x)


def _random_string(rng: random.Random, task: str, split: str) -> str:
    """A random lowercase string of a task's split: its length uniform in the split's range, its key in
    the split (test keys for "long"), fair for the task."""
    lo, hi = LONG_LENGTHS if split == LONG else PRETRAIN_LENGTHS if task in PRETRAIN_TASKS else TUNE_LENGTHS
    n = rng.randint(lo, hi)
    while True:
        s = "".join(rng.choices(LETTERS, k=n))
        if _fair(task, s, split):
            return s


@functools.cache
def _train_pool(task: str) -> tuple[str, ...]:
    """The TUNE_TRAIN_SIZE distinct train inputs of a downstream random-string task: one fixed draw."""
    rng, pool = random.Random(f"{task}/train pool"), {}
    while len(pool) < TUNE_TRAIN_SIZE:
        pool.setdefault(_random_string(rng, task, "train"), None)
    return tuple(pool)


def _check(task: str, split: str):
    if task not in PRETRAIN_TASKS + DOWNSTREAM_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(PRETRAIN_TASKS + DOWNSTREAM_TASKS)}")
    if split == LONG and uses_lexicon(task):
        raise ValueError(f"task {task!r} has no split 'long': only random-string tasks have longer inputs")
    if split not in SPLITS + (LONG,):
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)} (or long, random strings only)")


def skill_of(task: str) -> str:
    return task.removeprefix("bare-")


def uses_lexicon(task: str) -> bool:
    return skill_of(task).startswith("translate")


def train_size(task: str) -> int | None:
    """How many distinct train items a task has: TUNE_TRAIN_SIZE for every downstream task, the
    (word, template) pairs for pretraining translate, None (unbounded) for pretraining random strings."""
    _check(task, "train")
    if task in DOWNSTREAM_TASKS:
        return TUNE_TRAIN_SIZE
    return len(LEXICON) * (len(TEMPLATES[task]) - 2) if uses_lexicon(task) else None


def sample_example(task: str, split: str, rng: random.Random) -> Example:
    """One random example of a task from a split (templates drawn at random)."""
    _check(task, split)
    skill = skill_of(task)
    if task in PRETRAIN_TASKS:
        if uses_lexicon(task):
            x = rng.choice(LEXICON)[0]
            held = _held_out_templates(x)
            allowed = {"dev": [held[0]], "test": [held[1]]}.get(split)
            allowed = allowed or [i for i in range(len(TEMPLATES[task])) if i not in held]
            template = TEMPLATES[task][rng.choice(allowed)]
        else:
            x = _random_string(rng, task, split)
            template = rng.choice(TEMPLATES[task])
    else:
        if uses_lexicon(task):
            x = rng.choice(lexicon_words(split))
        else:  # a downstream train split is its fixed pool
            x = rng.choice(_train_pool(task)) if split == "train" else _random_string(rng, task, split)
        template = BARE_TEMPLATE
    return Example(task, x, template.format(x=x), solve(skill, x))


def examples(task: str, split: str, n: int | None = None, seed: int = 0) -> list[Example]:
    """A fixed list of n distinct examples of a task's split: the same for the same arguments.

    Finite splits (every downstream train split, TUNE_TRAIN_SIZE items; lexicon splits: one
    pretraining test pair per lexicon word, the downstream dev and test words) are shuffled by seed
    and cut to n: n=None returns all of one. Other splits are unbounded: pass n.
    """
    _check(task, split)
    bare = BARE_TEMPLATE
    if task in DOWNSTREAM_TASKS and split == "train" and not uses_lexicon(task):
        out = [Example(task, x, bare.format(x=x), solve(skill_of(task), x)) for x in _train_pool(task)]
    elif uses_lexicon(task):
        if task in PRETRAIN_TASKS and split != "train":
            which = 0 if split == "dev" else 1
            out = [
                Example(task, w, TEMPLATES[task][_held_out_templates(w)[which]].format(x=w), g)
                for w, g in LEXICON
            ]
        elif task in PRETRAIN_TASKS:
            out = [
                Example(task, w, t.format(x=w), g)
                for w, g in LEXICON
                for i, t in enumerate(TEMPLATES[task])
                if i not in _held_out_templates(w)
            ]
        else:
            out = [Example(task, w, bare.format(x=w), solve(skill_of(task), w)) for w in lexicon_words(split)]
    else:
        if n is None:
            raise ValueError(f"task {task!r} has unbounded inputs in split {split!r}: pass n")
        rng, seen, out = random.Random(f"{task}/{split}/{seed}"), set(), []
        while len(out) < n:
            ex = sample_example(task, split, rng)
            if ex.x not in seen:
                seen.add(ex.x)
                out.append(ex)
        return out
    random.Random(seed).shuffle(out)
    return out if n is None else out[:n]


# ---------------------------------------------------------------------------- batches


def encode_example(tok: Tokenizer, ex: Example) -> tuple[list[int], int]:
    """Ids of prompt + answer + <eos>, and the number of prompt ids."""
    prompt = tok.encode(ex.prompt)
    return prompt + tok.encode(ex.answer) + [tok.eos_id], len(prompt)


def answer_batch(tok: Tokenizer, exs: list[Example], device="cpu", whole_text: bool = False):
    """(idx, targets), each (B, T), right-padded, for tuning: only answer tokens are scored.

    targets[b, t] is the id that should follow idx[b, :t+1], or -1 where nothing is scored
    (inside the prompt, and padding). whole_text=True scores the prompt too (pretraining's loss).
    """
    if not exs:
        raise ValueError("answer_batch needs at least one example")
    rows = [encode_example(tok, ex) for ex in exs]
    T = max(len(ids) for ids, _ in rows) - 1
    idx = torch.full((len(rows), T), tok.pad_id, dtype=torch.long)
    targets = torch.full((len(rows), T), -1, dtype=torch.long)
    for b, (ids, n_prompt) in enumerate(rows):
        ids = torch.tensor(ids)
        idx[b, : len(ids) - 1] = ids[:-1]
        start = 1 if whole_text else n_prompt
        targets[b, start - 1 : len(ids) - 1] = ids[start:]
    return idx.to(device), targets.to(device)


def pretrain_batch(tok: Tokenizer, rng: random.Random, batch_size: int, block_size: int,
                   weights: dict[str, float] | None = None, device="cpu"):
    """(idx, targets), each (B, block_size), for pretraining: the loss is on the whole text.

    Each row packs examples of random tasks back to back, each ending in <eos>, so examples
    start at position 0 and at later positions (where prompts and prefixes will put them).
    """
    weights = weights or {t: 1.0 for t in PRETRAIN_TASKS}
    tasks, w = list(weights), list(weights.values())
    rows = []
    for _ in range(batch_size):
        ids = []
        while len(ids) < block_size + 1:
            ids += encode_example(tok, sample_example(rng.choices(tasks, w)[0], "train", rng))[0]
        rows.append(ids[: block_size + 1])
    data = torch.tensor(rows, dtype=torch.long)
    return data[:, :-1].to(device), data[:, 1:].to(device)
