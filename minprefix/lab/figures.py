"""Figures, drawn by code: `minprefix figures` writes every PNG in figures/ (lessons show the same ones).

- blocks.png: a regular transformer block beside the two prefix-augmented blocks
- masks.png: the attention mask alone, with a prefix, and over a KV cache (lesson 1)
- share_by_width.png: what each method trains, as a share of the model, across model widths
- demo.png: dev exact match during training (`minprefix demo`, which trains)
- compare_tasks.png, compare_studies.png: the papers' claims measured (`minprefix compare`, which trains)
- sweep.png, reparam.png: the learning-rate sweep and lesson 5's grids (`minprefix sweep`, `minprefix reparam`)

Lessons also draw figures that are not files: HotFlip's predicted against measured loss changes
(lesson 2), trained soft-prompt rows among the token embeddings (lesson 3), the share of attention
on a prefix, layer by layer (lesson 4).
"""

from pathlib import Path

import torch

from ..methods import FULL, METHODS, PREFIX_MLP, count_table
from ..model import GPTConfig
from ..params import GPT2_FAMILY, gpt2_config


def _plt():
    import matplotlib.pyplot as plt  # no backend forced: a notebook shows figures inline, a terminal writes files

    return plt


def close(fig):
    """Free a figure that was only written to disk."""
    _plt().close(fig)


def _save(fig, path):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


BLOCK_STYLE = {"frozen": "#dde6f0", "trainable": "#f6c85f", "dropped": "#eeeeee"}


def _boxes(ax, plt):
    def box(x, y, w, h, text, kind="frozen"):
        ax.add_patch(plt.Rectangle((x, y), w, h, facecolor=BLOCK_STYLE[kind], edgecolor="black"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)
    return box


def _arrows(ax):
    return lambda x0, y0, x1, y1: ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "lw": 1.2})


