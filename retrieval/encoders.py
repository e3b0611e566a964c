"""
Encoders that turn texts or images into L2-normalised float32 vectors, one row per input, in input order.

- `TextEncoder`: any sentence-transformers model (hub id[@revision] or local folder); Vietnamese word segmentation
  (pyvi) when the model asks for it (`bkai-foundation-models/vietnamese-bi-encoder` was trained on segmented text; a
  local folder says so in its model card or config: models.needs_word_segmentation), or as WORD_SEGMENT says.
- `ClipTextEncoder` / `ClipImageEncoder`: the two towers of one open_clip model, for text->image and image->image search.

Each has `.spec` (what the embeddings depend on: it goes into the index's content hash), `.dim`, and
`.encode(items) -> np.ndarray (n, dim) float32`, and `.item_keys(items)` (what each input contributes to the hash).
Each takes `smoke` (the run's cfg.SMOKE; no default): when set, the model is the tiny random stand-in of its
models.MODELS key, and `.stand_in` says so (the index folder is then named "smoke").
"""
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

import models
from core.knobs import InputError
from core.devices import pick_device
from core.images import load_rgb

IMAGE_RESIZE_MODES = ("longest", "shortest", "squash")  # open_clip's: pad to square / centre crop / stretch


def _normalize(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def model_fingerprint(name, path):
    """A short string that changes when the model's files change: a local folder's file names, sizes and mtimes;
    for a hub id (at its revision), the cached snapshot's commit when there is one (else the id itself)."""
    h = hashlib.sha256(str(name).encode())
    folder = Path(path) if os.path.isdir(str(path)) else None
    if folder is None and "/" in str(name):
        try:
            from huggingface_hub import snapshot_download

            repo, revision = models.split_revision(name)
            folder = Path(snapshot_download(repo, revision=revision or None, local_files_only=True))
            h.update(folder.name.encode())  # the snapshot folder is named by the commit
        except Exception:  # not cached (yet) or not a hub id: the name alone identifies it
            folder = None
    if folder is not None:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def image_keys(paths):
    """What an image contributes to an index's content hash: its name, size and modification time (hashing the bytes
    of a million banners would cost minutes on every run; a replaced file changes its mtime)."""
    keys = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise InputError(f"image not found: {p}") from None
        keys.append(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns}")
    return keys


# ----------------------------------------------------------------------------------------------------------------------
# sentence-transformers


def _word_segmenter(model_name, word_segment, folder=None):
    """pyvi's tokenize when asked ("on"), or "auto" and the model needs it (its hub id, or its local folder's model
    card or config says so) and pyvi is installed; else None."""
    if word_segment == "off":
        return None
    if word_segment not in ("auto", "on"):
        raise InputError(f"WORD_SEGMENT must be auto, on or off, got {word_segment!r}")
    if word_segment == "auto" and not models.needs_word_segmentation(model_name, folder):
        return None
    try:
        from pyvi.ViTokenizer import tokenize
    except ImportError:
        if word_segment == "on":
            raise InputError("WORD_SEGMENT=on needs pyvi: pip install pyvi==0.1.1") from None
        print(f"warning: {model_name} expects word-segmented Vietnamese (pyvi), which is not installed; encoding raw "
              f"text (pip install pyvi==0.1.1 to follow the model card)", flush=True)
        return None
    return tokenize


class TextEncoder:
    kind = "sentence"

    def __init__(self, name, device="auto", batch_size=64, word_segment="auto", trust_remote_code=False,
                 model_key="bi_encoder", *, smoke):
        from sentence_transformers import SentenceTransformer

        self.device = pick_device(device)
        self.batch_size = batch_size
        source = models.resolve(name, model_key, smoke=smoke)
        path = models.path(name, model_key, smoke=smoke)
        self.stand_in = source.kind == "smoke"
        self.model = models.load(SentenceTransformer, name, model_key, smoke=smoke, device=self.device,
                                 trust_remote_code=trust_remote_code)
        self.model.eval()
        # the stand-in of SMOKE=1 is judged by itself (it needs no segmentation), not by the name it stands in for;
        # a hub id by its name and its cached model card
        folder = source.path if source.kind != "hub" else models.cached_folder(source.path, source.revision)
        self.segment = _word_segmenter(path if source.kind == "smoke" else name, word_segment, folder)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())
        self.spec = {"kind": self.kind, "model": str(name), "fingerprint": model_fingerprint(name, path),
                     "word_segment": self.segment is not None, "max_seq_length": int(self.model.max_seq_length),
                     "dim": self.dim}

    def item_keys(self, texts):
        return list(texts)

    def encode(self, texts):
        texts = [self.segment(t) if self.segment else t for t in texts]
        with torch.inference_mode():
            out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return _normalize(out).reshape(len(texts), self.dim)


