"""What every lesson does first, its exercise list, and the reference solutions, shown only when asked for."""

import ast
import importlib
import inspect
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from ..base import load_base
from ..model import pick_device

SOLUTIONS = {  # exercise -> the library code that solves it (the reference the checks run without --learner)
    "1.1": ["minprefix.model:attention_mask"],
    "1.2": ["minprefix.params:base_params"],
    "2.1": ["minprefix.scoring:exact_match"],
    "2.2": ["minprefix.hard_prompt:rank_candidates"],
    "3.1": ["minprefix.soft_prompt:SoftPromptEmbedding", "minprefix.soft_prompt:SoftPromptGPT.forward"],
    "3.2": ["minprefix.bank:PromptBank.forward"],
    "3.3": ["minprefix.train:make_optimizer", "minprefix.train:train_loop", "minprefix.train:train_step"],
    "4.1": ["minprefix.prefix:PrefixBlock", "minprefix.model:CausalSelfAttention.forward", "minprefix.model:extend"],
    "4.2": ["minprefix.prefix:rows_to_kv"],
    "4.3": ["minprefix.prefix:PrefixGPT.as_cache"],
    "5.1": ["minprefix.prompted:MLPPrefix"],
    "5.2": ["minprefix.prefix:PrefixGPT.merge"],
    "6.1": ["minprefix.scoring:wilson_interval"],
    "6.2": ["minprefix.lab.sweep:pick_learning_rate"],
}


def setup(threads: int | None = 1, seed: int = 0):
    """A lesson's first cell: the thread count and a seed (the committed numbers depend on both), the
    shipped base, and one line that says what ran. threads=None keeps torch's default. Returns (base, tok,
    quick); quick is MINPREFIX_QUICK=1 (CI's shortened runs: every cell still runs, the numbers mean little)."""
    if threads is not None:  # tiny tensors: one thread loses little, and a busy machine's other core stays free
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    quick = os.environ.get("MINPREFIX_QUICK") == "1"
    base, tok = load_base()  # frozen, in eval mode, with its character tokenizer
    try:
        ours = version("minprefix")
    except PackageNotFoundError:
        ours = "from the source tree"
    c = base.config
    print(f"Python {platform.python_version()}, torch {torch.__version__}, minprefix {ours}, {torch.get_num_threads()} "
          f"thread(s), pick_device() {pick_device()}; base {base.num_params():,} parameters, "
          f"{c.n_layer} blocks, d_model {c.d_model}; {'QUICK mode' if quick else 'full mode'}")
    return base, tok, quick


def source(name: str) -> str:
    """The code of "module:Qualified.name"."""
    module, qualname = name.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return inspect.getsource(obj)


def solution(exercise: str) -> None:
    """Print the library's solution of an exercise ("3.1"). Call it once your own attempt passes its check."""
    if exercise not in SOLUTIONS:
        raise KeyError(f"no exercise {exercise!r}; there are {', '.join(SOLUTIONS)}")
    for name in SOLUTIONS[exercise]:
        print(f"# {name}\n{source(name)}")


def exercises(lesson: int, folder: str = "exercises") -> None:
    """List a lesson's exercises from exercises/lessonN.py (read, never run; the lessons run in lessons/)
    and count those of every lesson."""
    def listed(path):
        tree = ast.parse(path.read_text())
        return [(f.name, ast.get_docstring(f)) for f in tree.body if isinstance(f, (ast.FunctionDef, ast.ClassDef))
                and (ast.get_docstring(f) or "").startswith("Exercise")]

    for name, doc in listed(Path(folder) / f"lesson{lesson}.py"):
        reread = doc[doc.index("Reread:"):].split("\n")[0] if "Reread:" in doc else ""
        print(f"{doc.splitlines()[0]}\n    def {name}(...)    {reread}")
    print(f"\nexercises in all the lessons: {sum(len(listed(p)) for p in sorted(Path(folder).glob('lesson*.py')))}")
