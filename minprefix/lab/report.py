"""The report of `minprefix compare`: tables, figures and a verdict per claim, from the raw results.

Every verdict is a rule written out below (with its threshold), applied to the measured means;
the prose on *why* a claim holds or not belongs to the README, next to these numbers.
"""

import json
import statistics
from pathlib import Path

from ..artifacts import atomic_write_text
from ..scoring import percent, table
from .compare import (FULL, INIT_STUDY, PREFIX, PREFIX_DIRECT, SHIFT_VARIANTS, SOFT, SOFT_INITS, VARIANTS,
                      lr_of)
from .figures import close, plot_compare_studies, plot_compare_tasks
from ..world import NEW_SKILL_TASKS

UNTRAINED = ("copy baseline", "base, bare input", "hand-written template", "discrete search start", "discrete search")


def variant_of(config: dict) -> str | None:
    return next((name for name, f in VARIANTS.items()
                 if config["method"] == f["method"] and config["init"] == f.get("init")), None)


def stats(results: list[dict], value="test") -> dict:
    v = [r[value] for r in results]
    n = min((r.get(f"n_{value}", 10**9) for r in results), default=0)
    return {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "seeds": len(v),
            "n": n, "diverged": sum(r["diverged"] is not None for r in results)}


def cell(s: dict) -> str:
    """mean ± std over seeds, as a percentage; with the 95 % interval of the mean when a split is under 100."""
    diverged = f" ({s['diverged']} diverged)" if s.get("diverged") else ""
    return f"{percent(s['mean'], s['n'])} ± {100 * s['std']:.1f}{diverged}"


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
        for name in UNTRAINED:  # the search has one result per seed, the others one result
            main[f"{name}|{task}"] = {k: {"mean": statistics.fmean(v), "seeds": len(v), "n": rows[f"n_{k}"],
                                          "std": statistics.stdev(v) if len(v) > 1 else 0.0}
                                      for k in ("dev", "test") for v in [rows[name][k]]}
    shift = {v: stats(rs) for (v,), rs in group(st["shift"], "variant").items()}
    return {
        "main": main,
        "sweep": {f"{v}|{lr:g}": statistics.fmean(r["dev"] for r in rs)
                  for (v, lr), rs in group(data["sweep"], "variant", "lr").items()},
        "low_data": {f"{variant_of(rs[0]['config'])}|{n}": stats(rs) for (n, _), rs in
                     group(st["low_data"], "n_train", "method").items()},
        "prompt_len": {str(p): stats(rs) for (p,), rs in group(st["prompt_len"], "prompt_len").items()},
        "depth": {layers: stats(rs) for (layers,), rs in group(st["depth"], "prefix_layers").items()},
        "init": {f"{m}|{i}": stats(rs) for (m, i), rs in group(st["init"], "method", "init").items()},
        "shift": shift,
    }


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


# Each claim is a small rule over the summary: (data, summary, tasks) -> one row. `tasks` splits the
# main table's tasks by kind, since eliciting a skill (bare) and composing two (composed) are different claims.

def matches_full(data, s, tasks):
    prefix, full = (task_mean(s["main"], v, tasks["all"]) for v in (PREFIX, FULL))
    return claim("Prefix tuning matches full fine-tuning (Li & Liang)", "E2E BLEU 70.3 (prefix, 0.1 %) vs 68.8 (full)",
                 f"{percent(prefix)} vs {percent(full)} mean test exact match over {len(tasks['all'])} tasks",
                 prefix >= full - 0.05, "prefix within 5 points of full, or ahead")


def soft_below_prefix(data, s, tasks):
    soft, prefix = (task_mean(s["main"], v, tasks["all"]) for v in (SOFT, PREFIX))
    return claim("Embedding-only (soft prompt) is weaker than a prefix at every layer (Li & Liang)",
                 "62.2 vs 70.3 BLEU", f"{percent(soft)} vs {percent(prefix)}", soft < prefix,
                 "soft prompt's mean below the prefix's")


