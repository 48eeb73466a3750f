"""Every loader, fed random files: each loads, or refuses with the library's one-line ValueError (FileNotFoundError
for a missing file), never another exception, never a hang.

Random bytes first, then files of the right structure with random content: safetensors files with random
tensor names, dtypes, shapes and metadata, made from real artifacts, checkpoints and bases with random fields
changed, and JSON of random structure where a results file is read. tests/test_faults.py has one hand-written
case per fault; these are the cases nobody thought of."""
import json
import math
import random
import time
import warnings
from pathlib import Path

import pytest
import torch
from helpers import TOK, quick, tiny_base
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import minprefix.cli
from minprefix.artifacts import FORMAT, load_prompt, save_prompt
from minprefix.files import fingerprint, read_tensors
from minprefix.base import load_model, save_base
from minprefix.checkpoint import Checkpoint, read_checkpoint
from minprefix.lab.figures import close, plot_reparam, plot_sweep
from minprefix.lab.grid import SCHEMAS, ResultStore, adopt, load_committed, read_results
from minprefix.lab.report import write_report
from minprefix.methods import METHODS
from minprefix.train import make_optimizer
from minprefix.tune import build_method, tune

# The same 60 cases of each test every run (derandomize: CI reproducible), each in at most 5 s (a hang fails);
# to search wider, raise max_examples and drop derandomize.
SETTINGS = settings(max_examples=60, deadline=5000, suppress_health_check=list(HealthCheck), derandomize=True)
with torch.random.fork_rng():  # tiny_base seeds torch: the global generator stays as the other tests find it
    BASE = tiny_base()
SIZES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1}  # safetensors' dtypes
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
SHAPE = st.lists(st.integers(0, 6), max_size=5)
HOW = st.sampled_from(["fields", "tensors", "both"])  # what a structured case changes: header fields, tensors, both


def loads_or_refuses(fn, *args):
    """fn(*args) returns, or raises the library's one-line ValueError or FileNotFoundError."""
    try:
        return fn(*args)
    except (ValueError, FileNotFoundError) as e:
        assert "\n" not in str(e), f"a message of more than one line: {e}"
    except Exception as e:  # noqa: B902 - the property: nothing else
        pytest.fail(f"{fn.__name__} raised {type(e).__name__}: {e}")


def write_safetensors(path, tensors: dict, metadata: dict | None, seed: int = 0):
    """A safetensors file written byte by byte: tensors {name: (dtype, shape)} with random data, any metadata."""
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = math.prod(shape) * SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata is not None:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    Path(path).write_bytes(len(raw).to_bytes(8, "little") + raw + random.Random(seed).randbytes(offset))


def changed(info: dict, draw, how: str = "both") -> dict:
    """info with a few fields replaced by random JSON or dropped (none, if `how` is "tensors")."""
    info = dict(info)
    for key in draw(st.lists(st.sampled_from(sorted(info) + ["layers", "extra"]), min_size=how != "tensors",
                             max_size=3 * (how != "tensors"))):
        if draw(st.booleans()):
            info[key] = draw(JSON)
        else:
            info.pop(key, None)
    return info


def reshaped(shapes: dict, draw, how: str = "both") -> dict:
    """{name: (dtype, shape)}: a file's tensors, some of them of another dtype or shape, renamed, added or dropped
    (none, if `how` is "fields")."""
    dtype = draw(st.sampled_from(["F32", "F32", "F16", "BF16", "F64", "each its own"]))
    tensors = {k: (draw(st.sampled_from(sorted(SIZES))) if dtype == "each its own" else dtype, s)
               for k, s in shapes.items()}
    for key in draw(st.lists(st.sampled_from(sorted(tensors) + ["extra"]), min_size=how != "fields",
                             max_size=2 * (how != "fields"))):
        kind = draw(st.sampled_from(["shape", "drop", "rename"]))
        if kind == "shape" or key not in tensors:
            tensors[key] = (draw(st.sampled_from(sorted(SIZES))), draw(SHAPE))
        elif kind == "drop":
            del tensors[key]
        else:
            tensors[key + "x"] = tensors.pop(key)
    return tensors


def real_file(path) -> tuple[dict, dict]:
    """(info less its checksum, {name: shape}) of a file minprefix wrote."""
    info, tensors = read_tensors(path)
    return {k: v for k, v in info.items() if k not in ("sha256", "covers")}, {k: list(v.shape) for k, v in
                                                                               tensors.items()}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A real artifact of every method, a real checkpoint and a real base, to change at random."""
    folder = tmp_path_factory.mktemp("real")
    artifacts = {}
    for name in METHODS:
        model = build_method(BASE, TOK, quick(name))
        save_prompt(model, folder / f"{name}.safetensors", BASE)
        artifacts[name] = real_file(folder / f"{name}.safetensors")
    cfg = quick("prefix", steps=2, eval_every=2, n_dev=4)
    tune(BASE, TOK, cfg, run_dir=folder / "run", progress=False)
    save_base(BASE, folder / "base")
    return {"artifacts": artifacts, "checkpoint": real_file(folder / "run" / "checkpoint.safetensors"), "cfg": cfg,
            "base": json.loads((folder / "base" / "config.json").read_text())}


def resume(path, cfg):
    """What `tune` does with a run folder's checkpoint: read it and restore the model and optimizer from it."""
    model = build_method(BASE, TOK, cfg)
    opt = make_optimizer(model.parameters(), cfg.peak_lr, cfg.weight_decay)
    checkpoint = Checkpoint(path.parent, cfg, {"base": fingerprint(BASE), "init_from": None})
    return checkpoint.resume(model, opt, {}, "cpu")


