"""
Files every stage writes: atomically (beside the target, fsync, rename), so a kill never leaves a half-written file;
JSON/CSV helpers; a resumable {key: value} JSON store; an output folder checked for writing before any model loads and
locked against a second run.
"""
import contextlib
import errno
import hashlib
import json
import os
import secrets
from pathlib import Path

from core.knobs import InputError


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """A file to write `path` through: it appears under its name only when the block ends without an error (for
    outputs written piece by piece, e.g. an index streamed in chunks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    # os.open applies the process umask to 0o666, so the output reads like any other file the user makes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path, data):
    with atomic_open(path, "wb" if isinstance(data, (bytes, bytearray)) else "w") as f:
        f.write(data)


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def read_json(path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def write_csv(path, df):
    atomic_write(path, df.to_csv(index=False))


def file_hash(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def settings_key(settings):
    """A short hash of JSON-able settings (sorted keys): equal settings give equal keys, whatever their order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class JsonStore:
    """A {key: value} JSON file that a stage fills as it goes, so a rerun skips finished keys.

    `put` keeps values in memory and saves atomically every `every` puts; call `save()` at the end (or use `with`).
    """

    def __init__(self, path, every=20):
        self.path, self.every, self._dirty = Path(path), every, 0
        data = read_json(self.path, {})
        if not isinstance(data, dict):
            raise InputError(f"{self.path}: expected a JSON object {{key: value}}")
        self.data = data

    def __contains__(self, key):
        return key in self.data

    def __getitem__(self, key):
        return self.data[key]

    def get(self, key, default=None):
        return self.data.get(key, default)

    def __len__(self):
        return len(self.data)

    def put(self, key, value):
        self.data[key] = value
        self._dirty += 1
        if self._dirty >= self.every:
            self.save()

    def save(self):
        if self._dirty or not self.path.exists():
            write_json(self.path, self.data)
            self._dirty = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.save()


def check_writable(folder, what="output folder", flag="--OUT_DIR"):
    """Make `folder` and prove a file can be written in it, before any model loads: one line if not, naming the
    `flag` that picks another folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write_probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"{what} {folder} is not writable ({e.strerror or e}): pass another folder, e.g. "
                         f"{flag}=...") from None
    return folder


class FolderLock:
    """`with FolderLock(folder):` refuses a second run into a folder in use (a lock file holding the owner's pid).

    A lock left by a killed run (its pid no longer alive on this machine) is taken over, not obeyed forever.
    """

    def __init__(self, folder, name=".lock"):
        self.path = Path(folder) / name

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner and _alive(owner) and owner != os.getpid():
                    raise InputError(f"{self.path.parent} is in use by another run (pid {owner}, lock file "
                                     f"{self.path}); wait for it, or delete the lock file if that run is gone") from None
                self.path.unlink(missing_ok=True)  # stale: its run died
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            return self
        raise InputError(f"cannot take the lock {self.path}")

    def _owner(self):
        try:
            return int(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def __exit__(self, *exc):
        if self._owner() == os.getpid():
            self.path.unlink(missing_ok=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True
