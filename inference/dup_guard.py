"""
Duplication guard: how close is a generated banner to the training set?

The seed's Method 1 FAILED the competition's duplication check (0.908): img2img at strength 0.6 keeps too much of the
init banner. The similarity here is the cosine of the FID Inception-v3 pool features (evaluation/inception.py), the
same features the evaluation's duplication measure uses, so the guard and the report agree. An output is compared
with EVERY training banner (its init banner is one of them), and the most similar one is reported.
"""
import numpy as np

from evaluation.inception import InceptionFeatures, max_cosine
from inference.train_pool import cached_inception


class DupGuard:
    def __init__(self, names, paths, cache_dir, device="cpu"):
        self.extractor = InceptionFeatures(device=device)
        self.names = list(names)
        self.pool = cached_inception(paths, cache_dir, self.extractor)

    def measure(self, images):
        """PIL images -> (similarity to the nearest training banner, that banner's name) for each."""
        if not images:
            return np.zeros(0), []
        sims, idx = max_cosine(self.extractor(list(images)), self.pool)
        return sims, [self.names[i] for i in idx]