# ---------------------------------------------------------------------------- random bytes


@SETTINGS
@given(data=st.binary(max_size=300) | st.builds(lambda n, b: len(b).to_bytes(8, "little")[:n] + b,
                                                 st.integers(0, 8), st.binary(max_size=300)))
@example(data=b"[" * 600 + b"]" * 600)  # JSON that parses, nested deeper than a recursive reader can follow
@example(data=b"[" * 1500 + b"]" * 1500)  # (the same, with the recursion limit hypothesis sets)
@example(data=b"[" * 100_000 + b"]" * 100_000)  # JSON nested deeper than the parser follows
def test_random_bytes_are_loaded_by_no_loader(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bytes")
    path = folder / "file"
    path.write_bytes(data)
    loads_or_refuses(load_prompt, path, BASE)
    loads_or_refuses(read_checkpoint, path)
    for name in SCHEMAS:
        loads_or_refuses(read_results, path, name)
    loads_or_refuses(ResultStore, path)
    loads_or_refuses(adopt, folder / "results.json", path, fingerprint(BASE))
    loads_or_refuses(load_committed, "sweep", path, fingerprint(BASE))
    (folder / "config.json").write_bytes(data)
    (folder / "model.safetensors").write_bytes(data)
    loads_or_refuses(load_model, folder)


# ---------------------------------------------------------------------------- safetensors of random content


@SETTINGS
@given(st.data())
def test_artifacts_with_random_fields_load_or_are_refused(tmp_path_factory, real, data):
    draw = data.draw
    info, shapes = real["artifacts"][draw(st.sampled_from(sorted(real["artifacts"])))]
    how = draw(HOW)
    path = tmp_path_factory.mktemp("artifact") / "a.safetensors"
    metadata = draw(st.sampled_from(["changed", "random", "none"]))
    if metadata == "changed":
        metadata = {"minprefix": json.dumps(changed(info, draw, how))}
    elif metadata == "random":
        metadata = draw(st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3))
    else:
        metadata = None
    write_safetensors(path, reshaped(shapes, draw, how), metadata, seed=draw(st.integers(0, 3)))
    model = loads_or_refuses(load_prompt, path, BASE)
    if model is not None and not isinstance(model, type(BASE)):
        assert model.base is BASE


@SETTINGS
@given(st.data())
def test_artifacts_of_random_shapes_and_well_formed_metadata_load_or_are_refused(tmp_path_factory, data):
    draw = data.draw
    shape = draw(SHAPE)
    method = draw(st.sampled_from(sorted(METHODS) + ["soft-prompt", "nope"]))
    info = {"format": FORMAT, "method": method, "shapes": {"prompt": shape}, "base_fingerprint": fingerprint(BASE),
            "base_config": {}, **draw(st.fixed_dictionaries({}, optional={"layers": st.sampled_from(
                ["all", "bottom", "top", "none"])}))}
    path = tmp_path_factory.mktemp("shape") / "a.safetensors"
    write_safetensors(path, {"prompt": (draw(st.sampled_from(["F16", "BF16", "F32", "F64"])), shape)},
                      {"minprefix": json.dumps(info)})
    loads_or_refuses(load_prompt, path, BASE)


@SETTINGS
@given(st.data())
def test_checkpoints_with_random_fields_resume_or_are_refused(tmp_path_factory, real, data):
    draw = data.draw
    info, shapes = real["checkpoint"]
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.safetensors"
    how = draw(HOW)
    tensors = reshaped(shapes, draw, how)
    write_safetensors(path, tensors, {"minprefix": json.dumps(changed(info, draw, how))}, seed=draw(st.integers(0, 3)))
    loads_or_refuses(resume, path, real["cfg"])  # no checksum in the header: read as a file from before checksums


@SETTINGS
@given(st.data())
def test_bases_with_random_config_fields_and_tensors_load_or_are_refused(tmp_path_factory, real, data):
    draw = data.draw
    folder = tmp_path_factory.mktemp("base")
    info = dict(real["base"])
    config = dict(info["config"])
    for key in draw(st.lists(st.sampled_from(sorted(config) + ["extra"]), max_size=2)):
        config[key] = draw(st.integers(-2, 40) | JSON)  # small numbers: a config that fits builds its GPT
    how = draw(HOW)
    info = changed({**info, "config": config}, draw, how)
    (folder / "config.json").write_text(json.dumps(info))
    shapes = {k: list(v.shape) for k, v in BASE.state_dict().items() if k != "lm_head.weight"}
    write_safetensors(folder / "model.safetensors", reshaped(shapes, draw, how), None, seed=draw(st.integers(0, 3)))
    loads_or_refuses(load_model, folder)


