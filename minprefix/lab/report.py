"""The report of `minprefix compare`: tables, figures and a verdict per claim, from the raw results.

Every verdict is a rule written out below (with its threshold), applied to the measured means;
the prose on *why* a claim holds or not belongs to lesson 6 and docs/results.md, next to these numbers.
"""

import json
import statistics
from pathlib import Path

from ..files import atomic_write_text
from ..scoring import percent, table
from .figures import close, plot_compare_studies, plot_compare_tasks
from .grid import converged
from ..methods import METHODS
from .studies import (FULL_LABEL, INIT_STUDY, PREFIX_LABEL, PREFIX_MLP_LABEL, SHIFT_VARIANTS, SOFT_INITS, SOFT_LABEL,
                      VARIANTS)
from ..world import NEW_SKILL_TASKS

UNTRAINED = ("copy baseline", "base, bare input", "hand-written template", "discrete search start", "discrete search")


def variant_of(config: dict) -> str:
    return METHODS[config["method"]].label


def stats(results: list[dict], value="test") -> dict:
    v = [r[value] for r in results]
    n = min((r.get(f"n_{value}", 10**9) for r in results), default=0)
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "seeds": len(v),
            "n": n, "diverged": sum(r["diverged"] is not None for r in results)}


def cell(s: dict) -> str:
    """mean ± std over seeds (or "1 seed"), as a percentage; with the 95 % interval when a split is under 100."""
    diverged = f" ({s['diverged']} diverged)" if s.get("diverged") else ""
    spread = {0: "", 1: " (1 seed)"}.get(s.get("seeds", 2), f" ± {100 * s['std']:.1f}")
    return f"{percent(s['mean'], s['n'])}{spread}{diverged}"


def group(results: list[dict], *fields) -> dict:
    out = {}
    for r in results:
        key = tuple(r["config"][f] if f != "variant" else variant_of(r["config"]) for f in fields)
        out.setdefault(key, []).append(r)
    return out


def summarize(data: dict) -> dict:
    """Means and standard deviations over seeds of every study, keyed for the tables, figures and verdicts."""
    st = data["studies"]
    main = {f"{v}|{t}": {"dev": stats(rs, "dev"), "test": stats(rs), "trainable": rs[0].get("trainable"),
                         "stored": rs[0].get("stored")} for (v, t), rs in group(st["main"], "variant", "task").items()}
    for task, rows in data["untrained"].items():
        for name in UNTRAINED:  # the search has one result per seed; the others are one result, with no seed
            main[f"{name}|{task}"] = {k: {"mean": statistics.fmean(v), "n": rows[f"n_{k}"],
                                          "seeds": len(v) if name == "discrete search" else 0,
                                          "std": statistics.stdev(v) if len(v) > 1 else 0.0}
                                      for k in ("dev", "test") for v in [rows[name][k]]}
    shift = {v: {**stats(rs), "seeds_test": [r["test"] for r in rs]}
             for (v,), rs in group(st["shift"], "variant").items()}
    return {
        "main": main,
        "converged": convergence(data),
        "low_data": {f"{v}|{t}|{n}": stats(rs) for (v, t, n), rs in
                     group(st["low_data"], "variant", "task", "n_train").items()},
        "prompt_len": {str(p): stats(rs) for (p,), rs in group(st["prompt_len"], "prompt_len").items()},
        "depth": {layers: stats(rs) for (layers,), rs in group(st["depth"], "prefix_layers").items()},
        "init": {f"{m}|{i}": stats(rs) for (m, i), rs in group(st["init"], "method", "init").items()},
        "shift": shift,
    }


def convergence(data: dict) -> dict:
    """Per cell (study, method, task and the study's setting): did its runs stop improving on dev?

    The sweep's criterion (`grid.converged`) on the mean over seeds of the best-so-far dev score; a
    run that ended early at 100 % dev keeps that score to the end.
    """
    out = {}
    for name, results in data["studies"].items():
        for key, rs in group(results, "variant", "task", "n_train", "prompt_len", "prefix_layers", "init").items():
            out.setdefault(", ".join(map(str, key)), {**converged(rs, rs[0]["config"]["steps"],
                                                                  data["config"]["tolerance"]), "study": name})
    return out


