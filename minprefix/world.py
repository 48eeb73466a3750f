"""The tiny world: a character tokenizer and a generated data set of instructions.

No data set can be downloaded here, so the project writes its own, deterministically.
Each example is an instruction prompt followed by its answer, e.g.
``Spell 'kram' backwards: `` -> ``mark``; the sequence the model sees is
prompt + answer + <eos>.

Pretraining tasks (each with several instruction templates; three classic hard prompts for
English to German are among those of ``translate``):

- ``translate``: an English word -> German, from the lexicon in ``lexicon.py``
- ``reverse``, ``uppercase``, ``sort`` (letters in alphabetical order), ``devowel``
  (drop a e i o u): on random lowercase strings

Downstream tasks, for prompt tuning, never seen in pretraining (tests check it):

- ``bare-<task>`` for each task above: the input alone, quoted as the templates quote it,
  ``'dog': `` -> ``Hund``. The base gets no instruction, so it cannot know which skill is
  wanted and does badly; a tuned prompt must supply the instruction (eliciting a skill).
- ``reverse-upper`` and ``devowel-reverse``: two pretrained skills chained, in the same bare
  format: ``'stop': `` -> ``POTS``, ``'stop': `` -> ``pts`` (combining skills). Inputs on
  which the chain answers like a single skill (a palindrome for reverse-upper) are left out.
- ``shift``: every letter one place along the alphabet, z wraps to a: ``'yak': `` -> ``zbl``.
  A skill the base never saw (learning a new skill). Petrov, Torr & Bibi (ICLR 2024) prove
  that soft prompts and prefixes can only bias the outputs of attention, so this is where
  they are expected to stop and fine-tuning is not.

Splits, and why they are what they are:

- Random-string inputs are split by a hash of the string: 80 % train, 10 % dev, 10 % test.
  Dev and test strings are never seen in pretraining nor in prompt tuning, so scores on
  them measure a skill, not memory.
- Translation is knowledge: a word the base never saw cannot be translated. So every
  lexicon word is in the pretraining train split, and what pretraining holds out are
  (word, template) pairs: of the five templates, each word has one held out for dev and
  another for test. The pretraining test asks for known words in unseen phrasings.
- The downstream translation tasks split the *words* exactly 80/10/10: the base knows
  all of them, and a tuned prompt is scored on words it never saw during tuning.
- Every split is its own draw: the word split and the held-out templates come from two
  differently salted hashes, so a downstream dev word is no likelier to have any one
  template held out than a test word.
"""

import random
import zlib
from dataclasses import dataclass

import torch

from .lexicon import LEXICON

SPECIAL_TOKENS = ("<pad>", "<eos>")
CHARACTERS = "".join(chr(i) for i in range(32, 127)) + "ÄÖÜäöüß"  # printable ASCII + German


class Tokenizer:
    """Characters <-> ids. Ids 0 and 1 are <pad> and <eos>; every other id is one character."""

    def __init__(self, characters: str = CHARACTERS):
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
        "Sort the letters of '{x}': ",
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
BARE_TEMPLATE = "'{x}': "  # the input as the templates quote it, no instruction
COMPOSED_TASKS = ("reverse-upper", "devowel-reverse")  # two pretrained skills chained
NEW_SKILL_TASKS = ("shift",)  # a skill pretraining never shows
DOWNSTREAM_TASKS = tuple(f"bare-{t}" for t in PRETRAIN_TASKS) + COMPOSED_TASKS + NEW_SKILL_TASKS
SPLITS = ("train", "dev", "test")
VOWELS = set("aeiou")
ENGLISH_TO_GERMAN = dict(LEXICON)


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


def _hash(salt: str, key: str) -> int:
    """CRC32 of salt/key: the same on every machine; each salt is an independent draw."""
    return zlib.crc32(f"{salt}/{key}".encode())


def _bucket(key: str) -> str:
    """Deterministic 80/10/10 split of a random string by its hash."""
    h = _hash("split", key) % 10
    return "test" if h == 0 else "dev" if h == 1 else "train"


def lexicon_words(split: str) -> list[str]:
    """The English words of one downstream translation split: exactly 80/10/10 of the lexicon.

    Words are ranked by their hash and cut into test (first 10 %), dev (next 10 %) and train.
    """
    ranked = sorted((w for w, _ in LEXICON), key=lambda w: _hash("split", w))
    n = len(ranked) // 10
    return {"test": ranked[:n], "dev": ranked[n : 2 * n], "train": ranked[2 * n :]}[split]


def _held_out_templates(word: str) -> tuple[int, int]:
    """The (dev, test) template indices held out for one lexicon word in pretraining.

    Its own salt: drawn independently of the word's downstream split.
    """
    n = len(TEMPLATES["translate"])
    h = _hash("held-out template", word)
    dev = h % n
    return dev, (dev + 1 + (h // n) % (n - 1)) % n


def copy_baseline(exs: list["Example"]) -> float:
    """Exact match of the trivial answer, the input itself: what copying alone would score."""
    return sum(ex.answer == ex.x for ex in exs) / max(1, len(exs))


def _random_string(rng: random.Random, split: str, task: str) -> str:
    """A random lowercase string of 3 to 7 letters from one split, fit for the task."""
    while True:
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 7)))
        if any(c not in VOWELS for c in s) and _bucket(s) == split and not _like_a_pretraining_task(task, s):
            return s  # (devowel must leave something)


def _like_a_pretraining_task(task: str, x: str) -> bool:
    """True if a downstream task's answer on x equals some pretraining skill's answer on x.

    Such an input (e.g. a palindrome for reverse-upper: 'abba' -> 'ABBA', as uppercase) is
    no test of the chained or new skill, so downstream tasks leave it out.
    """
    if task in PRETRAIN_TASKS or task.startswith("bare-"):
        return False
    answer = solve(skill_of(task), x)
    return any(answer == solve(t, x) for t in PRETRAIN_TASKS if not uses_lexicon(t))


def _check(task: str, split: str):
    if task not in PRETRAIN_TASKS + DOWNSTREAM_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(PRETRAIN_TASKS + DOWNSTREAM_TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def skill_of(task: str) -> str:
    return task.removeprefix("bare-")


def uses_lexicon(task: str) -> bool:
    return skill_of(task).startswith("translate")


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
            x = _random_string(rng, split, task)
            template = rng.choice(TEMPLATES[task])
    else:
        x = rng.choice(lexicon_words(split)) if uses_lexicon(task) else _random_string(rng, split, task)
        template = BARE_TEMPLATE
    return Example(task, x, template.format(x=x), solve(skill, x))


def examples(task: str, split: str, n: int | None = None, seed: int = 0) -> list[Example]:
    """A fixed list of n distinct examples of a task's split: the same for the same arguments.

    Lexicon tasks have finite splits (one pretraining test pair per lexicon word; a tenth of
    the words in a downstream dev or test split): n caps them, and n=None returns all of one.
    """
    _check(task, split)
    if uses_lexicon(task):
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
            out = [Example(task, w, BARE_TEMPLATE.format(x=w), solve(skill_of(task), w)) for w in lexicon_words(split)]
        random.Random(seed).shuffle(out)
        return out if n is None else out[:n]
    if n is None:
        raise ValueError(f"task {task!r} has unbounded inputs: pass n")
    rng, seen, out = random.Random(f"{task}/{split}/{seed}"), set(), []
    while len(out) < n:
        ex = sample_example(task, split, rng)
        if ex.x not in seen:
            seen.add(ex.x)
            out.append(ex)
    return out


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
