"""
An embedding index on disk: a folder with

    embeddings.safetensors   one tensor "embeddings" (n, dim), L2-normalised rows, fp16 or fp32, in row order;
                             its safetensors metadata holds the content key
    meta.json                {"key", "spec", "n", "dim", "dtype", "ids": [...], "row_keys": [...]}

The content key hashes the encoder spec (kind, model, a fingerprint of its files, options) and every row's
(id, input): the texts themselves, or image names + sizes + mtimes. `build_index` returns the index as it is when the
key matches (nothing is encoded); otherwise it encodes again only the rows whose input is new (an edited caption, an
added banner), copying the others from the previous index, so a shuffled CSV or one changed caption costs one row.

Built in parts of `part_size` rows, each written to `.parts-<key>/` as soon as it is done: a killed build resumes at the
first missing part. Under `accelerate launch` each process encodes every world_size-th part; after a barrier rank 0
concatenates the parts in order (encoding any part still missing), so the file is the same as a single-process build.
The final file is written with safetensors' own writer and renamed into place.
"""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from core.knobs import InputError
from core.progress import progress as progress_bar
from core.files import atomic_open, atomic_write, read_json, write_json
from core.devices import shard, wait_for_everyone

TENSOR = "embeddings"
EMBEDDINGS_FILE = "embeddings.safetensors"
META_FILE = "meta.json"
DTYPES = {"fp16": (np.float16, "F16"), "fp32": (np.float32, "F32")}