def soft_singles(data: dict) -> dict[str, list[float]]:
    """Test scores of the single soft prompts that each ensemble combines, by task."""
    return {t: [r["test"] for r in data["studies"]["main"] if variant_of(r["config"]) == SOFT_LABEL
                and r["config"]["task"] == t] for t in data["ensemble"]}


MARGIN = 0.02  # the one tie margin of every verdict: two test means closer than this are a tie
LEARNT = 0.5  # a task counts as learnt at this test exact match (the regime map's rule too)


def kind_of(task: str) -> str:
    """Bare tasks elicit one pretrained skill; composed ones chain two; the new skill needs a new letter map."""
    return "bare" if task.startswith("bare-") else "new skill" if task in NEW_SKILL_TASKS else "composed"


def judge(per_task: dict[str, bool]) -> tuple[bool | None, str]:
    """The one rule set: a claim's comparison, made task by task, holds on every task (True), on some (None:
    partly) or on none (False); the text counts the tasks where it holds, kind by kind."""
    kinds: dict[str, list[bool]] = {}
    for task, ok in per_task.items():
        kinds.setdefault(kind_of(task), []).append(ok)
    held = list(per_task.values())
    text = "; ".join(f"{kind}: {sum(v)} of {len(v)}" for kind, v in kinds.items())
    return (True if all(held) else None if any(held) else False), text


def claim(name: str, paper: str, here: str, per_task: dict[str, bool], rule: str) -> dict:
    """One row of the claims table: the paper's numbers, ours, the rule and its verdict, judged by `judge`."""
    holds, count = judge(per_task)
    return {"claim": name, "paper": paper, "here": f"{here} (holds on: {count})", "rule": rule,
            "verdict": {True: "holds", False: "does not hold", None: "partly"}[holds]}


def test_mean(s: dict, variant: str, task: str) -> float:
    """A method's mean test score on a task: the main table's, or the new-skill study's."""
    return s["shift"][variant]["mean"] if task in NEW_SKILL_TASKS else s["main"][f"{variant}|{task}"]["test"]["mean"]


def every_task(data) -> list[str]:
    return list(data["config"]["tasks"]) + list(NEW_SKILL_TASKS)


def versus(data, s, a: str, b: str, rule) -> tuple[str, dict[str, bool]]:
    """`rule(mean of a, mean of b)` on every task, and the numbers."""
    means = {t: (test_mean(s, a, t), test_mean(s, b, t)) for t in every_task(data)}
    text = ", ".join(f"{t} {percent(x)} vs {percent(y)}" for t, (x, y) in means.items())
    return f"{a} vs {b}: {text}", {t: rule(x, y) for t, (x, y) in means.items()}


def matches_full(data, s):
    here, per_task = versus(data, s, PREFIX_MLP_LABEL, FULL_LABEL, lambda prefix, full: prefix >= full - MARGIN)
    return claim("Prefix tuning matches full fine-tuning (Li & Liang)", "E2E BLEU 70.3 (prefix, 0.1 %) vs 68.8 (full)",
                 here, per_task, f"prefix at most {100 * MARGIN:g} points behind full fine-tuning, or ahead")


def soft_below_prefix(data, s):
    here, per_task = versus(data, s, SOFT_LABEL, PREFIX_MLP_LABEL, lambda soft, prefix: soft < prefix - MARGIN)
    return claim("Embedding-only (soft prompt) is weaker than a prefix at every layer (Li & Liang)",
                 "62.2 vs 70.3 BLEU", here, per_task, f"soft prompt more than {100 * MARGIN:g} points below the prefix")


