"""
The one shared module: what every stage needs and none re-implements.

- knobs: `configure(globals())` lets env vars and --flags override a script's UPPERCASE constants; --help lists them.
- info.csv: `read_info` reads and validates it (BOM, CRLF, quoted commas, empty -> "", duplicates, missing images).
- images: `load_rgb` opens anything PIL can (CMYK, L, P, RGBA, PNG bytes in a .jpg) as RGB;
  `save_banner` writes an exactly 1024x533 JPEG atomically.
- atomic writes: `atomic_write` (bytes/str), `write_json`, `write_csv`; `JsonStore` is a resumable {key: value} file.
- seeds: `row_seed(seed, id)` so a row's result never depends on batch size or order.
- devices and models: `pick_device`, `pick_dtype`, `model_path` (hub id or local folder, SMOKE=1 swaps in tiny models).
- errors: raise `InputError`; `run_main` turns it into a one-line message and exit status 2 (no bare traceback).
"""
import ast
import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import unicodedata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
INFO_COLUMNS = ["id", "caption", "description", "moreInfo", "bannerImage"]
TEXT_COLUMNS = ["caption", "description", "moreInfo"]
BANNER_SIZE = (1024, 533)  # what the competition scores
GEN_SIZE = (1024, 536)  # 533 is not a multiple of 8: generate at 536, then resize to 533
JPEG_QUALITY = 95


class InputError(Exception):
    """Bad input the user can fix: the message names the row, file or column at fault."""


# ----------------------------------------------------------------------------------------------------------------------
# knobs: UPPERCASE constants at the top of a script, overridden by an env var of the same name, then by --NAME=value


def _knob_comments(path):
    """{NAME: comment} from lines like `NAME = value  # comment` in the script's source, for --help."""
    comments = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return comments
    for line in lines:
        m = re.match(r"^([A-Z][A-Z0-9_]*)\s*=.*?#\s*(.*)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    return comments


def _parse_value(raw, current, name):
    """Cast a string to the type of the knob's default (bool from 0/1/true/false, else a Python literal or string)."""
    if isinstance(current, bool):
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise InputError(f"knob {name}: expected a boolean (0/1/true/false), got {raw!r}")
    if isinstance(current, str) or current is None:
        return raw
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise InputError(f"knob {name}: expected a value like {current!r}, got {raw!r}") from None
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if not isinstance(value, type(current)):
        raise InputError(f"knob {name}: expected {type(current).__name__} like {current!r}, got {raw!r}")
    return value


def configure(scope, argv=None, env=None):
    """Override the UPPERCASE constants in `scope` (see `_configure`); in the script being run a bad knob prints one
    line and exits 2, like every other user error."""
    try:
        return _configure(scope, argv, env)
    except InputError as e:
        if scope.get("__name__") == "__main__":
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        raise


def _configure(scope, argv=None, env=None):
    """Override the UPPERCASE constants in `scope` (a script's globals()).

    Order: the constant in the file < an environment variable of the same name < `--NAME=value` / `--NAME value`
    on the command line (also accepted in lower case with dashes: --data-dir), read only when the scope is the script
    being run (`__main__`), so importing a stage from tests or another stage never parses someone else's arguments.
    `--help` prints the script's docstring and every knob with its current value and comment, then exits.
    """
    if argv is None:  # flags belong to the script being run; a module imported by another program reads none
        argv = sys.argv[1:] if scope.get("__name__") == "__main__" else []
    argv = list(argv)
    env = os.environ if env is None else env
    knobs = [k for k, v in scope.items() if k.isupper() and not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, list, type(None)))]
    for name in knobs:
        if name in env:
            scope[name] = _parse_value(env[name], scope[name], name)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print((scope.get("__doc__") or "").strip() + "\n")
            comments = _knob_comments(scope.get("__file__", ""))
            print("knobs (env var NAME=... or flag --NAME=...):")
            for name in knobs:
                print(f"  --{name}={scope[name]!r}" + (f"  # {comments[name]}" if name in comments else ""))
            sys.exit(0)
        if not arg.startswith("--"):
            raise InputError(f"unexpected argument {arg!r} (knobs are passed as --NAME=value; see --help)")
        key, has_value, value = arg[2:].partition("=")
        name = key.replace("-", "_").upper()
        if name not in knobs:
            raise InputError(f"unknown knob {arg!r}; known: {', '.join(knobs)}")
        if not has_value:
            if isinstance(scope[name], bool) and (i + 1 >= len(argv) or argv[i + 1].startswith("--")):
                value = "1"  # a bare --FLAG turns a boolean knob on
            elif i + 1 >= len(argv):
                raise InputError(f"knob --{key} needs a value")
            else:
                i += 1
                value = argv[i]
        scope[name] = _parse_value(value, scope[name], name)
        i += 1
    return {k: scope[k] for k in knobs}


def run_main(main):
    """Run a stage's main(): user errors print one clear line and exit 2 instead of a traceback."""
    try:
        main()
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished items are kept, a rerun resumes", file=sys.stderr)
        sys.exit(130)