def draw_blocks(path=None):
    """Three blocks side by side: regular; P rows at the block input; P keys and values inside attention."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 6.5))
    panels = [("regular block", None),
              ("block-input prefix:\nP rows join the block's input, dropped after it", "input"),
              ("key/value prefix:\nP keys and P values join attention", "kv")]
    for ax, (title, prefix) in zip(axes, panels):
        ax.set(xlim=(0, 12), ylim=(0, 10.2))
        ax.set_title(title, fontsize=11)
        ax.axis("off")

        box = _boxes(ax, plt)
        arrow = _arrows(ax)
        box(6.0, 0.2, 5.5, 0.8, "T token rows x  (B, T, C)")
        arrow(8.75, 1.0, 8.75, 1.8)
        if prefix == "input":
            box(0.2, 0.2, 5.0, 0.8, "P prefix rows", "trainable")
            arrow(2.7, 1.0, 4.2, 1.8)
        box(3.5, 1.8, 8.0, 0.8, "LayerNorm 1" + ("  (P + T rows)" if prefix == "input" else ""))
        box(3.5, 3.2, 8.0, 0.9, "q, k, v = W LN(x) + b")
        if prefix == "kv":
            box(0.2, 4.6, 2.9, 1.0, "P keys,\nP values", "trainable")
            arrow(3.1, 5.1, 3.5, 5.1)
        box(3.5, 4.6, 8.0, 1.0, "attention: every token sees the\nprefix, tokens causal after it" if prefix else
            "causal attention")
        box(3.5, 6.1, 8.0, 0.9, "+ x, LayerNorm 2, MLP, + x")
        for y0, y1 in ((2.6, 3.2), (4.1, 4.6), (5.6, 6.1), (7.0, 7.6)):
            arrow(7.5, y0, 7.5, y1)
        if prefix == "input":
            box(0.2, 7.6, 3.1, 0.9, "P outputs:\ndropped", "dropped")
            arrow(3.5, 7.3, 2.0, 7.6)
        box(3.5, 7.6, 8.0, 0.9, "T token rows to the next block")
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=BLOCK_STYLE[k], edgecolor="black") for k in BLOCK_STYLE]
    fig.legend(handles, ["frozen (the base)", "trainable (the method)", "computed, then thrown away"],
               loc="lower center", ncol=3, frameon=False)
    fig.suptitle("One transformer block, and how each view of prefix tuning changes what goes through it "
                 "(the weights never change)", y=0.99)
    return _save(fig, path)


def draw_reparam(config: GPTConfig, P: int = 10, k: int | None = None, h: int = 512, path=None):
    """Li & Liang's reparameterization as a diagram: P' -> MLP -> the rows P -> each layer's keys and values,
    with the numbers each part holds (trained while tuning, kept after merge) on the shipped base's sizes."""
    plt = _plt()
    L, d = config.n_layer, config.d_model
    k, width = k or d, 2 * config.n_layer * config.d_model
    fig, ax = plt.subplots(figsize=(13, 3.6))
    ax.set(xlim=(0, 26), ylim=(0, 7))
    ax.axis("off")
    box, arrow = _boxes(ax, plt), _arrows(ax)
    box(0.2, 2.6, 3.4, 1.8, f"P'\n({P} x {k})\n{P * k:,} numbers", "trainable")
    box(4.6, 2.6, 4.6, 1.8, f"Linear(k={k} -> h={h})\n+ tanh\n{k * h + h:,} numbers", "trainable")
    box(10.2, 2.6, 4.8, 1.8, f"Linear(h={h} -> 2Ld={width})\n{h * width + width:,} numbers", "trainable")
    box(16.0, 2.6, 3.6, 1.8, f"rows P\n({P} x {width})\n{P * width:,} numbers\n(kept after merge)", "frozen")
    for x0, x1 in ((3.6, 4.6), (9.2, 10.2), (15.0, 16.0)):
        arrow(x0, 3.5, x1, 3.5)
    ys = [0.3 + 6.2 * i / L for i in range(L)]
    for layer, y in enumerate(ys):
        box(21.0, y, 4.8, 6.0 / L - 0.2, f"block {layer}: {P} keys + {P} values\n({P} x {d}) + ({P} x {d})")
        arrow(19.6, 3.5, 21.0, y + (6.0 / L - 0.2) / 2)
    trains = P * k + k * h + h + h * width + width
    ax.set_title(f"P = MLP(P'): {trains:,} numbers train, {P * width:,} are kept; each row of P' makes one position's "
                 f"key and value at every block (base: L = {L}, d = {d})", fontsize=10)
    return _save(fig, path)


def plot_row_steps(steps: dict, path=None):
    """How far each step moves the rows, and how alike the rows' moves are, per method (`reparam.row_steps`)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for i, (label, s) in enumerate(steps.items()):
        axes[0].plot(range(1, len(s["move"]) + 1), s["move"], color=f"C{i}", lw=0.9, label=label)
        axes[1].plot(range(1, len(s["alike"]) + 1), s["alike"], color=f"C{i}", lw=0.9, label=label)
    axes[0].set(yscale="log", xlabel="training step", ylabel="|step of a row| / |row| (median over rows)",
                title="how far one step moves a row of P")
    axes[1].set(xlabel="training step", ylabel="mean cosine between two rows' steps", ylim=(-0.2, 1.05),
                title="how alike the rows' steps are")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_share_by_width(path=None, base_config: GPTConfig | None = None, prompt_len: int = 10):
    """Trainable share of the model, per method, against d_model: the GPT-2 family and the shipped base."""
    plt = _plt()
    models = {name: gpt2_config(name) for name in GPT2_FAMILY}
    if base_config is not None:
        models = {"shipped base": base_config, **models}
    methods = [m.name for m in METHODS.values() if not m.trains_base]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    widths = [c.d_model for c in models.values()]
    for method in methods:
        rows = [next(r for r in count_table(c, prompt_len) if r["method"] == method) for c in models.values()]
        ax.plot(widths, [100 * r["trainable_share"] for r in rows], marker="o", label=rows[0]["label"])
    ax.set(xscale="log", yscale="log", xlabel="model (d_model)", ylabel="trains while tuning, % of the model (log)",
           title=f"What trains, P = {prompt_len} (the MLP: hidden width 512; stored, it is the key/value prefix)")
    ax.set_xticks(widths, [f"{name.removeprefix('gpt2-')}\n({c.d_model})" for name, c in models.items()], fontsize=7)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_curves(curves: dict, path=None, steps: int | None = None, labels: dict | None = None, title: str = ""):
    """Dev exact match against training step: curves[panel][line] is a tune() history."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(curves), figsize=(5.5 * len(curves), 4), squeeze=False)
    for ax, (panel, lines) in zip(axes[0], curves.items()):
        for name, history in lines.items():
            ax.plot([h["step"] for h in history], [100 * h["dev_exact_match"] for h in history],
                    marker="o", label=(labels or {}).get(name, name))
        ax.set(xlabel="training step", ylabel="dev exact match (%)", title=panel, ylim=(-3, 103))
        if steps:
            ax.set_xlim(0, steps)
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def make_figures(out_dir="figures", base_config: GPTConfig | None = None) -> list[Path]:
    """Write the figures that need no training; `minprefix figures` adds the demo's."""
    out = Path(out_dir)
    written = []
    for name, draw in (("blocks.png", draw_blocks), ("masks.png", plot_attention_masks),
                       ("share_by_width.png", lambda p: plot_share_by_width(p, base_config))):
        close(draw(out / name))
        written.append(out / name)
    return written


