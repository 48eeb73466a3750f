"""The report of `minprefix compare`: tables, figures and a verdict per claim, from the raw results.

Every verdict is a rule written out below (with its threshold), applied to the measured means;
the prose on *why* a claim holds or not belongs to the README, next to these numbers.
"""

import json
import statistics
from pathlib import Path

from ..artifacts import atomic_write_text
from ..scoring import percent, table
from .compare import FULL, INIT_STUDY, PREFIX, PREFIX_DIRECT, SHIFT_VARIANTS, SOFT, SOFT_INITS, VARIANTS
from .figures import close, plot_compare_studies, plot_compare_tasks
from ..methods import METHODS
from .sweep import converged
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

    The sweep's criterion (`sweep.converged`) on the mean over seeds of the best-so-far dev score; a
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
    return {t: [r["test"] for r in data["studies"]["main"] if variant_of(r["config"]) == SOFT
                and r["config"]["task"] == t] for t in data["ensemble"]}


def task_mean(main: dict, variant: str, tasks) -> float:
    return statistics.fmean(main[f"{variant}|{t}"]["test"]["mean"] for t in tasks)


def claim(name: str, paper: str, here: str, holds: bool | None, rule: str) -> dict:
    """One row of the claims table: the paper's numbers, ours, the rule and its verdict (None: partly)."""
    return {"claim": name, "paper": paper, "here": here, "rule": rule,
            "verdict": {True: "holds", False: "does not hold", None: "partly"}[holds]}


def partly(full: bool, some: bool) -> bool | None:
    """A verdict with a middle: True if the whole rule holds, None if only its first part, else False."""
    return True if full else (None if some else False)


MARGIN = 0.02  # two means closer than this are a tie here: seed spreads on these tasks are about that wide

# Each claim is a small rule over the summary: (data, summary, tasks) -> one row. `tasks` splits the
# main table's tasks by kind, since eliciting a skill (bare) and composing two (composed) are different claims.

def by_kind(s, tasks, *variants) -> dict[str, list[float]]:
    """kind ("bare", "composed") -> each variant's mean test score over the main table's tasks of that kind."""
    return {kind: [task_mean(s["main"], v, tasks[kind]) for v in variants] for kind in ("bare", "composed")
            if tasks[kind]}


def per_kind(rule, scores: dict) -> bool | None:
    """A rule that holds on every kind of task: holds; on some: partly; on none: does not hold."""
    held = [rule(*v) for v in scores.values()]
    return partly(all(held), any(held))


def kinds_text(scores: dict, tasks) -> str:
    return "; ".join(f"{', '.join(tasks[k])} ({k}): {percent(a)} vs {percent(b)}" for k, (a, b) in scores.items())


def matches_full(data, s, tasks):
    scores = by_kind(s, tasks, PREFIX, FULL)
    return claim("Prefix tuning matches full fine-tuning (Li & Liang): on a bare and a composed task",
                 "E2E BLEU 70.3 (prefix, 0.1 %) vs 68.8 (full)", kinds_text(scores, tasks) + " (prefix vs full)",
                 per_kind(lambda prefix, full: prefix >= full - 0.05, scores),
                 "prefix within 5 points of full, or ahead, on each kind of task (partly: on one)")


def soft_below_prefix(data, s, tasks):
    scores = by_kind(s, tasks, SOFT, PREFIX)
    return claim("Embedding-only (soft prompt) is weaker than a prefix at every layer (Li & Liang): on a bare and a "
                 "composed task", "62.2 vs 70.3 BLEU", kinds_text(scores, tasks) + " (soft vs prefix)",
                 per_kind(lambda soft, prefix: soft < prefix - MARGIN, scores),
                 f"soft prompt's mean more than {100 * MARGIN:g} points below the prefix's on each kind of task "
                 "(partly: on one)")