def direct_unstable(data, s, tasks):
    heads, main = data["config"]["headline_tasks"], s["main"]
    std = {v: statistics.fmean(main[f"{v}|{t}"]["test"]["std"] for t in heads) for v in (PREFIX_DIRECT, PREFIX)}
    mean = {v: task_mean(main, v, tasks["all"]) for v in (PREFIX_DIRECT, PREFIX)}
    swing = {v: max(val for k, val in s["sweep"].items() if k.startswith(v + "|")) -
             min(val for k, val in s["sweep"].items() if k.startswith(v + "|")) for v in (PREFIX_DIRECT, PREFIX)}
    return claim("Direct optimization of the prefix is unstable; the MLP stabilizes it (Li & Liang §4.3)",
                 "qualitative: direct 'unstable', 'very sensitive to initialization'",
                 f"seed std {100 * std[PREFIX_DIRECT]:.1f} vs {100 * std[PREFIX]:.1f} points, lr-sweep range "
                 f"{100 * swing[PREFIX_DIRECT]:.1f} vs {100 * swing[PREFIX]:.1f} points, mean "
                 f"{percent(mean[PREFIX_DIRECT])} vs {percent(mean[PREFIX])} (direct vs MLP)",
                 partly(std[PREFIX_DIRECT] > std[PREFIX] and mean[PREFIX_DIRECT] < mean[PREFIX],
                        mean[PREFIX_DIRECT] < mean[PREFIX]),
                 "direct has the larger seed spread and the lower mean (partly: only the lower mean)")


def low_data(data, s, tasks):
    cfg, ld = data["config"], s["low_data"]
    ns = cfg["low_data"]
    gap = {n: ld[f"{PREFIX}|{n}"]["mean"] - ld[f"{FULL}|{n}"]["mean"] for n in ns}
    return claim(f"In low data, prefix tuning beats full fine-tuning; the gap shrinks with more data (Li & Liang "
                 f"§6.3), on {cfg['study_task']} only", "+2.9 BLEU on average over 50-500 examples",
                 ", ".join(f"n={n}: {100 * gap[n]:+.1f}" for n in ns) + " points (prefix minus full)",
                 partly(gap[ns[0]] > 0 and gap[ns[-1]] < gap[ns[0]], gap[ns[0]] > 0),
                 "prefix ahead at the smallest n, and by less at the largest (partly: only ahead)")