def plot_compare_tasks(grid: list[list[float]], rows: list[str], cols: list[str], path=None):
    """`minprefix compare`: mean test exact match of every method (rows) on every task (columns), as a heatmap."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 4, 0.45 * len(rows) + 1.5))
    values = [[100 * v for v in r] for r in grid]
    ax.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for i, r in enumerate(values):
        for j, v in enumerate(r):
            if v == v:  # not NaN: this method ran on this task
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=8, color="white" if v < 60 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title("test exact match (%), mean over seeds (blank: not run)")
    fig.tight_layout()
    return _save(fig, path)


def plot_compare_studies(cfg: dict, s: dict, path=None):
    """`minprefix compare`: low data, prefix length, depth and initialization, each with its spread over seeds."""
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))

    def line(ax, xs, stats, label):
        ax.errorbar(xs, [100 * st["mean"] for st in stats], yerr=[100 * st["std"] for st in stats], marker="o",
                    capsize=3, label=label)

    prefix, full = PREFIX_MLP.label, FULL.label  # the low-data study's two rows (compare.PREFIX and compare.FULL)
    tasks = cfg["low_data_tasks"]
    for k, n in enumerate(cfg["low_data"]):  # the gap, task by task: above 0, the prefix is ahead
        gaps = [100 * (s["low_data"][f"{prefix}|{t}|{n}"]["mean"] - s["low_data"][f"{full}|{t}|{n}"]["mean"])
                for t in tasks]
        axes[0].bar([i + 0.4 * k for i in range(len(tasks))], gaps, 0.4, label=f"{n} training examples")
    axes[0].axhline(0, color="black", lw=0.8)
    axes[0].set_xticks([i + 0.2 for i in range(len(tasks))], tasks, rotation=40, ha="right", fontsize=7)
    axes[0].set(ylabel="prefix minus full fine-tuning (points)", title="low data: the prefix's lead, task by task")
    axes[0].legend(fontsize=8)
    lens = [int(p) for p in s["prompt_len"]]
    line(axes[1], lens, [s["prompt_len"][str(p)] for p in lens], prefix)
    axes[1].set(xscale="log", xlabel="prefix length P", title=f"prefix length ({cfg['study_task']})")
    axes[1].set_xticks(lens, [str(p) for p in lens], minor=False)
    depth = ["bottom", "top", "all"]
    axes[2].bar(depth, [100 * s["depth"][k]["mean"] for k in depth], yerr=[100 * s["depth"][k]["std"] for k in depth],
                capsize=3, color="#7aa6c2")
    axes[2].set(xlabel="layers wearing the prefix", title=f"depth ({cfg['study_task']})")
    inits = ["random", "vocab", "text"]
    for k, m in enumerate(sorted({key.split("|")[0] for key in s["init"]})):
        axes[3].bar([i + 0.4 * k for i in range(3)], [100 * s["init"][f"{m}|{i}"]["mean"] for i in inits], 0.4,
                    yerr=[100 * s["init"][f"{m}|{i}"]["std"] for i in inits], capsize=3, label=m)
    axes[3].set_xticks([i + 0.2 for i in range(3)], inits)
    axes[3].set(xlabel="initialization", title=f"init, {cfg['init_n_train']} examples ({cfg['init_task']})")
    axes[3].legend(fontsize=8)
    for ax in axes[1:]:
        ax.minorticks_off()
        ax.set(ylabel="test exact match (%)", ylim=(-3, 103))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep(data: dict, path=None):
    """`minprefix sweep`: mean dev score against learning rate (best circled), and the best lr's dev curve."""
    plt = _plt()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (m, row) in enumerate(data["methods"].items()):
        lrs, dev = [p["lr"] for p in row["points"]], [100 * p["dev"] for p in row["points"]]
        ax.plot(lrs, dev, marker="o", color=f"C{i}", label=m)
        best = next(p for p in row["points"] if p["lr"] == row["best_lr"])
        ax.scatter([best["lr"]], [100 * best["dev"]], s=160, facecolors="none", edgecolors=f"C{i}", lw=2)
        bx.plot([s for s, _ in row["curve"]], [100 * v for _, v in row["curve"]], marker=".", color=f"C{i}",
                label=f"{m} (lr {row['best_lr']:g}, {row.get('steps', data['config']['steps'])} steps)")
        for short in row.get("shorter", []):  # the step counts at which it had not converged: dashed
            ax.plot([p["lr"] for p in short["points"]], [100 * p["dev"] for p in short["points"]], ls="--",
                    color=f"C{i}", alpha=0.6)
            bx.plot([s for s, _ in short["curve"]], [100 * v for _, v in short["curve"]], ls="--", color=f"C{i}",
                    alpha=0.6)
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="dev exact match (%), mean", ylim=(-3, 103),
           title="each method's sweep (circle: the chosen default; dashed: fewer steps)")
    bx.set(xlabel="training step", ylabel="best dev exact match so far (%), mean", ylim=(-3, 103),
           title="at the chosen learning rate: has it stopped improving?")
    for a in (ax, bx):
        a.grid(alpha=0.3)
    bx.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _strip(ax, studies: dict, title: str):
    """One column of dots per setting (a seed each), a black bar at the mean, red crosses for divergences."""
    labels = [label for study in studies.values() for label in study]
    for x, s in enumerate(s for study in studies.values() for s in study.values()):
        for j, r in enumerate(s["runs"]):
            dx = 0.08 * (j - (len(s["runs"]) - 1) / 2)
            ax.scatter(x + dx, 100 * r["test"], color="red" if r["diverged"] else "C0",
                       marker="x" if r["diverged"] else "o", s=18, zorder=3)
        ax.hlines(100 * s["mean"], x - 0.3, x + 0.3, color="black")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="test exact match (%)", ylim=(-3, 103), title=title)
    ax.grid(alpha=0.3, axis="y")


