"""
Files every stage writes: atomically (beside the target, fsync, rename), so a kill never leaves a half-written file,
with the user's ordinary file mode (0644 under the usual umask) whoever wrote the bytes; JSON/CSV helpers; a
resumable {key: value} JSON store and the record of what made each of its items (settings and inputs), so a rerun
skips what this run would make and never keeps silently what another run made; an output folder checked for writing
before any model loads and locked against a second run (the lock names its pid).
"""
import contextlib
import errno
import functools
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from core.knobs import InputError

_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+\.tmp$")  # what atomic_open names its temporary files


def file_mode():
    """The mode a file made by the user gets (0o666 less the umask: 0644 usually)."""
    try:  # Linux says the umask without changing it (setting it, even back, races with other threads' new files)
        with open("/proc/self/status") as f:
            mask = int(next(line.split()[1] for line in f if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


_CLEANED = set()  # (folder, name) whose orphans this process has removed


def remove_orphans(folder, name=None):
    """Delete the temporary files that atomic writes of a killed process left in `folder` (only `name`'s, if given):
    their writer's pid is in their name, and a live writer's are left alone."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _TMP_NAME.match(entry.name)
        if match and (name is None or match["name"] == name) and not _alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def move_into_place(src, dst):
    """Rename a finished file onto `dst` (atomic on one filesystem) with the ordinary file mode: for files a library
    wrote into a temporary folder (safetensors writes 0600)."""
    os.chmod(src, file_mode())
    os.replace(src, dst)


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """A file to write `path` through: it appears under its name only when the block ends without an error (for
    outputs written piece by piece, e.g. an index streamed in chunks). What a killed writer left is removed here."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if (path.parent, path.name) not in _CLEANED:  # once per file and process, not at every rewrite of it
        _CLEANED.add((path.parent, path.name))
        remove_orphans(path.parent, path.name)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
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


def content_hash(path):
    """sha256 of the file's bytes, remembered per (path, size, mtime) so one run hashes each file once."""
    st = os.stat(path)
    return _content_hash(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _content_hash(path, size, mtime_ns):
    return file_hash(path)


def as_json(value):
    """`value` as JSON reads it back (tuples become lists, keys strings): what is saved compares equal to what is
    computed, and a difference is never one of type alone."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def settings_key(settings):
    """A short hash of JSON-able settings (sorted keys): equal settings give equal keys, whatever their order."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_strings(data, path, what="{name: text}"):
    """`data` (a JSON file's content) is an object whose every value is a string; else one line naming the file and
    the first few rows whose value is not (a number, null, a list...)."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object {what}, got a {type(data).__name__}")
    bad = [f"{name} ({json.dumps(value, ensure_ascii=False)[:40]})" for name, value in data.items()
           if not isinstance(value, str)]
    if bad:
        raise InputError(f"{path}: expected a JSON object {what}; {len(bad)} row(s) hold no text: "
                         f"{', '.join(bad[:5])}{f', ... ({len(bad)} in all)' if len(bad) > 5 else ''}")
    return data


def read_string_map(path, what="{name: text}", default=None):
    """A JSON file {name: text} (captions, prompts), checked: one line naming the rows whose value is not a string.
    `default` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return default
    return check_strings(read_json(path), path, what)


class JsonStore:
    """A {key: value} JSON file that a stage fills as it goes, so a rerun skips finished keys.

    `put` keeps values in memory and saves atomically every `every` puts; call `save()` at the end (or use `with`).
    `strings=True`: every value must be a string (checked on load: one line naming the rows that are not).
    """

    def __init__(self, path, every=20, strings=False, what="{key: value}"):
        self.path, self.every, self._dirty = Path(path), every, 0
        data = read_json(self.path, {})
        if not isinstance(data, dict):
            raise InputError(f"{self.path}: expected a JSON object {what}")
        self.data = check_strings(data, self.path, what) if strings else data

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
        self._count()

    def discard(self, key):
        self.data.pop(key, None)
        self._count()

    def _count(self):
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


class RecordedStore(JsonStore):
    """A JsonStore of text values, each put with the record of what made it (ItemRecords `records`). The records are
    saved first: a kill never leaves a value without its record. A value of None records an item made without one
    (it is removed from the store, its record says written=False)."""

    def __init__(self, path, records, every=20, what="{name: text}"):
        super().__init__(path, every, strings=True, what=what)
        self.records = records

    def put(self, key, value, inputs=None, **extra):
        if value is None:
            self.records.put(key, inputs, written=False, **extra)
            self.discard(key)
        else:
            self.records.put(key, inputs, **extra)
            super().put(key, value)

    def save(self):
        if self._dirty or not self.path.exists():
            self.records.save()
            super().save()


class ItemRecords:
    """What made each item of a stage's output file: a sidecar JSON beside it,
    `{"settings": {id: {knob: value}}, "items": {name: {"settings": id, "inputs": hash, ...}}}`.

    The output keeps its own format ({name: value}) for the stages that read it; this file lets a rerun tell an item
    made with the same settings (those that change the output) and inputs from one made otherwise, and name what
    differs. A record may carry more (the prompt stage: source, tries, problems); `written=False` marks an item that
    was made but has no value in the output (a prompt that fell back).
    """

    def __init__(self, path, settings=None):
        self.path = Path(path)
        data = read_json(self.path, {}) or {}
        if not (isinstance(data, dict) and isinstance(data.get("settings", {}), dict)
                and isinstance(data.get("items", {}), dict)):
            raise InputError(f"{self.path}: not a record of what made each item ({{settings, items}}); move it away")
        self.known, self.items = data.get("settings", {}), data.get("items", {})
        self.settings = as_json(settings or {})
        self.settings_id = settings_key(self.settings)

    def get(self, name):
        rec = self.items.get(name)
        return rec if isinstance(rec, dict) else {}

    def is_current(self, name, inputs):
        rec = self.get(name)
        return rec.get("settings") == self.settings_id and rec.get("inputs") == inputs

    def put(self, name, inputs, **extra):
        self.known[self.settings_id] = self.settings
        self.items[name] = {"settings": self.settings_id, "inputs": inputs, **extra}

    def update(self, other):
        """Take `other`'s records (ItemRecords of the same output, e.g. one process's share) over these."""
        self.known.update(other.known)
        self.items.update(other.items)

    def save(self, path=None, names=None):
        """Write the records (to `path` instead, and only those of `names`, for a copy of some of the items)."""
        items = self.items if names is None else {n: self.items[n] for n in names if n in self.items}
        used = {rec.get("settings") for rec in items.values() if isinstance(rec, dict)}
        write_json(path or self.path, {"settings": {k: v for k, v in self.known.items() if k in used}, "items": items})

    def why_made_otherwise(self, names):
        """How the items `names` (not current) were made, in a few words: the settings that differ from this run's,
        old -> new ("(unused)" for a knob one of the two runs did not use), that their inputs changed, or that no
        record says."""
        ids = {self.get(n).get("settings") for n in names}
        diffs = {}
        for old in (self.known[i] for i in ids if i in self.known and i != self.settings_id):
            for k in sorted(set(old) | set(self.settings)):
                before, now = old.get(k, _UNUSED), self.settings.get(k, _UNUSED)
                if before != now:
                    diffs.setdefault(k, f"{k} {_shown(before)} -> {_shown(now)}")
        shown = list(diffs.values())[:6] + ([f"+{len(diffs) - 6} more"] if len(diffs) > 6 else [])
        reasons = [f"with other settings: {', '.join(shown)}"] if shown else []
        if self.settings_id in ids:
            reasons.append("from other inputs (the row's text or image changed)")
        if any(i not in self.known for i in ids):
            reasons.append(f"with no record in {self.path} (by another tool or an older version)")
        return " and ".join(reasons)


_UNUSED = object()  # a setting one of two runs did not use (e.g. SEED when decoding greedily)


def _shown(value):
    return "(unused)" if value is _UNUSED else repr(value)


def plan_items(inputs, present, records, overwrite, where, what="items", flag="--OVERWRITE=1"):
    """The names still to make, in the order of `inputs` ({name: hash of that item's inputs}).

    An item made earlier (in `present`, the output's names, or recorded as made without a value) is done when its
    record matches these settings and inputs. One made otherwise is redone with `overwrite`, else refused in one line
    that names what differs and `flag`: never kept silently."""
    todo, other = [], []
    for name, item_inputs in inputs.items():
        made = name in present or records.get(name).get("written") is False
        if made and records.is_current(name, item_inputs):
            continue
        todo.append(name)
        if made:
            other.append(name)
    if other and not overwrite:
        raise InputError(f"{where}: {len(other)} {what} (e.g. {other[0]}) were made "
                         f"{records.why_made_otherwise(other)}; pass {flag} to redo them, or write elsewhere")
    return todo


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


def banner_lock(meta_dir, out_dir, rank=0):
    """The lock of process `rank` writing banners into `out_dir` (its bookkeeping in `meta_dir`, the folder itself
    unless it is a submission folder): every tool that writes banners takes it, so two never write one folder."""
    return FolderLock(meta_dir, f".lock.{Path(out_dir).name}.rank{rank}")


class FolderLock:
    """`with FolderLock(folder):` refuses a second run into a folder in use: the lock file holds the pid of the
    process that took it, and the refusal names it ("held by pid N").

    A lock left by a killed run (its pid no longer alive on this machine) is taken over, not obeyed forever; taking
    a lock also removes the temporary files killed runs left in the folder. A folder where no lock can be written is
    one line, not a traceback.
    """

    def __init__(self, folder, name=".lock"):
        self.path = Path(folder) / name

    def __enter__(self):
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(3):
                if self._create():
                    remove_orphans(self.path.parent)
                    return self
                owner = self.owner()
                if owner and owner != os.getpid() and _alive(owner):
                    raise InputError(f"{self.path.parent} is in use by another run: its lock {self.path} is held by "
                                     f"pid {owner}; wait for that run to end (or delete the lock file if pid {owner} "
                                     f"is not one of this project's runs)")
                self.path.unlink(missing_ok=True)  # stale: its run died
        except OSError as e:
            raise InputError(f"cannot write the lock file {self.path} ({e.strerror or e}): is {self.path.parent} "
                             f"writable? Pass another folder") from None
        raise InputError(f"cannot take the lock {self.path}: other runs keep taking it")

    def _create(self):
        """Make the lock file with our pid already in it (written aside, then linked: never seen empty)."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.chmod(tmp, file_mode())
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            return self._create_without_links()
        finally:
            tmp.unlink(missing_ok=True)

    def _create_without_links(self):
        """A filesystem without hard links: create exclusively, then write (a reader may find it empty meanwhile)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return True

    def owner(self):
        """The pid in the lock file (0 when there is none or it cannot be read)."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def __exit__(self, *exc):
        if self.owner() == os.getpid():
            self.path.unlink(missing_ok=True)


@dataclass
class StageFiles:
    """What a stage declares of itself (its `stage_files(cfg)`) for run/method2.sh, which runs the stages in order
    and redoes one only when its inputs or settings changed.

    inputs     the files and folders it reads (hashed: a changed input redoes the stage)
    done       the file whose presence means it ran
    settings   the settings that change its output (the same ones its own resume is keyed on)
    set_aside  what a redo moves away first (renamed *.stale, never deleted: it may be paid work)
    lock       the lock the stage holds while it writes them; setting aside takes it too, so a live run's work is
               never moved under it
    redo_flags flags a redo passes instead (generation overwrites its banners: --OVERWRITE=1)
    """
    inputs: list
    done: Path
    settings: dict
    set_aside: list = field(default_factory=list)
    lock: FolderLock = None
    redo_flags: tuple = ()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True