def direct_unstable(data, s):
    worst = {t: {v: min(seeds_of(data, v, t)) for v in (PREFIX_LABEL, PREFIX_MLP_LABEL)} for t in every_task(data)}
    diverged = sum(r["diverged"] is not None for r in data["studies"]["main"] + data["studies"]["shift"]
                   if variant_of(r["config"]) == PREFIX_LABEL)
    return claim("Direct optimization of the prefix is unstable; the MLP stabilizes it (Li & Liang §4.3), each at "
                 "the best lr of its own sweep", "qualitative: direct 'unstable', 'very sensitive to initialization'",
                 "worst seed, direct vs MLP: " + ", ".join(
                     f"{t} {percent(w[PREFIX_LABEL])} vs {percent(w[PREFIX_MLP_LABEL])}" for t, w in worst.items())
                 + f"; {diverged} direct runs diverged; lesson 5 maps this claim over every task and two data sizes",
                 {t: w[PREFIX_MLP_LABEL] > w[PREFIX_LABEL] + MARGIN for t, w in worst.items()},
                 f"the MLP's worst seed more than {100 * MARGIN:g} points above the direct prefix's")


def seeds_of(data, variant: str, task: str) -> list[float]:
    study = "shift" if task in NEW_SKILL_TASKS else "main"
    return [r["test"] for r in data["studies"][study] if variant_of(r["config"]) == variant
            and r["config"]["task"] == task]


def low_data(data, s):
    cfg, ld = data["config"], s["low_data"]
    n, most = cfg["low_data"][0], cfg["low_data"][-1]
    gap = {t: {m: ld[f"{PREFIX_MLP_LABEL}|{t}|{m}"]["mean"] - ld[f"{FULL_LABEL}|{t}|{m}"]["mean"] for m in (n, most)}
           for t in cfg["low_data_tasks"]}
    return claim(f"In low data, prefix tuning beats full fine-tuning (Li & Liang §6.3): {n} training examples",
                 "+2.9 BLEU on average over 50-500 examples",
                 "prefix minus full, points: " + ", ".join(f"{t} {100 * g[n]:+.1f} (n={most}: {100 * g[most]:+.1f})"
                                                          for t, g in gap.items()),
                 {t: g[n] > MARGIN for t, g in gap.items()}, f"prefix more than {100 * MARGIN:g} points ahead at n={n}")