# ----------------------------------------------------------------------------------------------------------------------
# open_clip


_OPEN_CLIP_CACHE = {}


def open_clip_id(name, path):
    """(model name for open_clip, pretrained tag) from a local folder, a hub id, or `ARCH:TAG` (`ARCH:random`)."""
    if os.path.isdir(str(path)):
        return "local-dir:" + str(path), None
    if str(name).startswith(("hf-hub:", "local-dir:")):
        return str(name), None
    if "/" in str(name):
        return "hf-hub:" + str(name), None
    arch, _, tag = str(name).partition(":")
    if not tag:
        raise InputError(f"open_clip model {name!r}: give a hub id (org/name), a local folder, or ARCH:PRETRAINED "
                         f"such as ViT-B-32:laion2b_s34b_b79k (ARCH:random for random weights, benchmarks only)")
    return arch, (None if tag == "random" else tag)


def load_open_clip(name, device="auto", image_resize_mode="longest", model_key="clip", *, smoke):
    """(model, preprocess, tokenizer, fingerprint) for an open_clip model; loaded once per process and device."""
    import open_clip

    if image_resize_mode not in IMAGE_RESIZE_MODES:
        raise InputError(f"IMAGE_RESIZE_MODE must be one of {IMAGE_RESIZE_MODES}, got {image_resize_mode!r}")
    device = pick_device(device)
    # open_clip takes no revision: a hub id@revision as its folder
    path = models.local_folder(name, model_key, smoke=smoke)
    model_name, pretrained = open_clip_id(name, path)
    key = (model_name, pretrained, device, image_resize_mode)
    if key not in _OPEN_CLIP_CACHE:
        def loader(_path, **kw):
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device, image_resize_mode=image_resize_mode, **kw)
            return model, preprocess

        try:
            model, preprocess = models.load(loader, path, model_key, smoke=smoke)
        except RuntimeError as e:  # open_clip reports a missing download as RuntimeError
            raise InputError(f"cannot load open_clip model {name!r}: {str(e).splitlines()[0]}") from None
        model.eval()
        tokenizer = open_clip.get_tokenizer(model_name)
        _OPEN_CLIP_CACHE[key] = (model, preprocess, tokenizer, model_fingerprint(name, path))
    return _OPEN_CLIP_CACHE[key]


class _ClipTower:
    def __init__(self, name, device="auto", batch_size=32, image_resize_mode="longest", model_key="clip", *, smoke):
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.stand_in = models.resolve(name, model_key, smoke=smoke).kind == "smoke"
        self.model, self.preprocess, self.tokenizer, fingerprint = load_open_clip(
            name, self.device, image_resize_mode, model_key, smoke=smoke)
        with torch.inference_mode():  # the shared embedding size, whatever the tower's implementation
            self.dim = int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])
        self.spec = {"kind": self.kind, "model": str(name), "fingerprint": fingerprint, "dim": self.dim}

    def encode(self, items):
        out = []
        for start in range(0, len(items), self.batch_size):
            with torch.inference_mode():
                out.append(self._encode_batch(items[start:start + self.batch_size]).float().cpu().numpy())
        return _normalize(np.concatenate(out) if out else np.zeros((0, self.dim), np.float32))


class ClipTextEncoder(_ClipTower):
    kind = "open_clip_text"

    def item_keys(self, texts):
        return list(texts)

    def _encode_batch(self, texts):
        return self.model.encode_text(self.tokenizer(list(texts)).to(self.device))


class ClipImageEncoder(_ClipTower):
    kind = "open_clip_image"

    def __init__(self, name, device="auto", batch_size=32, image_resize_mode="longest", model_key="clip",
                 load_workers=2, *, smoke):
        super().__init__(name, device, batch_size, image_resize_mode, model_key, smoke=smoke)
        self.spec["image_resize_mode"] = image_resize_mode  # padding vs cropping changes the embeddings
        self.load_workers = load_workers

    def item_keys(self, paths):
        return image_keys(paths)

    def _load(self, path):
        return self.preprocess(load_rgb(path))  # CMYK, grayscale, PNG-in-.jpg all arrive as RGB

    def _encode_batch(self, paths):
        # decoding and resizing 1024x533 JPEGs costs about as much as the network on a CPU: threads overlap it
        # (PIL releases the GIL while decoding)
        if self.load_workers > 1 and len(paths) > 1:
            with ThreadPoolExecutor(self.load_workers) as pool:
                pixels = list(pool.map(self._load, paths))
        else:
            pixels = [self._load(p) for p in paths]
        return self.model.encode_image(torch.stack(pixels).to(self.device))
