"""A grid of tuning runs: many TuneConfigs, each run once, results kept so that nothing is computed twice.

Lessons 5 and 6 run small grids with it (seeds x learning rates, methods x tasks), and so does
`minprefix compare`. A results file makes a grid resumable: every finished cell is written at
once (atomically), and a rerun skips it. Cells can run in several processes at once.

Reading finished runs is here too: the best-so-far dev curve and whether it had converged, the
criterion that `minprefix sweep`, `compare` and `reparam` share, with its defaults (GRID_STEPS,
EVAL_EVERY, TOLERANCE).
"""

import copy
import hashlib
import json
import multiprocessing
import signal
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm  # the text bar: in a notebook without ipywidgets, tqdm.auto warns and falls back to it

from ..artifacts import save_prompt
from ..files import atomic_write_text, fingerprint, read_json, short
from ..base import SHIPPED_DIR
from ..params import count_stored, count_trainable
from ..methods import METHODS
from ..scoring import score
from ..tune import TuneConfig, tune
from ..world import examples


class ResultStore:
    """A JSON file of finished results keyed by text; `put` rewrites it atomically. path=None: in memory."""

    def __init__(self, path=None):
        self.path = Path(path) if path is not None else None
        self.data = {}
        if self.path is not None and self.path.exists():
            try:
                self.data = read_json(self.path, "results file")
            except ValueError as e:
                raise ValueError(f"{e}: it is not a results file; delete it to start over") from None
            if not isinstance(self.data, dict):
                raise ValueError(f"{self.path} is not a results file (a JSON {type(self.data).__name__}, not an "
                                 "object): delete it to start over")

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __getitem__(self, key: str):
        return self.data[key]

    def put(self, key: str, value):
        self.put_many({key: value})

    def put_many(self, items: dict):
        self.data.update(items)
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(self.data, indent=1))


FIGURES = Path(__file__).resolve().parents[2] / "figures"  # in a checkout of the repository


def load_committed(name: str, path=None, base: str | None = None) -> dict:
    """figures/NAME.json (or path): the results `minprefix NAME` wrote, which lessons read instead of rerunning.

    Warns if any run in it was measured on a base other than `base` (a fingerprint; default: the
    shipped base's): after a rebuild, the stored numbers describe the old base until rerun.
    """
    path = Path(path) if path is not None else FIGURES / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no stored results at {path}: run `minprefix {name} --out {path.parent}` "
                                "(resumable; its --help says how long it takes)")
    data = read_results(path, name) if name in SCHEMAS else read_json(path, f"{name} results file")
    base = base or json.loads((SHIPPED_DIR / "config.json").read_text())["fingerprint"]
    try:
        other = sorted({str(base_of(r)) for r in results_in(data)} - {base})
    except RecursionError:
        raise ValueError(f"{path}: nested too deep to be a {name} results file") from None
    if other:
        warnings.warn(f"{path} holds runs measured on base {', '.join(other)}, not on base {base}: its numbers are "
                      f"that base's until `minprefix {name}` reruns them on this one", stacklevel=2)
    return data


def results_in(obj) -> list[dict]:
    """Every run result (a dict with a config and a history) anywhere inside a results file's JSON."""
    if isinstance(obj, dict):
        return [obj] if "config" in obj and "history" in obj else [r for v in obj.values() for r in results_in(v)]
    return [r for v in obj for r in results_in(v)] if isinstance(obj, list) else []


LEGACY_BASE = "d33c4eaed4443516"  # the base of every result stored before results named their base


def base_of(result: dict) -> str:
    """The fingerprint of the base a stored result was measured on."""
    return result.get("base", LEGACY_BASE)


def adopt(path, earlier, base: str) -> tuple[int, int]:
    """Count the runs inside the JSON file `earlier` (e.g. a committed figures/sweep.json) that were measured on
    the base with fingerprint `base` as finished cells of the results file at path; a cell already there is
    kept. Returns (added, skipped because measured on another base)."""
    try:
        found = results_in(read_json(earlier, "--from file"))
    except RecursionError:
        raise ValueError(f"--from {earlier}: nested too deep to be a results file") from None
    wrong = next((r for r in found if not isinstance(r["config"], dict) or not isinstance(r["history"], list)), None)
    if wrong is not None:
        raise ValueError(f"--from {earlier}: a run's 'config' is {short(repr(wrong['config']))[:60]} and its "
                         f"'history' a {type(wrong['history']).__name__}: not runs of minprefix; pass a sweep.json "
                         "or reparam.json it wrote")
    store = ResultStore(path)
    ours = [r for r in found if base_of(r) == base]
    new = {config_key(r["config"]): r for r in ours if config_key(r["config"]) not in store}
    store.put_many(new)
    return len(new), len(found) - len(ours)


