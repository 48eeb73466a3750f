"""Files read and written safely: atomic writes, regular files only, streamed hashes, JSON that names its file,
and tensor files (safetensors with a checksummed JSON header) with the fingerprint that names a model.

Every loader opens a path through `regular_file` first: a FIFO, a device (/dev/zero) or a folder
would hang a reader or fill the memory, so it is refused before it is opened.
"""

import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

UMASK = os.umask(0o022)  # reading the umask means setting it: done once, at import, before any thread starts
os.umask(UMASK)


def atomic_save(obj, path, saver):
    """saver(obj, tmp), then rename tmp to `path`: a crash never leaves half a file at `path`.

    tmp is made by mkstemp (a fresh name, O_EXCL: a planted symlink is never followed) and is named
    NAME.PID.XXXX.tmp, so `remove_stale_temporaries` knows a dead writer's leftovers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        saver(obj, tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # as a plain open() would make it (mkstemp and some savers make 0600)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path, text: str):
    """`atomic_save` for a text file (JSON, markdown)."""
    atomic_save(text, path, saver=lambda t, p: Path(p).write_text(t))


TEMPORARY = re.compile(r".+?\.(\d+)(\.\w+)?\.tmp")  # NAME.PID.XXXX.tmp (and NAME.PID.tmp, from before mkstemp)


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the temporary files in `folder` whose writer is no longer alive (a save that was killed)."""
    removed = []
    for tmp in Path(folder).glob("*.tmp"):
        found = TEMPORARY.fullmatch(tmp.name)
        if found and not pid_alive(int(found.group(1))) and tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    except PermissionError:  # it exists, but belongs to another user
        return True
    return True


def regular_file(path, what: str = "file") -> Path:
    """`path`, if it is a regular file; else a one-line FileNotFoundError or ValueError naming it (checked with
    stat before any open: a FIFO or a device would block or never end)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"no {what} at {path}") from None
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
                "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ValueError(f"{what} {path} is {kind}: give the path of a regular file")
    return path


def file_sha256(path, what: str = "file") -> str:
    """SHA-256 of a regular file's bytes, read in chunks (a file larger than the memory hashes too)."""
    h = hashlib.sha256()
    with open(regular_file(path, what), "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


MAX_JSON_BYTES = 1 << 30  # the largest results file is a few megabytes


def read_json(path, what: str = "JSON file"):
    """The JSON value in a regular file; a one-line ValueError naming the file if it is not JSON."""
    path = regular_file(path, what)
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{what} {path} is {path.stat().st_size:,} bytes, more than any results file "
                         f"({MAX_JSON_BYTES:,}): is it the right file?")
    try:
        return json.loads(path.read_bytes().decode())
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{what} {path} is not valid JSON ({short(e)})") from None
    except OSError as e:
        raise ValueError(f"cannot read {what} {path}: {e.strerror}") from None


def parse_json(text: str, where: str):
    """json.loads, with nesting too deep or bad syntax as a one-line ValueError saying where the text came from."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{where} is not valid JSON ({short(e)})") from None


def short(e: Exception) -> str:
    """An exception's message, cut to one line and escaped (text from a file never reaches the terminal raw)."""
    text = str(e) or type(e).__name__
    return repr(text[:200])[1:-1]


# ---------------------------------------------------------------------------- tensor files


def tensor_checksum(tensors: dict[str, torch.Tensor], header: dict | None = None) -> str:
    """SHA-256 of the JSON header (if given) and every tensor's name, dtype, shape and bytes, in name order:
    one flipped byte anywhere changes it."""
    h = hashlib.sha256()
    if header is not None:
        h.update(json.dumps(header, sort_keys=True).encode() + b"\n")
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name} {t.dtype} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_tensors(tensors: dict[str, torch.Tensor], info: dict, path):
    """One safetensors file: the tensors, and `info` plus a checksum of it and of them as JSON in its header,
    written atomically."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    info = json.loads(json.dumps({**info, "covers": "header"}))  # as it will be read back: the checksum covers it
    info["sha256"] = tensor_checksum(tensors, info)
    atomic_save(tensors, path, lambda t, p: save_file(t, str(p), metadata={"minprefix": json.dumps(info)}))


FLOATING = ("F16", "BF16", "F32", "F64")  # safetensors' names of the dtypes a weight may have


def read_tensors(path, check=None) -> tuple[dict, dict[str, torch.Tensor]]:
    """(info, tensors) of a file written by `write_tensors` (info {} if it has none), on the CPU; every tensor
    floating. check(info, shapes), if given, runs on the header alone, before any tensor is read (a file that
    declares a huge tensor is refused without reading it). SafetensorError or OSError if the file cannot be
    read, a ValueError naming the file and the field for the rest."""
    with safe_open(str(regular_file(path)), framework="pt") as f:
        info = parse_json((f.metadata() or {}).get("minprefix", "{}"), f"{path}: its metadata")
        if not isinstance(info, dict):
            raise ValueError(f"{path}: its metadata is a {type(info).__name__}, not a JSON object")
        slices = {k: f.get_slice(k) for k in f.keys()}
        wrong = {k: s.get_dtype() for k, s in slices.items() if s.get_dtype() not in FLOATING}
        if wrong:
            name, dtype = next(iter(wrong.items()))
            raise ValueError(f"{path}: tensor {name!r} is {dtype}, not a floating dtype: weights are numbers with "
                             "fractions, so the file is damaged or was not written by minprefix")
        if check is not None:
            check(info, {k: list(s.get_shape()) for k, s in slices.items()})
        tensors = {k: f.get_tensor(k) for k in slices}
    header = {k: v for k, v in info.items() if k != "sha256"} if info.get("covers") == "header" else None
    if "sha256" in info and info["sha256"] != tensor_checksum(tensors, header):  # files from before have none
        raise ValueError(f"{path}: tensor data{' or header' * bool(header)} does not match its checksum: "
                         "the file is damaged")
    return info, tensors


def fingerprint(model) -> str:
    """Short SHA-256 of the config and every weight: artifacts record it to name their base."""
    config = {k: v for k, v in asdict(model.config).items() if k != "pad_id"}  # names a token, changes no number:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())  # bases from before the field keep their name
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def weight_shapes(model) -> dict[str, list[int]]:
    """The shape of every weight a file stores for `model` (lm_head.weight is the token table, not stored)."""
    return {k: list(v.shape) for k, v in model.state_dict().items() if k != "lm_head.weight"}


def mismatched(want: dict, shapes: dict) -> str:
    """The first few names in which two {name: shape} differ, said as such ('' if none): loading is strict."""
    wrong = sorted(set(want) ^ set(shapes)) or sorted(k for k in want if want[k] != shapes[k])
    return (", ".join(map(repr, wrong[:3])) + " missing, unexpected or of another shape") if wrong else ""