def prompt_length(data, s):
    pl, task = s["prompt_len"], data["config"]["study_task"]
    lens = [int(p) for p in pl]
    mid = 10 if 10 in lens else lens[len(lens) // 2]
    return claim("Gains flatten past a prompt length of about 10-20 (Li & Liang §7.1, Lester §3.2): "
                 + PREFIX_MLP_LABEL,
                 "Li & Liang: best near 200 (summarization) / 10 (table-to-text); Lester: little past 20",
                 f"{task}: " + ", ".join(f"P={p}: {percent(pl[str(p)]['mean'])}" for p in lens),
                 {task: pl[str(lens[-1])]["mean"] - pl[str(mid)]["mean"] <= MARGIN},
                 f"at most {100 * MARGIN:g} points gained past P={mid}")


def depth(data, s):
    d, task = {k: v["mean"] for k, v in s["depth"].items()}, data["config"]["study_task"]
    return claim(f"Prefixes near the output matter more; all layers are best (P-tuning v2 §4.4): {PREFIX_MLP_LABEL}",
                 "depth ablation: the layers nearest the output come close to all layers; those nearest the input "
                 "do not", f"{task}: " + ", ".join(f"{k}: {percent(d[k])}" for k in ("bottom", "top", "all")),
                 {task: d["top"] > d["bottom"] + MARGIN and d["all"] >= max(d["top"], d["bottom"]) - MARGIN},
                 f"top half more than {100 * MARGIN:g} points ahead of the bottom half, all layers at most "
                 f"{100 * MARGIN:g} behind the best")


def text_init(data, s):
    ini, cfg = s["init"], data["config"]
    mean = lambda m, i: ini[f"{m}|{i}"]["mean"]  # noqa: E731
    best = {m: mean(m, "text") >= max(mean(m, i) for i in SOFT_INITS) - MARGIN
            and mean(m, "text") > mean(m, "random") + MARGIN for m in INIT_STUDY}
    return claim(f"Initializing from real text helps in low data (Li & Liang §7.3; Lester §3.2): "
                 f"{cfg['init_task']}, n={cfg['init_n_train']}",
                 "Li & Liang: real-word init beats random in low data; Lester: class labels > sampled vocab > random",
                 "; ".join(f"{m}: " + ", ".join(f"{i} {percent(mean(m, i))}" for i in SOFT_INITS) for m in INIT_STUDY),
                 {f"{cfg['init_task']} ({m})": ok for m, ok in best.items()},
                 f"text init at most {100 * MARGIN:g} points behind the best start and more than {100 * MARGIN:g} "
                 "ahead of random, for each method")


def new_skill(data, s):
    task, prompts = NEW_SKILL_TASKS[0], [v for v in SHIFT_VARIANTS if v != FULL_LABEL]
    means = {v: s["shift"][v]["mean"] for v in prompts}
    return claim("A prompt only biases attention outputs, so it can learn a task whose attention pattern the base "
                 f"already has, but not one that needs a new pattern (Petrov, Torr & Bibi 2024): {task} keeps "
                 "uppercase's letter-by-letter alignment and asks for a new letter map",
                 "proof for prefixes and soft prompts; tasks that need a new attention pattern stay out of reach",
                 ", ".join(f"{v} {percent(x)}" for v, x in means.items()) + f"; full fine-tuning "
                 f"{percent(s['shift'][FULL_LABEL]['mean'])}. No task here needs a new attention pattern, so the half "
                 "of the statement that says what a prompt cannot learn is not tested",
                 {task: max(means.values()) >= LEARNT},
                 f"some prompt method learns {task} (mean test exact match at least {100 * LEARNT:g} %)")


def ensembles(data, s):
    ens, singles = data["ensemble"], soft_singles(data)
    return claim(f"An ensemble of prompts does as well as the best single prompt (Lester §7): "
                 f"{len(singles[next(iter(ens))])} soft prompts (seeds)",
                 "SuperGLUE 5-prompt ensemble 90.5 vs best single 90.0 (T5-XXL)",
                 "; ".join(f"{t}: mean-log-prob {percent(ens[t]['mean'])}, vote {percent(ens[t]['vote'])}, "
                           f"best single {percent(max(singles[t]))}, average single "
                           f"{percent(statistics.fmean(singles[t]))}" for t in ens),
                 {t: ens[t]["mean"] >= max(singles[t]) - MARGIN for t in ens},
                 f"the mean-log-prob ensemble at most {100 * MARGIN:g} points behind the best single prompt, or ahead")


def search(data, s):
    main, tasks = s["main"], every_task(data)
    start, found = ({t: main[f"{row}|{t}"]["test"]["mean"] for t in tasks}
                    for row in ("discrete search start", "discrete search"))
    return claim("Gradient-guided token search improves a prompt (AutoPrompt), from a filler start",
                 "SST-2 (RoBERTa): 85.2 -> 91.4 %",
                 ", ".join(f"{t} {percent(start[t])} -> {percent(found[t])}" for t in tasks) + " (mean of the seeds)",
                 {t: found[t] > start[t] + MARGIN for t in tasks},
                 f"the search's result more than {100 * MARGIN:g} points above its start")


def small_scale(data, s):
    here, per_task = versus(data, s, SOFT_LABEL, FULL_LABEL, lambda soft, full: soft < full - MARGIN)
    return claim("At small scale a soft prompt falls short of full fine-tuning (Lester: they meet only near 11 B)",
                 "T5-Small SuperGLUE: prompt ~60 vs model tuning ~67; equal at XXL", here, per_task,
                 f"soft prompt more than {100 * MARGIN:g} points behind full fine-tuning")


CLAIMS = (matches_full, soft_below_prefix, direct_unstable, low_data, prompt_length, depth, text_init, new_skill,
          ensembles, search, small_scale)


def verdicts(data: dict, s: dict) -> list[dict]:
    """One row per claim: the paper's numbers, ours, and the verdict of the one rule set (`judge`), every
    claim on every task its study ran (the main table: every downstream task, `seeds` seeds), on test scores."""
    return [rule(data, s) for rule in CLAIMS]


# ---------------------------------------------------------------------------- markdown


def convergence_markdown(conv: dict, tolerance: float) -> str:
    late = {k: c for k, c in conv.items() if not c["converged"]}
    head = (f"\n## Convergence\n\n{len(conv) - len(late)} of {len(conv)} cells converged (the best-so-far dev "
            f"score, mean over seeds, rose by at most {100 * tolerance:g} point over the last quarter of the steps). ")
    if not late:
        return head
    return head + "The others:\n\n" + table(
        ["cell (method, task, n_train, P, layers, init)", "study", "rise, last quarter"],
        [[k, c["study"], f"{100 * c['rise']:+.1f}" if c["rise"] is not None else "diverged"] for k, c in late.items()])


def header_markdown(data: dict) -> str:
    cfg, steps = data["config"], data["config"]["steps"] or "each method's own (below)"
    n_runs = len({json.dumps(r["config"], sort_keys=True) for rs in data["studies"].values() for r in rs})
    per_cell = {}  # a cell: every field of a run's config but its seed
    for r in (r for rs in data["studies"].values() for r in rs):
        key = json.dumps({k: v for k, v in r["config"].items() if k != "seed"}, sort_keys=True)
        per_cell[key] = per_cell.get(key, 0) + 1
    lo, hi = min(per_cell.values()), max(per_cell.values())
    seeds = f"{lo} seeds in every cell" if lo == hi else f"{lo} to {hi} seeds per cell (the tables say which)"
    return (f"# minprefix compare\n\n{n_runs} tuning runs in {data['seconds'] / 60:.0f} min; steps: "
            f"{steps} ({cfg['shift_factor']}x on "
            f"{NEW_SKILL_TASKS[0]}), ending early at {100 * cfg['stop_at']:g} % dev; {seeds}. One rule set judges "
            "every claim: each comparison is made task by task on test scores, with one "
            f"tie margin of {100 * MARGIN:g} points; a claim holds if it holds on every task its study ran, partly if "
            "on some, and does not hold if on none (counted per kind of task: bare, composed, new skill). Every method "
            "at its default "
            f"learning rate, the best of `minprefix sweep` (figures/sweep.md). Base: {data['n_base']:,} parameters. "
            "Test exact match, mean ± std over seeds; [95 % interval of the mean] where a split has fewer than 100 "
            "examples.")


def markdown(data: dict, s: dict, claims: list[dict]) -> str:
    cfg, main, n_base = data["config"], s["main"], data["n_base"]
    tasks, conv = cfg["tasks"], s["converged"]
    out = [header_markdown(data), "\n## Claims\n", table(["claim", "paper", "here", "verdict", "rule"], [
               [c["claim"], c["paper"], c["here"], f"**{c['verdict']}**", c["rule"]] for c in claims], 9)]
    out += [convergence_markdown(conv, cfg["tolerance"]), "\n## Learning rates and steps (the methods table's, "
            "from `minprefix sweep`)\n", table(["method", "lr", "steps"], [[v, f"{data['lrs'][m]:g}", data["steps"][m]]
                                                                        for v, m in VARIANTS.items()])]
    for task in cfg["headline_tasks"]:
        rows = [[name, "-", "-", "-", cell(main[f"{name}|{task}"]["dev"]), cell(main[f"{name}|{task}"]["test"])]
                for name in UNTRAINED]
        rows += [[v, f"{m['trainable']:,}", f"{100 * m['trainable'] / n_base:.2f} %", f"{m['stored']:,}",
                  cell(m["dev"]), cell(m["test"])] for v in VARIANTS for m in [main[f"{v}|{task}"]]]
        out += [f"\n## Headline: {task} ({cfg['seeds']} seeds)\n",
                table(["method", "trainable", "share of base", "stored", "dev", "test"], rows)]
    out += ["\n## Every task (test)\n", table(["method"] + list(tasks) + [f"{NEW_SKILL_TASKS[0]} (new skill)"],
            [[v] + [cell(main[f"{v}|{t}"]["test"]) for t in tasks] +
             [cell(s["shift"][v]) if v in s["shift"] else (cell(main[f"{v}|{NEW_SKILL_TASKS[0]}"]["test"])
                                                           if f"{v}|{NEW_SKILL_TASKS[0]}" in main else "-")]
             for v in UNTRAINED + tuple(VARIANTS)])]
    shift_runs = group(data["studies"]["shift"], "variant")
    out += [f"\n## New skill ({NEW_SKILL_TASKS[0]}, {cfg['shift_factor']}x each method's steps): every seed (test)\n",
            table(["method", "steps", "test exact match, seed by seed"],
                  [[v, rs[0]["config"]["steps"], ", ".join(f"{100 * r['test']:.1f} %" for r in rs)]
                   for (v,), rs in shift_runs.items()])]
    ld = s["low_data"]
    out += [f"\n## Low data ({PREFIX_MLP_LABEL} and {FULL_LABEL}, test)\n",
            table(["task"] + [f"{v}, n={n}" for n in cfg["low_data"] for v in (PREFIX_MLP_LABEL, FULL_LABEL)],
                  [[t] + [cell(ld[f"{v}|{t}|{n}"]) for n in cfg["low_data"] for v in (PREFIX_MLP_LABEL, FULL_LABEL)]
                   for t in cfg["low_data_tasks"]])]
    out += [f"\n## Prefix length ({PREFIX_MLP_LABEL}, {cfg['study_task']})\n", table(["P", "test"],
            [[p, cell(v)] for p, v in s["prompt_len"].items()])]
    out += [f"\n## Depth ({PREFIX_MLP_LABEL}, {cfg['study_task']})\n",
            table(["layers", "test"], [[k, cell(v)] for k, v in s["depth"].items()])]
    out += [f"\n## Initialization ({cfg['init_task']}, {cfg['init_n_train']} training examples)\n",
            table(["method", "random init", "vocab init", "text init"],
                  [[m] + [cell(s["init"][f"{m}|{i}"]) for i in SOFT_INITS] for m in INIT_STUDY])]
    ens, singles = data["ensemble"], soft_singles(data)
    out += [f"\n## Ensembling {cfg['seeds']} soft prompts ({SOFT_LABEL}) in one batched pass (test)\n",
            table(["task", "mean log-prob", "majority vote", "best single prompt", "average single prompt"],
                  [[t, f"{100 * e['mean']:.1f} %", f"{100 * e['vote']:.1f} %", f"{100 * max(singles[t]):.1f} %",
                    f"{100 * statistics.fmean(singles[t]):.1f} %"] for t, e in ens.items()])]
    return "\n".join(out) + "\n"


def write_report(data: dict, out_dir: Path) -> dict:
    """compare.json (raw results and summary), compare.md, compare_tasks.png and compare_studies.png."""
    s = summarize(data)
    claims = verdicts(data, s)
    data = {**data, "summary": s, "claims": claims}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "compare.json", json.dumps(data, indent=1))
    atomic_write_text(out_dir / "compare.md", markdown(data, s, claims))
    draw_figures(data, out_dir)
    return data


def draw_figures(data: dict, out_dir: Path) -> list[Path]:
    """compare_tasks.png and compare_studies.png from a compare.json's data (no training)."""
    s = data["summary"]
    rows = list(UNTRAINED) + list(VARIANTS)
    cols = list(data["config"]["tasks"]) + list(NEW_SKILL_TASKS)
    grid = [[(s["shift"][r]["mean"] if c in NEW_SKILL_TASKS and r in s["shift"] else
              s["main"].get(f"{r}|{c}", {}).get("test", {}).get("mean", float("nan"))) for c in cols] for r in rows]
    paths = [out_dir / "compare_tasks.png", out_dir / "compare_studies.png"]
    close(plot_compare_tasks(grid, rows, cols, paths[0]))
    close(plot_compare_studies(data["config"], s, paths[1]))
    return paths