SCHEMAS = {  # the top-level fields of each results file a command reads back, and their JSON types
    "compare": {"config": dict, "lrs": dict, "steps": dict, "untrained": dict, "studies": dict, "ensemble": dict,
                "n_base": int, "seconds": (int, float)},
    "sweep": {"config": dict, "fields": dict, "methods": dict},
    "reparam": {"config": dict, "d_model": int, "lrs": dict, "map": dict, "chosen": dict, "sensitivity": dict,
                "question_cell": str, "k": dict, "h": dict, "form": dict, "init": dict},
}


def read_results(path, name: str) -> dict:
    """The results file `minprefix NAME` wrote at path, its structure checked (`SCHEMAS`): one line if not."""
    data = read_json(path, f"{name} results file")
    rerun = f"rerun `minprefix {name}` to write it again"
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {name} results file is a JSON object, not a {type(data).__name__}: {rerun}")
    for key, kind in SCHEMAS[name].items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise ValueError(f"{path}: field {key!r} is missing or of the wrong type (an older format, or not a "
                             f"{name}.json): {rerun}")
    return data


# TuneConfig fields added after results were stored, and their defaults
LATER_FIELDS = {"stop_at": None, "compile": False}


def config_key(config: dict) -> str:
    """A result's key: its config as JSON, less any later field at its default (stored results stay found)."""
    return json.dumps({k: v for k, v in config.items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]},
                      sort_keys=True)


def cell_key(cfg: TuneConfig) -> str:
    return config_key(asdict(cfg))


def artifact_name(cfg: TuneConfig) -> str:
    """The file name of a cell's artifact: a short hash of its config."""
    return hashlib.sha256(cell_key(cfg).encode()).hexdigest()[:16] + ".safetensors"


def run_cell(base, tok, cfg: TuneConfig, device="cpu", n_test: int = 200, artifacts=None, threads: int = 1) -> dict:
    """One tuning run, scored: the result `run_grid` keeps (artifacts: a folder for its prompt, or None).

    The run uses `threads` torch threads whatever the caller's setting (and restores it): the
    order of a float sum depends on the thread count, so fixing it makes a cell's numbers the
    same whether the grid runs it alone or beside others. Every step's training loss is kept.
    """
    t0, before, losses, base_id = time.time(), torch.get_num_threads(), [], fingerprint(base)
    torch.set_num_threads(threads)
    try:
        model, history = tune(base, tok, cfg, device=device, progress=False,
                              on_step=lambda step, loss: losses.append(loss))
    except FloatingPointError as e:  # a diverged run is a result too: it counts as 0, and says why
        return {"config": asdict(cfg), "base": base_id, "history": [], "losses": losses,
                "seconds": time.time() - t0, "dev": 0.0, "test": 0.0, "diverged": str(e), "threads": threads}
    finally:
        torch.set_num_threads(before)
    if artifacts is not None and not METHODS[cfg.method].trains_base:  # full fine-tuning would store a whole base
        save_prompt(model, Path(artifacts) / artifact_name(cfg), base, {"task": cfg.task})
    test = score(model, tok, examples(cfg.task, "test", n_test))
    return {
        "config": asdict(cfg), "base": base_id, "history": history, "losses": losses, "seconds": time.time() - t0,
        "diverged": None, "device": str(device),
        "dev": max(h["dev_exact_match"] for h in history), "n_dev": len(examples(cfg.task, "dev", cfg.n_dev)),
        "test": test["exact_match"], "n_test": test["n"], "threads": threads,
        "scoring_seconds": history[-1]["scoring_time"],  # of the run's seconds, those spent scoring dev
        "trainable": count_trainable(model), "stored": count_stored(model),
    }


GRID_WORKERS = 2  # processes; see run_grid
_WORKER = {}  # each worker process's copy of the base and tokenizer


def _start_worker(base, tok, devices):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle: it stops the workers
    _WORKER.update(base=base, tok=tok, device=devices.get())  # each worker takes one device name, once


def _worker_cell(cfg, n_test, artifacts, threads):
    return run_cell(_WORKER["base"], _WORKER["tok"], cfg, _WORKER["device"], n_test, artifacts, threads)