def direct_unstable(data, s, tasks):
    heads, main = data["config"]["headline_tasks"], s["main"]
    std = {v: statistics.fmean(main[f"{v}|{t}"]["test"]["std"] for t in heads) for v in (PREFIX_DIRECT, PREFIX)}
    mean = {v: task_mean(main, v, tasks["all"]) for v in (PREFIX_DIRECT, PREFIX)}
    diverged = {v: sum(main[f"{v}|{t}"]["test"]["diverged"] for t in heads) for v in (PREFIX_DIRECT, PREFIX)}
    return claim("Direct optimization of the prefix is unstable; the MLP stabilizes it (Li & Liang §4.3), each at "
                 "the best lr of its own sweep", "qualitative: direct 'unstable', 'very sensitive to initialization'",
                 f"diverged runs {diverged[PREFIX_DIRECT]} vs {diverged[PREFIX]}; seed std on {', '.join(heads)} "
                 f"{100 * std[PREFIX_DIRECT]:.1f} vs {100 * std[PREFIX]:.1f} points, mean "
                 f"{percent(mean[PREFIX_DIRECT])} vs {percent(mean[PREFIX])} (direct vs MLP); lesson 5 measures this "
                 "one claim in depth",
                 partly(diverged[PREFIX_DIRECT] > diverged[PREFIX],
                        std[PREFIX_DIRECT] > std[PREFIX] and mean[PREFIX_DIRECT] < mean[PREFIX]),
                 "direct diverges more often (partly: no more divergences, but a wider seed spread and a lower mean)")


def low_data_on(kind: str):
    """The low-data claim on the study's task of one kind (bare: eliciting a skill; composed: combining two)."""
    def low_data(data, s, tasks):
        cfg, ld = data["config"], s["low_data"]
        ns, task = cfg["low_data"], next(t for t in cfg["low_data_tasks"] if t.startswith("bare-") == (kind == "bare"))
        gap = {n: ld[f"{PREFIX}|{task}|{n}"]["mean"] - ld[f"{FULL}|{task}|{n}"]["mean"] for n in ns}
        return claim(f"In low data, prefix tuning beats full fine-tuning; the gap shrinks with more data (Li & Liang "
                     f"§6.3): on {task}, a {kind} task", "+2.9 BLEU on average over 50-500 examples",
                     ", ".join(f"n={n}: {100 * gap[n]:+.1f}" for n in ns) + " points (prefix minus full)",
                     partly(gap[ns[0]] > MARGIN and gap[ns[-1]] < gap[ns[0]], gap[ns[0]] > MARGIN),
                     f"prefix ahead by more than {100 * MARGIN:g} points at the smallest n, and by less at the largest "
                     "(partly: only ahead)")
    low_data.__name__ = f"low_data_{kind}"
    return low_data


