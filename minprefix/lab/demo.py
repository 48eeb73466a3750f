"""`minprefix demo`: every kind of prompt on the shipped base, side by side, in a few minutes.

1. Hard prompts: three English-to-German templates (and the bare input) scored on the base,
   no training.
2. A bare task (the input alone, no instruction) and a composed one (two skills chained,
   never seen in pretraining): the base does badly on both. A soft prompt, a prefix with
   the reparameterization MLP, a direct prefix, and full fine-tuning as the reference, each
   trained with the same loop. A table of trainable and stored parameters against dev
   exact match, and a figure of the dev curves.
"""

import time

from .figures import close, plot_curves
from .grid import GRID_STEPS
from ..hard_prompt import score_templates
from ..methods import FULL, METHODS, PREFIX, PREFIX_MLP, SOFT
from ..params import count_stored, count_trainable
from ..scoring import percent, score, table
from ..tune import TuneConfig, tune
from ..world import BARE_TEMPLATE, TEMPLATES, examples

DEMO_TASKS = ("bare-reverse", "reverse-upper")
DEMO_METHODS = tuple(m.name for m in (FULL, SOFT, PREFIX_MLP, PREFIX))


DEMO_STEPS = GRID_STEPS  # one budget for all: the default of full, soft and prefix-mlp (prefix: 1,600)


def run_demo(base_and_tok, device="cpu", figure="figures/demo.png", steps=DEMO_STEPS, tasks=DEMO_TASKS,
             methods=DEMO_METHODS, progress=True):
    base, tok = base_and_tok
    t0 = time.time()
    n_base = base.num_params()
    print(f"base: {n_base:,} parameters, frozen\n")

    dev = examples("bare-translate", "dev")
    print(f"1. hard prompts, no training: English -> German on {len(dev)} dev words")
    for r in score_templates(base, tok, dev, list(TEMPLATES["translate"][:3]) + [BARE_TEMPLATE]):
        print(f"   {percent(r['exact_match'], r['n']):>16}  answer loss {r['loss']:.3f}   {r['template']!r}")

    print("\n2. tuning on tasks whose prompt holds no instruction, only the input:")
    for task in tasks:
        ex = examples(task, "train", 1)[0]
        print(f"   {task}: {ex.prompt!r} -> {ex.answer!r}")
    rows, curves = [], {task: {} for task in tasks}
    for method in methods:
        row = {"method": method}
        for task in tasks:
            cfg = TuneConfig(method=method, task=task, steps=steps, prompt_len=10)
            model, history = tune(base, tok, cfg, device=device, progress=progress)
            curves[task][method] = history
            row[task] = max(h["dev_exact_match"] for h in history)
        row.update(trainable=count_trainable(model), stored=count_stored(model))
        rows.append(row)
    base_dev = {task: score(base, tok, examples(task, "dev", 200))["exact_match"]
                for task in tasks}
    header = ["method", "trainable", "share of base", "stored"] + [f"{t} dev exact match" for t in tasks]
    body = [["base, no tuning", 0, "0 %", 0] + [percent(base_dev[t]) for t in tasks]]
    body += [[f"{METHODS[r['method']].label} (`{r['method']}`)", f"{r['trainable']:,}",
              f"{100 * r['trainable'] / n_base:.2f} %", f"{r['stored']:,}"] + [percent(r[t]) for t in tasks]
             for r in rows]
    print("\n" + table(header, body))
    labels = {m: METHODS[m].label for m in methods}
    title = "the frozen base wearing each method (full fine-tuning: every weight trains)"
    close(plot_curves(curves, figure, steps, labels, title))
    print(f"\nfigure: {figure}   ({time.time() - t0:.0f} s in all, {steps} steps per run)")
    return rows