def _map(ax, data):
    """Tasks down, (method, n_train) across; colour: the mean over seeds; text: mean and worst seed."""
    cfg, pair = data["config"], list(data["lrs"])
    cols = [(m, n) for n in cfg["n_trains"] for m in pair]
    grid = [[data["map"][f"{m}|{t}|{n}"] for m, n in cols] for t in cfg["tasks"]]
    ax.imshow([[100 * c["mean"] for c in row] for row in grid], cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for i, row in enumerate(grid):
        for j, c in enumerate(row):
            ax.text(j, i, f"{100 * c['mean']:.0f}\nworst {100 * c['worst']:.0f}", ha="center", va="center",
                    fontsize=7)
    ax.set_xticks(range(len(cols)), [f"{'MLP' if m.endswith('-mlp') else 'direct'}\nn={n}" for m, n in cols],
                  fontsize=8)
    ax.set_yticks(range(len(cfg["tasks"])), cfg["tasks"], fontsize=8)
    ax.set_title(f"the map: test exact match %, mean of {cfg['seeds']} seeds (and the worst)")


def _curves(ax, data):
    """Every seed's dev curve on the cell where the methods differ most."""
    cell = data["question_cell"]
    for i, m in enumerate(data["lrs"]):
        for j, r in enumerate(data["map"][f"{m}|{cell}"]["runs"]):
            ax.plot([h["step"] for h in r["history"]], [100 * h["dev_exact_match"] for h in r["history"]],
                    color=f"C{i}", lw=1, alpha=0.8, label=f"{m}, lr {data['lrs'][m]:g} (a line per seed)" if not j
                    else None)
    ax.set(xlabel="training step", ylabel="dev exact match (%)", ylim=(-3, 103),
           title=f"each seed on {cell.replace('|', ', n_train=')}")


def _lr_dots(ax, data):
    """Each method at multiples of its own learning rate: a dot per seed, a line through the means."""
    for c, (cell, study) in enumerate(data["sensitivity"].items()):
        for i, (m, by_x) in enumerate(study.items()):
            xs = [float(x) for x in by_x]
            style = dict(color=f"C{i}", ls="-" if c == 0 else "--")
            for x, s in zip(xs, by_x.values()):
                ax.scatter([x] * len(s["seeds"]), [100 * t for t in s["seeds"]], s=12, **{"color": style["color"]})
            ax.plot(xs, [100 * s["mean"] for s in by_x.values()], label=f"{m}, {cell.replace('|', ', n=')}", **style)
    ax.set(xscale="log", xlabel="multiple of the method's own learning rate", ylabel="test exact match (%)",
           ylim=(-3, 103), title="learning-rate sensitivity (dots: seeds)")


def _widths(ax, data):
    for name, marker in (("k", "o"), ("h", "s")):
        xs = [int(label.split("= ")[1]) for label in data[name]]
        ss = list(data[name].values())
        ax.errorbar(xs, [100 * s["mean"] for s in ss], capsize=3, marker=marker, label=f"{name} (bars: worst "
                    "to best seed)", yerr=[[max(0.0, 100 * (s["mean"] - s["worst"])) for s in ss],  # >= 0 despite
                                           [max(0.0, 100 * (s["best"] - s["mean"])) for s in ss]])  # float rounding
    ax.axvline(data["d_model"], color="gray", ls=":", label="d_model")
    ax.set(xscale="log", xlabel="width", ylabel="test exact match (%)", ylim=(-3, 103),
           title="the bottleneck: the width k of P' and the hidden width h")


REPARAM_PANELS = {"map": _map, "curves": _curves, "lrs": _lr_dots, "width": _widths,
                  "settings": lambda ax, d: _strip(ax, {"form": d["form"], "init": d["init"]},
                                                   "the MLP's forms; the direct prefix's starts")}


def plot_reparam(data: dict, path=None, panels=tuple(REPARAM_PANELS)):
    """`minprefix reparam`: the map and lesson 5's grids, one panel per view, two to a row."""
    plt = _plt()
    shape = ((len(panels) + 1) // 2, 2) if len(panels) > 2 else (1, len(panels))
    fig, axes = plt.subplots(*shape, figsize=(6.5 * shape[1], 4.5 * shape[0]), squeeze=False)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        REPARAM_PANELS[panel](ax, data)
        if panel not in ("settings", "map"):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_attention_masks(path=None, T: int = 6, P: int = 3, cached: int = 8):
    """Who may look at whom: the causal mask alone, with P prefix keys in front, and one new token over a cache."""
    from ..model import attention_mask

    plt = _plt()
    tokens = [f"t{i}" for i in range(T)]
    panels = [(f"T = {T} tokens: the causal triangle", attention_mask(T, T), tokens, tokens, 0),
              (f"P = {P} prefix keys in front (bottom-right)", attention_mask(T, P + T),
               [f"p{i}" for i in range(P)] + tokens, tokens, P),
              (f"1 new token over a cache of {cached}", attention_mask(1, cached + 1),
               [f"t{i}" for i in range(cached + 1)], [f"t{cached}"], cached)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), gridspec_kw={"width_ratios": [T, P + T, cached + 1]})
    for ax, (title, mask, keys, queries, earlier) in zip(axes, panels):
        ax.imshow(mask.int(), cmap="Blues", vmin=-0.3, vmax=1.2)
        ax.set(title=title, xlabel="key", ylabel="query")
        ax.set_xticks(range(len(keys)), keys, fontsize=7)
        ax.set_yticks(range(len(queries)), queries, fontsize=7)
        if earlier:
            ax.axvline(earlier - 0.5, color="C3", lw=2)  # left of the line: keys from before the first query
    fig.suptitle("attention masks: dark = may attend; the red line separates earlier keys from the queries' own")
    fig.tight_layout()
    return _save(fig, path)


def plot_predicted_vs_measured(predicted: list[float], measured: list[float], path=None, title: str = ""):
    """HotFlip's first-order loss changes against the ones real forward passes measure, one dot per swap."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(predicted, measured, s=18)
    ax.axline((0, 0), slope=1, color="gray", ls=":", label="prediction = measurement")
    ax.axhline(0, color="black", lw=0.6)
    ax.set(xlabel="predicted change of the loss (first order)", ylabel="measured change of the loss", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_rows_among_tokens(table, rows: dict, token_labels: list[str], path=None):
    """Soft-prompt rows among the token embeddings, on the token table's top two principal directions.

    table: (V, d) token embeddings; rows: label -> (P, d) rows. Left, as they are; right, each row
    scaled to the median token norm, so only its direction shows (what cosine similarity compares).
    """
    plt = _plt()
    W = table.detach().float()
    mean = W.mean(dim=0)
    directions = torch.linalg.svd(W - mean, full_matrices=False).Vh[:2].T  # (d, 2)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, only_direction in zip(axes, (False, True)):
        tokens = ((W - mean) @ directions).numpy()
        ax.scatter(tokens[:, 0], tokens[:, 1], s=10, color="0.75", zorder=1)
        for (x, y), label in zip(tokens, token_labels):
            ax.annotate(label, (x, y), fontsize=6, color="0.45")
        for i, (name, r) in enumerate(rows.items()):
            r = r.detach().float()
            if only_direction:
                r = r / r.norm(dim=-1, keepdim=True) * W.norm(dim=-1).median()
            xy = ((r - mean) @ directions).numpy()
            ax.scatter(xy[:, 0], xy[:, 1], marker="*", s=90, color=f"C{i}", label=name, zorder=3)
            for j, (x, y) in enumerate(xy):
                ax.annotate(str(j), (x, y), fontsize=7, color=f"C{i}", xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="principal direction 1 of the token table", ylabel="principal direction 2",
               title="rows as they are" if not only_direction else "rows scaled to a token's norm (direction only)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("trained soft-prompt rows (stars, numbered by position) among the token embeddings (grey)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_prefix_attention(shares: dict, path=None, title: str = ""):
    """`prefix.prefix_attention_share` of several models: the share of attention on the prefix, layer by layer."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (label, s) in enumerate(shares.items()):
        ax.plot(range(len(s)), [100 * v for v in s], marker="o", color=f"C{i}", label=label)
    ax.set(xlabel="layer", ylabel="attention on the prefix (%)", ylim=(-3, 103),
           title=title or "how much of each layer's attention goes to the prefix (the rest: the tokens)")
    ax.set_xticks(range(max(len(s) for s in shares.values())))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
