"""Files read and written safely: atomic writes, regular files only, streamed hashes, JSON that names its file.

Every loader opens a path through `regular_file` first: a FIFO, a device (/dev/zero) or a folder
would hang a reader or fill the memory, so it is refused before it is opened.
"""

import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path

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