@SETTINGS
@given(st.data())
def test_one_tensor_of_another_shape_is_refused(tmp_path_factory, real, data):
    """A real file, its header untouched, one of its tensors of another shape: refused, whatever the tensor (a
    checkpoint's weights or optimizer moments too; what it keeps for its caller, under /state, is its caller's)."""
    draw = data.draw
    folder = tmp_path_factory.mktemp("one")
    kind = draw(st.sampled_from(["artifact", "checkpoint", "base"]))
    if kind == "artifact":
        info, shapes = real["artifacts"][draw(st.sampled_from(sorted(real["artifacts"])))]
    elif kind == "checkpoint":
        info, shapes = real["checkpoint"]
    else:
        info, shapes = None, {k: list(v.shape) for k, v in BASE.state_dict().items() if k != "lm_head.weight"}
        (folder / "config.json").write_text(json.dumps(real["base"]))
    name = draw(st.sampled_from(sorted(k for k in shapes if not k.startswith("/state/"))))
    shape = draw(SHAPE.filter(lambda s: s != shapes[name]))
    path = folder / {"artifact": "a.safetensors", "checkpoint": "checkpoint.safetensors", "base": "model.safetensors"}[
        kind]
    write_safetensors(path, {**{k: ("F32", s) for k, s in shapes.items()}, name: ("F32", shape)},
                      info and {"minprefix": json.dumps(info)})
    load = {"artifact": lambda: load_prompt(path, BASE), "checkpoint": lambda: resume(path, real["cfg"]),
            "base": lambda: load_model(folder)}[kind]
    try:
        load()
    except ValueError as e:
        assert "\n" not in str(e), f"a message of more than one line: {e}"
    except Exception as e:  # noqa: B902 - the property: nothing else
        pytest.fail(f"a {kind} with {name} of shape {shape}: {type(e).__name__}: {e}")
    else:
        pytest.fail(f"a {kind} with {name} of shape {shape} was loaded")


def test_a_config_declaring_a_large_model_beside_a_small_file_is_refused_without_building_it(tmp_path):
    save_base(BASE, tmp_path)
    info = json.loads((tmp_path / "config.json").read_text())
    info["config"].update(n_layer=20, d_model=1024, n_head=4)  # 250 million parameters: 1 GB to allocate
    (tmp_path / "config.json").write_text(json.dumps(info))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="not this config's weights"):
        load_model(tmp_path)
    assert time.perf_counter() - start < 1, "the declared model was built before the file's shapes were checked"


# ---------------------------------------------------------------------------- results files


def results_like(name: str):
    """A results file of `name`'s top-level structure (each field of its type), with random content."""
    kinds = {dict: st.dictionaries(st.text(max_size=8), JSON, max_size=3), int: st.integers(0, 100),
             str: st.text(max_size=10), (int, float): st.floats(0, 1e4)}
    return st.fixed_dictionaries({k: kinds[kind] for k, kind in SCHEMAS[name].items()})


def runs_like():
    """A --from file: runs (a config and a history) anywhere in random JSON."""
    run = st.fixed_dictionaries({"config": JSON, "history": JSON}, optional={"base": JSON})
    return st.recursive(run, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                          max_size=3), max_leaves=5)


@SETTINGS
@given(value=JSON | results_like("compare") | results_like("sweep") | results_like("reparam") | runs_like())
def test_results_files_of_random_structure_are_read_or_refused(tmp_path_factory, value):
    folder = tmp_path_factory.mktemp("results")
    path = folder / "results.json"
    path.write_text(json.dumps(value))
    for name in SCHEMAS:
        loads_or_refuses(read_results, path, name)
    loads_or_refuses(ResultStore, path)
    loads_or_refuses(adopt, folder / "store.json", path, fingerprint(BASE))
    loads_or_refuses(adopt, folder / "store.json", path, fingerprint(BASE))  # into a store that now exists
    with warnings.catch_warnings():  # runs measured on another base: a warning, as it should be
        warnings.simplefilter("ignore")
        loads_or_refuses(load_committed, "compare", path, fingerprint(BASE))  # what the lessons read


@settings(SETTINGS, max_examples=25)
@given(st.data())
@pytest.mark.filterwarnings("ignore::UserWarning")  # matplotlib: an empty legend
def test_results_files_of_random_content_are_redrawn_or_refused(tmp_path_factory, data):
    """What `minprefix figures` does with a compare.json, sweep.json or reparam.json it finds: redraw from it."""
    name = data.draw(st.sampled_from(sorted(SCHEMAS)))
    folder = tmp_path_factory.mktemp("redraw")
    (folder / f"{name}.json").write_text(json.dumps(data.draw(results_like(name))))
    draw = {"compare": lambda data: write_report(data, folder),
            "sweep": lambda data: close(plot_sweep(data, folder / "sweep.png")),
            "reparam": lambda data: close(plot_reparam(data, folder / "reparam.png"))}[name]
    loads_or_refuses(minprefix.cli.redraw, folder / f"{name}.json", name, draw)