def env_flag(name, env=None):
    """True when the environment variable `name` is set to 1/true/yes/on."""
    return (os.environ if env is None else env).get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def smoke_enabled():
    """SMOKE=1 swaps every model for a tiny random one (no hub, no GPU)."""
    return env_flag("SMOKE")


def announce_smoke(stage):
    if smoke_enabled():
        bar = "!" * 88
        print(f"{bar}\n!! SMOKE=1 ({stage}): tiny RANDOM models, few steps. Outputs are noise, not banners.\n{bar}",
              file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# paths


def data_dir():
    return Path(os.environ.get("DATA_DIR", REPO_ROOT / "data"))


def split_dir(split, root=None):
    return Path(root or data_dir()) / split


# ----------------------------------------------------------------------------------------------------------------------
# atomic writes: write beside the target, fsync, then rename, so a kill never leaves a half-written file


_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    """A file to write `path` through: it appears under its name only when the block ends without an error (for
    outputs written piece by piece, e.g. a 1 GB index streamed in chunks)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; outputs should read like any other file
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


def file_hash(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------------
# info.csv


def normalize_text(text):
    """NFC + collapsed whitespace: Vietnamese arrives both composed and decomposed, and spacing varies."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


def read_info(path, images_dir=None, check_images=False):
    """Read and validate an info.csv; returns a pandas DataFrame of str columns in file order.

    Accepts UTF-8 with or without BOM, CRLF, quoted commas; empty/NaN text becomes "". Errors name the row/column/file:
    missing column, missing id or bannerImage, duplicate id or bannerImage, and (check_images=True) a referenced image
    that is missing or unreadable in `images_dir` (default: `images/` beside the CSV).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e})") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise InputError(f"{path}: cannot parse CSV ({e})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in INFO_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; expected {INFO_COLUMNS}")
    for col in df.columns:
        df[col] = df[col].fillna("").astype(str)
    for col in ("id", "bannerImage"):
        df[col] = df[col].str.strip()
        empty = df.index[df[col] == ""].tolist()
        if empty:
            raise InputError(f"{path}: empty {col} on data line(s) {[i + 2 for i in empty[:10]]}")
        dup = df[col][df[col].duplicated()].unique().tolist()
        if dup:
            raise InputError(f"{path}: duplicate {col} value(s) {dup[:10]}")
    # a name is joined to an images/ or output folder: a path in it would read or write outside that folder
    bad = [b for b in df["bannerImage"] if b in (".", "..") or b != Path(b).name or "\\" in b]
    if bad:
        raise InputError(f"{path}: bannerImage must be a plain file name (no folders), got {bad[:10]}")
    for col in TEXT_COLUMNS:  # "nan" is what a NaN becomes when a pandas frame is written as text
        df[col] = df[col].map(lambda s: "" if s.strip().lower() == "nan" else s.strip())
    if check_images:
        images_dir = Path(images_dir) if images_dir else path.parent / "images"
        for row in df.itertuples():
            check_image(images_dir / row.bannerImage, f"row id={row.id}")
    return df.reset_index(drop=True)


def read_retrieval(path, ids=None, ranks=1):
    """{test id: [train bannerImage of rank 1, ..., rank `ranks`]} from the retrieval stage's retrieval.csv
    (id, bannerImage, rank, train_id, train_bannerImage, score). With `ids`, every one of them must have all ranks;
    errors name the file and the test row."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found (run bash run/retrieval.sh first)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    missing = [c for c in ("id", "rank", "train_bannerImage") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    by_id = {}
    for line, rec in enumerate(df.itertuples(), start=2):
        try:
            rank = int(rec.rank)
        except ValueError:
            raise InputError(f"{path}: line {line}: rank {rec.rank!r} is not an integer") from None
        by_id.setdefault(rec.id.strip(), {})[rank] = rec.train_bannerImage.strip()
    out = {}
    for row_id in (by_id if ids is None else ids):
        names = [by_id.get(row_id, {}).get(rank) for rank in range(1, ranks + 1)]
        if not all(names):
            raise InputError(f"{path}: no rank-{names.index(None) + 1} train banner for test row id={row_id} "
                             f"(rerun retrieval)")
        out[row_id] = names
    return out


# ----------------------------------------------------------------------------------------------------------------------
# images


def check_image(path, what=""):
    """Raise InputError naming `path` if it is missing or not a decodable image."""
    from PIL import Image

    path = Path(path)
    where = f" ({what})" if what else ""
    if not path.is_file():
        raise InputError(f"image not found: {path}{where}")
    try:
        with Image.open(path) as im:
            im.load()  # decode the pixels: verify() alone passes a truncated JPEG
    except Exception as e:  # PIL raises many types for corrupt files
        raise InputError(f"unreadable image: {path}{where}: {e}") from None


def is_valid_image(path):
    """True if `path` is a complete, decodable image (used by resume: a truncated file is redone)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:
        return False


def load_rgb(path):
    """Open any image PIL reads as RGB: CMYK, L, P, LA/RGBA (composited on white), 16-bit, PNG bytes named .jpg."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
    except FileNotFoundError:
        raise InputError(f"image not found: {path}") from None
    except Exception as e:
        raise InputError(f"unreadable image: {path}: {e}") from None
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return background
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB")


def to_banner(image):
    """Resize to exactly 1024x533 RGB (the generator works at 1024x536)."""
    from PIL import Image

    image = image.convert("RGB")
    if image.size != BANNER_SIZE:
        image = image.resize(BANNER_SIZE, Image.Resampling.LANCZOS)
    return image


def banner_jpeg(image):
    """The exact JPEG bytes `save_banner` writes for `image` (exactly 1024x533)."""
    buf = io.BytesIO()
    to_banner(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def decode_image(data):
    """JPEG/PNG bytes -> RGB PIL image (e.g. to measure a banner exactly as it will be on disk)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def save_banner(image, out_dir, banner_name):
    """Write `image` (a PIL image, or bytes from `banner_jpeg`) as an exactly 1024x533 JPEG named `banner_name` in
    `out_dir`, atomically; returns the path."""
    if banner_name in ("", ".", "..") or Path(banner_name).name != banner_name:
        raise InputError(f"bannerImage {banner_name!r}: must be a plain file name")
    path = Path(out_dir) / banner_name
    atomic_write(path, image if isinstance(image, bytes) else banner_jpeg(image))
    return path


# ----------------------------------------------------------------------------------------------------------------------
# seeds, devices, models


def row_seed(seed, row_id):
    """A 63-bit seed from (run seed, row id): the same row gets the same noise whatever the batch or order."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def row_generator(seed, row_id, device="cpu"):
    import torch

    return torch.Generator(device=device).manual_seed(row_seed(seed, row_id))


def pick_device(prefer="auto"):
    """'cuda' when a GPU is there (or accelerate's process device), else 'cpu'; `prefer` forces one."""
    import torch

    if prefer and prefer != "auto":
        return prefer
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device, prefer="fp16"):
    """fp16/bf16 on CUDA as asked (bf16 falls back to fp16 where unsupported); always fp32 on the CPU."""
    import torch

    if prefer not in ("fp16", "bf16", "fp32"):
        raise InputError(f"DTYPE must be fp16, bf16 or fp32, got {prefer!r}")
    if str(device).startswith("cpu"):
        return torch.float32
    if prefer == "bf16":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if prefer == "fp16" else torch.float32


def model_path(name, smoke_family=None):
    """Resolve a model constant: a local folder as is, otherwise a hub id; with SMOKE=1 the tiny model of that family.

    Offline (HF_HUB_OFFLINE=1) a hub id that is not in the local cache fails later with the library's own error;
    `load_model` wraps that into a message naming the constant's value.
    """
    if smoke_enabled() and smoke_family:
        import smoke

        return smoke.smoke_model(smoke_family)
    expanded = os.path.expanduser(str(name))
    if os.path.isdir(expanded):
        return expanded
    # a hub id is "org/name" (or a bare name); anything path-like that is not a folder is a user error
    if expanded.startswith((".", "/")) or expanded.count("/") > 1 or os.path.exists(expanded):
        raise InputError(f"model folder not found: {name}")
    return str(name)


def load_model(loader, name, smoke_family=None, **kwargs):
    """Call `loader(path, **kwargs)` (e.g. SomeModel.from_pretrained) with a clear error when the model can't be had."""
    path = model_path(name, smoke_family)
    try:
        return loader(path, **kwargs)
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1: only local folders and cached hub models work)" if offline else ""
        raise InputError(f"cannot load model {name!r}{hint}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None



def mean_color(image_paths, size=(64, 33)):
    """Mean RGB in 0..1 over images (each downscaled first: the mean barely moves, the time drops 100x)."""
    import numpy as np
    from PIL import Image

    total, n = np.zeros(3), 0
    for path in image_paths:
        total += np.asarray(load_rgb(path).resize(size, Image.Resampling.BOX), dtype=np.float64).reshape(-1, 3).mean(0)
        n += 1
    if n == 0:
        raise InputError("mean_color: no images given")
    return tuple((total / n / 255.0).tolist())


# ----------------------------------------------------------------------------------------------------------------------
# several GPUs: `accelerate launch -m stage.script` starts one process per GPU; each takes every world-th row


def process_info():
    """(rank, world_size, device) under `accelerate launch`, or (0, 1, pick_device()) in a plain run."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 or "LOCAL_RANK" in os.environ:
        state = _partial_state()
        return state.process_index, state.num_processes, str(state.device)
    return 0, 1, pick_device()


def shard(items, rank, world_size):
    """This process's share of `items`: every world_size-th one from rank, so shards interleave and balance."""
    return items[rank::world_size]


def wait_for_everyone():
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        _partial_state().wait_for_everyone()


def _partial_state():
    # accelerate starts a CPU process group (gloo) only when asked with cpu=True: without it a CPU run under
    # torchrun would report a single process and every rank would do all the work
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