def prompt_length(data, s, tasks):
    pl = s["prompt_len"]
    lens = [int(p) for p in pl]
    mid = 10 if 10 in lens else lens[len(lens) // 2]
    return claim("Gains flatten past a prompt length of about 10-20 (Li & Liang §7.1, Lester §3.2)",
                 "Li & Liang: best near 200 (summarization) / 10 (table-to-text); Lester: little past 20",
                 ", ".join(f"P={p}: {percent(pl[str(p)]['mean'])}" for p in lens),
                 pl[str(lens[-1])]["mean"] - pl[str(mid)]["mean"] <= 0.02, f"at most 2 points gained past P={mid}")


def depth(data, s, tasks):
    d = {k: v["mean"] for k, v in s["depth"].items()}
    return claim("Prefixes near the output matter more; all layers are best (P-tuning v2 §4.4)",
                 "depth ablation: the layers nearest the output come close to all layers; those nearest the input "
                 "do not", ", ".join(f"{k}: {percent(d[k])}" for k in ("bottom", "top", "all")),
                 partly(d["all"] >= max(d["top"], d["bottom"]) - 0.02 and d["top"] >= d["bottom"],
                        d["top"] >= d["bottom"]),
                 "top half ahead of bottom half, all layers within 2 points of the best (partly: only the first)")


def text_init(data, s, tasks):
    ini, n = s["init"], data["config"]["init_n_train"]
    best_text = [m for m in INIT_STUDY if ini[f"{m}|text"]["mean"] >=
                 max(ini[f"{m}|{i}"]["mean"] for i in SOFT_INITS)]
    return claim(f"Initializing from real text helps in low data (Li & Liang §7.3; Lester §3.2), n={n}",
                 "Li & Liang: real-word init beats random in low data; Lester: class labels > sampled vocab > random",
                 "; ".join(f"{m}: " + ", ".join(f"{i} {percent(ini[f'{m}|{i}']['mean'])}" for i in SOFT_INITS)
                           for m in INIT_STUDY),
                 partly(len(best_text) == len(INIT_STUDY), bool(best_text)),
                 "text init the best of the three for every method (partly: for some)")


def new_skill(data, s, tasks):
    cfg, sh, main = data["config"], s["shift"], s["main"]
    prompt_vs = [v for v in SHIFT_VARIANTS if v != FULL]
    on = {kind: statistics.fmean(task_mean(main, v, tasks[kind]) for v in prompt_vs) if tasks[kind]
          else float("nan") for kind in ("bare", "composed")}
    best_prompt = max(sh[v]["mean"] for v in prompt_vs)
    return claim("Prompts elicit and combine skills but cannot learn a new one (Petrov, Torr & Bibi 2024)",
                 "proof: a prefix only biases attention outputs",
                 f"{NEW_SKILL_TASKS[0]} ({cfg['shift_factor']}x steps): best prompt method "
                 f"{percent(best_prompt)}, full {percent(sh[FULL]['mean'])}; prompt methods' mean on bare tasks "
                 f"{percent(on['bare'])}, on composed {percent(on['composed'])}",
                 best_prompt <= 0.05 and sh[FULL]["mean"] >= 0.5 and on["bare"] >= 0.5,
                 "every prompt method at most 5 % on the new skill, full at least 50 %, prompts at least 50 % on "
                 "bare tasks")


def ensembles(data, s, tasks):
    ens, singles = data["ensemble"], soft_singles(data)
    wins = [t for t in ens if ens[t]["mean"] >= max(singles[t])]
    return claim("An ensemble of prompts beats the best single prompt (Lester §7)",
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
    return claim("Gradient-guided token search improves a prompt (AutoPrompt)", "SST-2 (RoBERTa): 85.2 -> 91.4 %",
                 f"{percent(start)} -> {percent(found)} (mean over tasks); soft prompt "
                 f"{percent(task_mean(main, SOFT, tasks['all']))}", found > start,
                 "the search's result above its start")


def small_scale(data, s, tasks):
    on = tasks["composed"] or tasks["all"]
    soft, full = (task_mean(s["main"], v, on) for v in (SOFT, FULL))
    return claim("At small scale a soft prompt falls short of full fine-tuning (Lester: they meet only near 11 B)",
                 "T5-Small SuperGLUE: prompt ~60 vs model tuning ~67; equal at XXL",
                 f"composed tasks: soft {percent(soft)} vs full {percent(full)}", soft < full - 0.05,
                 "soft prompt more than 5 points behind full on the composed tasks")


CLAIMS = (matches_full, soft_below_prefix, direct_unstable, low_data, prompt_length, depth, text_init, new_skill,
          ensembles, search, small_scale)


def verdicts(data: dict, s: dict) -> list[dict]:
    """One row per claim: the paper's numbers, ours, and the rule's verdict."""
    all_tasks = data["config"]["tasks"]
    tasks = {"all": all_tasks, "bare": [t for t in all_tasks if t.startswith("bare-")],
             "composed": [t for t in all_tasks if not t.startswith("bare-")]}
    return [rule(data, s, tasks) for rule in CLAIMS]


# ---------------------------------------------------------------------------- markdown


def markdown(data: dict, s: dict, claims: list[dict]) -> str:
    cfg, main, n_base = data["config"], s["main"], data["n_base"]
    tasks = cfg["tasks"]
    out = [f"# minprefix compare\n\n{len(data['sweep']) + sum(map(len, data['studies'].values()))} tuning runs "
           f"(shared cells run once) in {data['seconds'] / 60:.0f} min; {cfg['steps']} steps each "
           f"({cfg['shift_factor']}x on {NEW_SKILL_TASKS[0]}), {cfg['seeds']} seeds ({cfg['headline_seeds']} on "
           f"{', '.join(cfg['headline_tasks'])}). Base: {n_base:,} parameters. Test exact match, mean ± std over "
           "seeds; [95 % interval of the mean] where a split has fewer than 100 examples.",
           "\n## Claims\n", table(["claim", "paper", "here", "verdict", "rule"], [
               [c["claim"], c["paper"], c["here"], f"**{c['verdict']}**", c["rule"]] for c in claims], 9)]
    factors = cfg["lr_factors"]
    out += ["\n## Learning-rate sweep (seed 0, mean dev over " + ", ".join(cfg["headline_tasks"]) + ")\n",
            table(["method"] + [f"default x {f:.3g}" for f in factors] + ["chosen lr"],
                  [[v] + [f"{100 * s['sweep'][key]:.1f} %" for f in factors for key in [f"{v}|{lr_of(v, f):g}"]]
                   + [f"{data['lrs'][v]:g}"] for v in VARIANTS])]
    for task in cfg["headline_tasks"]:
        rows = [[name, "-", "-", "-", cell(main[f"{name}|{task}"]["dev"]), cell(main[f"{name}|{task}"]["test"])]
                for name in UNTRAINED]
        rows += [[v, f"{m['trainable']:,}", f"{100 * m['trainable'] / n_base:.2f} %", f"{m['stored']:,}",
                  cell(m["dev"]), cell(m["test"])] for v in VARIANTS for m in [main[f"{v}|{task}"]]]
        out += [f"\n## Headline: {task} ({cfg['headline_seeds']} seeds)\n",
                table(["method", "trainable", "share of base", "stored", "dev", "test"], rows)]
    out += ["\n## Every task (test)\n", table(["method"] + list(tasks) + [f"{NEW_SKILL_TASKS[0]} (new skill)"],
            [[v] + [cell(main[f"{v}|{t}"]["test"]) for t in tasks] +
             [cell(s["shift"][v]) if v in s["shift"] else (cell(main[f"{v}|{NEW_SKILL_TASKS[0]}"]["test"])
                                                           if f"{v}|{NEW_SKILL_TASKS[0]}" in main else "-")]
             for v in UNTRAINED + tuple(VARIANTS)])]
    shift_runs = group(data["studies"]["shift"], "variant")
    out += [f"\n## New skill ({NEW_SKILL_TASKS[0]}, {cfg['steps'] * cfg['shift_factor']} steps): every seed (test)\n",
            table(["method", "test exact match, seed by seed"],
                  [[v, ", ".join(f"{100 * r['test']:.1f} %" for r in rs)] for (v,), rs in shift_runs.items()])]
    ld = s["low_data"]
    out += [f"\n## Low data ({cfg['study_task']})\n", table(["training examples", PREFIX, FULL],
            [[n, cell(ld[f"{PREFIX}|{n}"]), cell(ld[f"{FULL}|{n}"])] for n in cfg["low_data"]])]
    out += [f"\n## Prefix length ({PREFIX}, {cfg['study_task']})\n", table(["P", "test"],
            [[p, cell(v)] for p, v in s["prompt_len"].items()])]
    out += [f"\n## Depth ({PREFIX}, {cfg['study_task']})\n",
            table(["layers", "test"], [[k, cell(v)] for k, v in s["depth"].items()])]
    out += [f"\n## Initialization ({cfg['init_task']}, {cfg['init_n_train']} training examples)\n",
            table(["method", "random init", "vocab init", "text init"],
                  [[m] + [cell(s["init"][f"{m}|{i}"]) for i in SOFT_INITS] for m in INIT_STUDY])]
    ens, singles = data["ensemble"], soft_singles(data)
    out += [f"\n## Ensembling {cfg['headline_seeds']} soft prompts ({SOFT}) in one batched pass (test)\n",
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