def prompt_length(data, s, tasks):
    pl = s["prompt_len"]
    lens = [int(p) for p in pl]
    mid = 10 if 10 in lens else lens[len(lens) // 2]
    return claim(f"Gains flatten past a prompt length of about 10-20 (Li & Liang §7.1, Lester §3.2): "
                 f"{PREFIX} on {data['config']['study_task']}",
                 "Li & Liang: best near 200 (summarization) / 10 (table-to-text); Lester: little past 20",
                 ", ".join(f"P={p}: {percent(pl[str(p)]['mean'])}" for p in lens),
                 pl[str(lens[-1])]["mean"] - pl[str(mid)]["mean"] <= 0.02, f"at most 2 points gained past P={mid}")


def depth(data, s, tasks):
    d = {k: v["mean"] for k, v in s["depth"].items()}
    return claim(f"Prefixes near the output matter more; all layers are best (P-tuning v2 §4.4): {PREFIX} on "
                 f"{data['config']['study_task']}",
                 "depth ablation: the layers nearest the output come close to all layers; those nearest the input "
                 "do not", ", ".join(f"{k}: {percent(d[k])}" for k in ("bottom", "top", "all")),
                 partly(d["all"] >= max(d["top"], d["bottom"]) - MARGIN and d["top"] > d["bottom"] + MARGIN,
                        d["top"] > d["bottom"] + MARGIN),
                 "top half ahead of bottom half, all layers within 2 points of the best (partly: only the first)")


def text_init(data, s, tasks):
    ini, n = s["init"], data["config"]["init_n_train"]
    mean = lambda m, i: ini[f"{m}|{i}"]["mean"]  # noqa: E731
    best_text = [m for m in INIT_STUDY if mean(m, "text") >= max(mean(m, i) for i in SOFT_INITS) - MARGIN
                 and mean(m, "text") > mean(m, "random") + MARGIN]  # a tie with the best counts, not one with random
    return claim(f"Initializing from real text helps in low data (Li & Liang §7.3; Lester §3.2), n={n}",
                 "Li & Liang: real-word init beats random in low data; Lester: class labels > sampled vocab > random",
                 "; ".join(f"{m}: " + ", ".join(f"{i} {percent(mean(m, i))}" for i in SOFT_INITS)
                           for m in INIT_STUDY),
                 partly(len(best_text) == len(INIT_STUDY), bool(best_text)),
                 f"text init within {100 * MARGIN:g} points of the best start and more than {100 * MARGIN:g} ahead "
                 "of random, for every method (partly: for some)")


def new_skill(data, s, tasks):
    cfg, sh, main = data["config"], s["shift"], s["main"]
    prompt_vs = [v for v in SHIFT_VARIANTS if v != FULL]
    on = {kind: statistics.fmean(task_mean(main, v, tasks[kind]) for v in prompt_vs) if tasks[kind]
          else float("nan") for kind in ("bare", "composed")}
    best_seed = {v: max(sh[v]["seeds_test"]) for v in prompt_vs}
    top = max(prompt_vs, key=best_seed.get)
    return claim(f"Prompts elicit and combine skills but cannot learn a new one (Petrov, Torr & Bibi 2024): on "
                 f"{NEW_SKILL_TASKS[0]}, the one new-skill task here", "proof: a prefix only biases attention outputs",
                 f"{NEW_SKILL_TASKS[0]} ({cfg['shift_factor']}x steps): best single seed of a prompt method "
                 f"{percent(best_seed[top])} ({top}); {sum(x > 0.05 for v in prompt_vs for x in sh[v]['seeds_test'])} "
                 f"of {sum(len(sh[v]['seeds_test']) for v in prompt_vs)} prompt seeds above 5 %; full "
                 f"{percent(sh[FULL]['mean'])}; prompt methods' mean on {', '.join(tasks['bare'])} "
                 f"{percent(on['bare'])}, on {', '.join(tasks['composed'])} {percent(on['composed'])}",
                 best_seed[top] <= 0.05 and sh[FULL]["mean"] >= 0.5 and on["bare"] >= 0.5,
                 "every seed of every prompt method at most 5 % on the new skill, full at least 50 %, prompts at "
                 "least 50 % on bare tasks")


def ensembles(data, s, tasks):
    ens, singles = data["ensemble"], soft_singles(data)
    wins = [t for t in ens if ens[t]["mean"] >= max(singles[t])]
    return claim(f"An ensemble of prompts beats the best single prompt (Lester §7): {len(singles[next(iter(ens))])} "
                 f"soft prompts (seeds) on {', '.join(ens)}",
                 "SuperGLUE 5-prompt ensemble 90.5 vs best single 90.0 (T5-XXL)",
                 "; ".join(f"{t}: mean-log-prob {percent(ens[t]['mean'])}, vote {percent(ens[t]['vote'])}, "
                           f"best single {percent(max(singles[t]))}, average single "
                           f"{percent(statistics.fmean(singles[t]))}" for t in ens),
                 partly(len(wins) == len(ens), bool(wins)),
                 "mean-log-prob ensemble at least the best single prompt on every headline task (partly: on some)")


def search(data, s, tasks):
    main = s["main"]
    start, found = (statistics.fmean(main[f"{row}|{t}"]["test"]["mean"] for t in tasks["all"])
                    for row in ("discrete search start", "discrete search"))
    return claim(f"Gradient-guided token search improves a prompt (AutoPrompt): on {', '.join(tasks['all'])}, from a "
                 "filler start", "SST-2 (RoBERTa): 85.2 -> 91.4 %",
                 f"{percent(start)} -> {percent(found)} (mean over the tasks and search seeds); soft prompt "
                 f"{percent(task_mean(main, SOFT, tasks['all']))}", found > start,
                 "the search's result above its start")


def small_scale(data, s, tasks):
    on = tasks["composed"] or tasks["all"]
    soft, full = (task_mean(s["main"], v, on) for v in (SOFT, FULL))
    return claim(f"At small scale a soft prompt falls short of full fine-tuning (Lester: they meet only near 11 B): "
                 f"on {', '.join(on)}", "T5-Small SuperGLUE: prompt ~60 vs model tuning ~67; equal at XXL",
                 f"soft {percent(soft)} vs full {percent(full)}", soft < full - 0.05,
                 "soft prompt more than 5 points behind full")


CLAIMS = (matches_full, soft_below_prefix, direct_unstable, low_data_on("bare"), low_data_on("composed"),
          prompt_length, depth, text_init, new_skill, ensembles, search, small_scale)


def verdicts(data: dict, s: dict) -> list[dict]:
    """One row per claim: the paper's numbers, ours, and the rule's verdict.

    The verdicts rest on the headline tasks only, which have `seeds` seeds (at least 3 wherever a
    conclusion is drawn); the other tasks' cells (fewer seeds) are shown in the tables, not judged.
    """
    heads = list(data["config"]["headline_tasks"])
    tasks = {"all": heads, "bare": [t for t in heads if t.startswith("bare-")],
             "composed": [t for t in heads if not t.startswith("bare-")]}
    return [rule(data, s, tasks) for rule in CLAIMS]


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
    return (f"# minprefix compare\n\n{n_runs} tuning runs in {data['seconds'] / 60:.0f} min; steps: "
            f"{steps} ({cfg['shift_factor']}x on "
            f"{NEW_SKILL_TASKS[0]}), ending early at {100 * cfg['stop_at']:g} % dev; {cfg['seeds']} seeds on "
            f"{', '.join(cfg['headline_tasks'])} and in the studies, {cfg['other_seeds']} on the other tasks (shown, "
            "not judged: the verdicts rest on the headline tasks and the studies). Every method at its default "
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
    for task in cfg["low_data_tasks"]:
        out += [f"\n## Low data ({task})\n", table(["training examples", PREFIX, FULL],
                [[n, cell(ld[f"{PREFIX}|{task}|{n}"]), cell(ld[f"{FULL}|{task}|{n}"])] for n in cfg["low_data"]])]
    out += [f"\n## Prefix length ({PREFIX}, {cfg['study_task']})\n", table(["P", "test"],
            [[p, cell(v)] for p, v in s["prompt_len"].items()])]
    out += [f"\n## Depth ({PREFIX}, {cfg['study_task']})\n",
            table(["layers", "test"], [[k, cell(v)] for k, v in s["depth"].items()])]
    out += [f"\n## Initialization ({cfg['init_task']}, {cfg['init_n_train']} training examples)\n",
            table(["method", "random init", "vocab init", "text init"],
                  [[m] + [cell(s["init"][f"{m}|{i}"]) for i in SOFT_INITS] for m in INIT_STUDY])]
    ens, singles = data["ensemble"], soft_singles(data)
    out += [f"\n## Ensembling {cfg['seeds']} soft prompts ({SOFT}) in one batched pass (test)\n",
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
