"""A grid of tuning runs: many TuneConfigs, each run once, results kept so that nothing is computed twice.

Lessons 5 and 6 run small grids with it (seeds x learning rates, methods x tasks); a results file
makes a grid resumable: every finished cell is written at once (atomically), and a rerun skips it.
"""

import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from .artifacts import atomic_save
from .params import count_stored, count_trainable
from .train import TuneConfig, score, tune
from .world import examples


def cell_key(cfg: TuneConfig) -> str:
    return json.dumps(asdict(cfg), sort_keys=True)


def run_grid(base, tok, configs: list[TuneConfig], path=None, device="cpu", progress=True,
             n_test: int = 200) -> list[dict]:
    """Tune every config; returns one result per config, in order.

    A result holds the config, the dev history, the best dev exact match and the test exact match
    of the best dev weights (on up to n_test examples), trainable and stored counts, and seconds.
    A run whose loss became NaN or infinite scores 0, with the reason under "diverged".
    path: a JSON file of finished cells, read first and rewritten after every cell.
    """
    path = Path(path) if path is not None else None
    done = json.loads(path.read_text()) if path is not None and path.exists() else {}
    todo = [cfg for cfg in configs if cell_key(cfg) not in done]
    bar = tqdm(total=len(configs), initial=len(configs) - len(todo), desc="grid", disable=not progress)
    for cfg in todo:
        t0 = time.time()
        try:
            model, history = tune(base, tok, cfg, device=device, progress=False)
        except FloatingPointError as e:  # a diverged run is a result too: it counts as 0, and says why
            done[cell_key(cfg)] = {"config": asdict(cfg), "history": [], "seconds": time.time() - t0,
                                   "dev": 0.0, "test": 0.0, "diverged": str(e)}
        else:
            test = score(model, tok, examples(cfg.task, "test", n_test))
            done[cell_key(cfg)] = {
                "config": asdict(cfg), "history": history, "seconds": time.time() - t0, "diverged": None,
                "dev": max(h["dev_exact_match"] for h in history), "n_dev": len(examples(cfg.task, "dev", cfg.n_dev)),
                "test": test["exact_match"], "n_test": test["n"],
                "trainable": count_trainable(model), "stored": count_stored(model),
            }
        if path is not None:
            atomic_save(json.dumps(done, indent=1), path, saver=lambda s, p: Path(p).write_text(s))
        bar.update(1)
    bar.close()
    return [done[cell_key(cfg)] for cfg in configs]


def summarize(results: list[dict], by: tuple[str, ...], value: str = "dev") -> list[dict]:
    """Mean, standard deviation, min and max of `value` over the results that share the fields `by`."""
    groups: dict[tuple, list[float]] = {}
    for r in results:
        groups.setdefault(tuple(r["config"][k] for k in by), []).append(r[value])
    return [{**dict(zip(by, key)), "n": len(v), "mean": statistics.fmean(v),
             "std": statistics.stdev(v) if len(v) > 1 else 0.0, "min": min(v), "max": max(v)}
            for key, v in groups.items()]