def _run_in_processes(base, tok, todo, store, bar, devices, args):
    """run_grid's cells in one spawned process per entry of `devices`; each finished cell is saved at once."""
    context = multiprocessing.get_context("spawn")
    names = context.Queue()
    for name in devices:
        names.put(name)
    pool = ProcessPoolExecutor(len(devices), mp_context=context, initializer=_start_worker,
                               initargs=(copy.deepcopy(base).cpu(), tok, names))  # a copy: the caller's stays put
    try:
        jobs = {pool.submit(_worker_cell, cfg, *args): cfg for cfg in todo}
        for job in as_completed(jobs):
            store.put(cell_key(jobs[job]), job.result())  # saved at once: an interruption loses no finished cell
            bar.update(1)
    except KeyboardInterrupt:  # finished cells are saved; the ones in progress are stopped, not waited for
        for process in list(pool._processes.values()):
            process.terminate()
        raise
    except BrokenProcessPool:
        raise RuntimeError("run_grid's worker processes stopped before finishing (killed, out of memory, or a "
                           "script that runs a grid with workers > 1 not started under `if __name__ == "
                           "'__main__':`, which each worker needs to import it); finished cells are kept: rerun to "
                           "resume, or pass workers=1") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # on an error or Ctrl-C, start no further cell


def run_grid(base, tok, configs: list[TuneConfig], path=None, device="cpu", progress=True,
             n_test: int = 200, workers: int = GRID_WORKERS, artifacts=None, threads: int = 1) -> list[dict]:
    """Tune every config; returns one result per config, in order.

    A result holds the config, the dev history, the best dev exact match and the test exact match
    of the best dev weights (on up to n_test examples), trainable and stored counts, and seconds.
    A run whose loss became NaN or infinite scores 0, with the reason under "diverged".
    path: a JSON file of finished cells, read first and rewritten after every cell; a cell measured on
    another base (a rebuilt one) is run again and replaced, never taken for this base's.
    workers > 1: that many processes at once, all on `device`; or device a list of device names, one
    process each (e.g. ["cuda"] * 8 + ["cpu"] * 6: processes share a GPU, each runs one cell at a time).
    threads: torch threads per run, fixed so that a cell's numbers do not depend on `workers`.
    The defaults are the fastest setting `minprefix bench --grid` measured on 2 CPU cores.
    artifacts: a folder that receives each prompt's artifact, named by `artifact_name`.
    """
    store, base_id = ResultStore(path), fingerprint(base)
    done = {k for k, r in store.data.items() if base_of(r) == base_id}
    todo = list({cell_key(cfg): cfg for cfg in configs if cell_key(cfg) not in done}.values())
    if artifacts is not None:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(todo), desc="grid", disable=not progress or not todo)
    devices = list(device) if isinstance(device, list | tuple) else [device] * workers
    if len(devices) > 1 and len(todo) > 1:
        _run_in_processes(base, tok, todo, store, bar, devices, (n_test, artifacts, threads))
    else:
        for cfg in todo:
            store.put(cell_key(cfg), run_cell(base, tok, cfg, devices[0], n_test, artifacts, threads))
            bar.update(1)
    bar.close()
    return [store[cell_key(cfg)] for cfg in configs]


def summarize(results: list[dict], by: tuple[str, ...], value: str = "dev") -> list[dict]:
    """Mean, standard deviation, min and max of `value` over the results that share the fields `by`."""
    groups: dict[tuple, list[float]] = {}
    for r in results:
        groups.setdefault(tuple(r["config"][k] for k in by), []).append(r[value])
    return [{**dict(zip(by, key)), "n": len(v), "mean": statistics.fmean(v),
             "std": statistics.stdev(v) if len(v) > 1 else 0.0, "min": min(v), "max": max(v)}
            for key, v in groups.items()]


# ---------------------------------------------------------------------------- reading finished runs

GRID_STEPS = 800  # optimizer steps of a sweep's first round (the default of full, soft and prefix-mlp)
EVAL_EVERY = 100  # steps between dev evaluations
TOLERANCE = 0.01  # converged: the best-so-far dev score rose at most this over the last quarter of the steps


def best_so_far(results: list[dict]) -> list[tuple[int, float]]:
    """(step, mean over runs of the best dev exact match up to that step); diverged runs count 0, and a run
    that ended early (`TuneConfig.stop_at`) keeps its last best."""
    steps = max(([h["step"] for h in r["history"]] for r in results), key=len, default=[])
    curve = []
    for i, step in enumerate(steps):
        curve.append((step, statistics.fmean(max((h["dev_exact_match"] for h in r["history"][:i + 1]), default=0.0)
                                             for r in results)))
    return curve


def converged(results: list[dict], steps: int, tolerance: float) -> dict:
    """Whether the runs' best-so-far curve rose by at most `tolerance` over the last quarter of `steps`."""
    curve = best_so_far(results)
    if not curve:
        return {"converged": False, "rise": None}
    at = max((v for s, v in curve if s <= 0.75 * steps), default=curve[0][1])
    rise = curve[-1][1] - at
    return {"converged": rise <= tolerance + 1e-9, "rise": rise}  # 1e-9: a rise of exactly 1 point is 1 point