def _row_key(item_key):
    return hashlib.sha256(item_key.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def content_key(spec, ids, row_keys, dtype):
    h = hashlib.sha256(json.dumps({"spec": spec, "dtype": dtype}, sort_keys=True).encode())
    for row_id, rk in zip(ids, row_keys):
        h.update(f"{row_id}\x1f{rk}\x1e".encode())
    return h.hexdigest()


class Index:
    """A finished index folder: `.ids`, `.n`, `.dim`, `.shape`, `.path` (the safetensors file), `.meta`;
    `index[a:b]` reads rows a..b from the file."""

    def __init__(self, folder, meta):
        self.folder = Path(folder)
        self.meta = meta
        self.path = self.folder / EMBEDDINGS_FILE
        self.ids = list(meta["ids"])
        self.n, self.dim, self.key = int(meta["n"]), int(meta["dim"]), meta["key"]

    @classmethod
    def open(cls, folder, key=None):
        """The index in `folder`, or None when it is missing, half-written, or (key given) built from other inputs."""
        folder = Path(folder)
        try:
            meta = read_json(folder / META_FILE)
        except InputError:
            return None
        if not meta or (key is not None and meta.get("key") != key):
            return None
        try:
            metadata = read_metadata(folder / EMBEDDINGS_FILE)
        except Exception:  # safetensors raises its own error type for a truncated or foreign file
            return None
        if metadata.get("key") != meta["key"]:
            return None  # a kill between writing the embeddings and the meta: not this index
        return cls(folder, meta)

    @property
    def shape(self):
        return self.n, self.dim

    def __getitem__(self, rows):
        """Rows by a slice, as stored (fp16 or fp32 torch tensor), reading only that slice from the file: an index
        reads like an (n, dim) array, so `core.nearest` searches it chunk by chunk."""
        from safetensors import safe_open

        if not isinstance(rows, slice):
            raise TypeError(f"an Index reads rows by a slice, not {type(rows).__name__}")
        with safe_open(str(self.path), framework="pt") as f:
            return f.get_slice(TENSOR)[rows]

    def embeddings(self, start=0, stop=None):
        """Rows [start, stop) as float32 torch tensor (reads only that slice)."""
        return self[start:stop].float()


def read_metadata(path):
    """The safetensors file's metadata ({"key": ...}); raises OSError/ValueError-like errors for a broken file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.metadata() or {}


def _load_all(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        return f.get_tensor(TENSOR)


def write_embeddings(path, array, metadata):
    """One (n, dim) tensor through safetensors' own serializer, written atomically by core.files. The whole array is
    in memory once: 1362 x 768 fp16 is 2 MB, and even a 1M-row pool (1 GB in fp16) fits the machines this runs on."""
    from safetensors.numpy import save

    atomic_write(path, save({TENSOR: np.ascontiguousarray(array)}, metadata={k: str(v) for k, v in metadata.items()}))


def _previous_rows(folder, spec, dtype):
    """{row_key: row} and the embeddings of the index last built in `folder` (same encoder and dtype), for reuse."""
    old = Index.open(folder)
    if old is None or old.meta.get("spec") != spec or old.meta.get("dtype") != dtype:
        return {}, None
    return {rk: i for i, rk in enumerate(old.meta["row_keys"])}, _load_all(old.path)


def _part_file(parts_dir, p):
    return parts_dir / f"part-{p:06d}.npy"


def _encode_part(encoder, items, row_keys, lo, hi, reuse, old, dtype, batch_size, bar):
    """Rows [lo, hi): copied from the previous index where the input is unchanged, else encoded in batches."""
    np_dtype = DTYPES[dtype][0]
    out = np.empty((hi - lo, encoder.dim), dtype=np_dtype)
    previous = np.array([reuse.get(rk, -1) for rk in row_keys[lo:hi]], dtype=np.int64)
    known = previous >= 0
    if known.any():
        out[known] = old[previous[known]]  # one gather from the previous embeddings
    todo = (np.flatnonzero(~known) + lo).tolist()
    bar.update(int(known.sum()))
    for b in range(0, len(todo), batch_size):
        rows = todo[b:b + batch_size]
        vectors = encoder.encode([items[i] for i in rows])
        if vectors.shape != (len(rows), encoder.dim):
            raise RuntimeError(f"encoder returned shape {vectors.shape} for {len(rows)} inputs")
        out[np.asarray(rows) - lo] = vectors.astype(np_dtype)
        bar.update(len(rows))
    return out, len(todo)


def _save_part(path, array):
    with atomic_open(path) as f:
        np.save(f, array, allow_pickle=False)


def _load_part(path, rows, dim):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return array if array.shape == (rows, dim) else None


def build_index(folder, encoder, items, ids, dtype="fp16", part_size=4096, batch_size=64, rank=0, world_size=1,
                desc="embedding", progress=True):
    """Return the `Index` of `items` (texts or image paths, in row order, named by `ids`) in `folder`, building it
    only if its content key changed. Returns (index or None on ranks > 0 of a simulated run, rows encoded)."""
    if dtype not in DTYPES:
        raise InputError(f"index dtype must be one of {list(DTYPES)}, got {dtype!r}")
    ids = [str(i) for i in ids]
    if len(ids) != len(items):
        raise ValueError(f"{len(items)} items but {len(ids)} ids")
    if not items:
        raise InputError(f"nothing to index for {folder}: no rows")
    if len(set(ids)) != len(ids):
        raise InputError(f"duplicate ids in the rows for {folder}")
    folder = Path(folder)
    row_keys = [_row_key(k) for k in encoder.item_keys(items)]
    key = content_key(encoder.spec, ids, row_keys, dtype)
    current = Index.open(folder, key)
    if current is not None:
        return current, 0
    folder.mkdir(parents=True, exist_ok=True)
    reuse, old = _previous_rows(folder, encoder.spec, dtype)
    # every process gets parts to encode (1362 rows would otherwise be one part, all on rank 0)
    part_size = max(1, min(part_size, -(-len(items) // world_size)))
    # the folder names the layout too: a resumed build with another PART_SIZE must never reuse parts of other rows
    parts_dir = folder / f".parts-{key[:16]}-p{part_size}"
    parts_dir.mkdir(exist_ok=True)
    n, n_parts = len(items), (len(items) + part_size - 1) // part_size
    bounds = [(p * part_size, min(n, (p + 1) * part_size)) for p in range(n_parts)]
    mine = shard(list(range(n_parts)), rank, world_size)
    todo = [p for p in mine if _load_part(_part_file(parts_dir, p), bounds[p][1] - bounds[p][0], encoder.dim) is None]
    encoded = 0
    bar = progress_bar(total=sum(bounds[p][1] - bounds[p][0] for p in todo), desc=desc, unit="row",
               disable=not progress or not todo)
    for p in todo:
        part, k = _encode_part(encoder, items, row_keys, *bounds[p], reuse, old, dtype, batch_size, bar)
        _save_part(_part_file(parts_dir, p), part)
        encoded += k
    bar.close()
    wait_for_everyone()
    if rank == 0:
        parts = []
        for p, (lo, hi) in enumerate(bounds):
            part = _load_part(_part_file(parts_dir, p), hi - lo, encoder.dim)
            if part is None:  # a process that died, or a simulated run without it: do its share here
                part, k = _encode_part(encoder, items, row_keys, lo, hi, reuse, old, dtype, batch_size,
                                       progress_bar(disable=True))
                encoded += k
            parts.append(part)
        (folder / META_FILE).unlink(missing_ok=True)  # from here until the new meta, the folder reads as unbuilt
        write_embeddings(folder / EMBEDDINGS_FILE, np.concatenate(parts), {"key": key})
        write_json(folder / META_FILE, {"key": key, "spec": encoder.spec, "n": n, "dim": encoder.dim, "dtype": dtype,
                                        "ids": ids, "row_keys": row_keys})
        for stale in folder.glob(".parts-*"):
            shutil.rmtree(stale, ignore_errors=True)
    wait_for_everyone()
    return Index.open(folder, key), encoded
