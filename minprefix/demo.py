"""`minprefix demo`: every kind of prompt on the shipped base, side by side, in a few minutes.

1. Hard prompts: the seed's three English-to-German templates (and the bare input) scored
   on the base, no training.
2. A bare task (the input alone, no instruction): the base does badly; a soft prompt, a
   prefix (with the reparameterization MLP), and full fine-tuning as the reference, each
   trained with the same loop. A table of trainable and stored parameters against dev and
   test exact match, and a figure of the dev curves.
"""

import time
from pathlib import Path

from .hard_prompt import score_templates
from .params import count_stored, count_trainable
from .train import TuneConfig, score, tune
from .world import TEMPLATES, examples

DEMO_TASK = "bare-reverse"
DEMO_METHODS = ("full", "soft", "prefix", "prefix-direct")


def run_demo(base_and_tok, device="cpu", figure="figures/demo.png", steps=300, task=DEMO_TASK, progress=True):
    base, tok = base_and_tok
    t0 = time.time()
    n_base = base.num_params()
    print(f"base: {n_base:,} parameters, frozen\n")

    dev = examples("bare-translate", "dev")
    print(f"1. hard prompts, no training: English -> German on {len(dev)} dev words")
    for r in score_templates(base, tok, dev, list(TEMPLATES["translate"][:3]) + ["{x}="]):
        print(f"   {100 * r['exact_match']:5.1f} %  answer loss {r['loss']:.3f}   {r['template']!r}")

    print(f"\n2. tuning on {task} ({examples(task, 'train', 1)[0].text!r}: the input alone, no instruction)")
    test = examples(task, "test", 200)
    rows, curves = [], {}
    for method in DEMO_METHODS:
        cfg = TuneConfig(method=method, task=task, steps=steps, prompt_len=10)
        model, history = tune(base, tok, cfg, device=device, progress=progress)
        curves[method] = history
        rows.append({
            "method": method,
            "trainable": count_trainable(model),
            "share": count_trainable(model) / n_base,
            "stored": count_stored(model),
            "dev": max(h["dev_exact_match"] for h in history),
            "test": score(model, tok, test)["exact_match"],
        })
    base_test = score(base, tok, test)["exact_match"]
    print("\n| method | trainable | share of base | stored | dev exact match | test exact match |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| base, no tuning | 0 | 0 % | 0 | - | {100 * base_test:.1f} % |")
    for r in rows:
        print(f"| {r['method']} | {r['trainable']:,} | {100 * r['share']:.2f} % | {r['stored']:,} | "
              f"{100 * r['dev']:.1f} % | {100 * r['test']:.1f} % |")
    plot_curves(curves, rows, task, figure)
    print(f"\nfigure: {figure}   ({time.time() - t0:.0f} s in all)")
    return rows


def plot_curves(curves, rows, task, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for method, history in curves.items():
        left.plot([h["step"] for h in history], [100 * h["dev_exact_match"] for h in history],
                  marker="o", label=method)
    left.set(xlabel="training step", ylabel="dev exact match (%)", title=f"{task}: dev exact match", ylim=(-3, 103))
    left.legend()
    for r in rows:
        right.scatter(r["trainable"], 100 * r["test"], s=60)
        right.annotate(r["method"], (r["trainable"], 100 * r["test"]), textcoords="offset points", xytext=(6, 4))
    right.set(xscale="log", xlabel="trainable parameters (log)", ylabel="test exact match (%)",
              title="what you train vs what you get", ylim=(-3, 103))
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
